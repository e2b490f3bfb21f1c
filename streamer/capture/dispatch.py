"""How a capture's frames reach the feature workers: by credit (the default) or pushed round-robin.

`capture.dispatch = "credit"`: one DEALER per feature worker. The capture says hello to each
(`wire.Hello`, again every half lease, so a restarted worker learns of it) and sends a frame only
against a credit a worker granted (`wire.Credit`, workers/credits.py). Until a credit comes, the
newest frame waits in the capture's slot and a newer one replaces it (counted), so frames are
never queued in sockets. Holding credits from several workers, a camera's capture spends the one
of the worker with the shortest recent batch time, and leaves unused the credits of a worker more
than ETA_FACTOR times slower than the fastest live one (a slow worker would set the latency of
every frame it got). A credit not spent within the worker's lease expires on both sides, so a
capture never waits on a dead worker's credits: a send to a worker whose connection is gone fails
at once and its credits are dropped; a worker silent for 5 leases is treated as gone.

A file's frames are all sent (back-pressure: they wait for credit), to one worker picked by stream
name, so they reach the LSTM worker in order; its end goes once every frame is acknowledged
(`done` in the credits). Frames sent to a worker that then dies (or restarts: a new worker id)
unacknowledged are sent again, first, to the worker that grants credit next, which the file then
keeps; a frame the dead worker had finished but not acknowledged arrives twice, and the LSTM
worker drops the second (workers/reorder.py). A camera's frames lost that way are counted
(`dropped_in_dead_worker`).

`capture.dispatch = "push"`: one PUSH socket connected to every worker's PULL (a file's: to its
one worker), round-robin, as before credit dispatch existed; kept for comparison (`run.py bench
--dispatch`).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import zmq

from configs.settings import Config
from streamer.transport import wire
from streamer.transport.sockets import make_socket, poll_ms

SILENT_LEASES = 5  # a worker not heard from for this many leases is gone (as workers/credits.py sees captures)
ETA_FACTOR = 2.0  # credits of a worker slower than this many times the fastest live one are left unused
ETA_SLACK_MS = 10.0  # ... plus this, so workers a few milliseconds apart are all used
LEASE_MARGIN = 0.9  # a credit is spent within this share of its lease: the rest is for the frame's transit
MAX_UNACKED = 4096  # frames remembered per worker until acknowledged
# A camera asks for two credits: while its frame waits for a batch, the next one it captures can
# already be on its way. The worker hands out second credits only once every camera holds one,
# so with more cameras than a batch holds this is the same as one each. With 8 cameras at 60 fps
# on 2 cores it gave 1.16x the frames of one credit each (measured while credits still went out
# only when the worker was about to be free).
CAMERA_CREDITS = 2
CONTROL_MESSAGES = 4  # room beside the frames in a credit link's socket: a hello, stats, a stream start and end


def _frames_socket(context: zmq.Context, kind: int, config: Config, hwm: int) -> zmq.Socket:
    socket = make_socket(context, kind, "", bind=False, security=config.security, hwm=hwm,
                         max_message_bytes=wire.MAX_HEADER_BYTES)
    if config.capture.send_buffer_bytes > 0:
        # A small kernel buffer keeps frames from queueing under ZeroMQ's high-water mark; it has to
        # be set before connecting, so the endpoints are connected by the caller.
        socket.setsockopt(zmq.SNDBUF, config.capture.send_buffer_bytes)
    return socket


def _send(socket: zmq.Socket, message: wire.Message) -> bool:
    try:
        wire.send(socket, message, flags=zmq.NOBLOCK)
        return True
    except zmq.Again:
        return False


class PushLink:
    """Round-robin over the workers' PULL sockets: a frame goes whenever the socket has room."""

    def __init__(self, context: zmq.Context, endpoints: list[str], config: Config):
        self.socket = _frames_socket(context, zmq.PUSH, config, config.capture.send_hwm)
        for endpoint in endpoints:
            self.socket.connect(endpoint)

    def ready(self, timeout_ms: float) -> bool:
        return bool(self.socket.poll(timeout_ms, zmq.POLLOUT))

    def settled(self, timeout_ms: float) -> bool:
        return self.ready(timeout_ms)

    def send_frame(self, frame: wire.Frame) -> bool:
        return _send(self.socket, frame)

    def send_control(self, message: wire.Message) -> bool:
        return _send(self.socket, message)

    def counters(self) -> dict[str, float]:
        return {}

    def close(self, linger_ms: int) -> None:
        self.socket.close(linger=linger_ms)


@dataclass
class WorkerLink:
    endpoint: str
    socket: zmq.Socket
    worker: int | None = None  # the id of the worker process last heard from here
    lease_s: float = 1.0
    eta_ms: float = 0.0
    heard: float = float("-inf")  # monotonic time of its last credit message
    last_hello: float = float("-inf")
    credits: deque[float] = field(default_factory=deque)  # expiry of each credit held, oldest first
    unacked: dict[int, wire.Frame | None] = field(default_factory=dict)  # seq -> a file's frame, or None

    def alive(self, now: float) -> bool:
        return now - self.heard <= SILENT_LEASES * self.lease_s


class CreditLink:
    """Frames sent only against credits the workers grant; see the module's docstring."""

    def __init__(self, context: zmq.Context, endpoints: list[str], config: Config, stream: str, keep: bool,
                 pinned: int | None):
        self.stream, self.keep, self.pinned = stream, keep, pinned
        self.want = config.features.max_batch if keep else CAMERA_CREDITS
        self.links: list[WorkerLink] = []
        self.poller = zmq.Poller()
        try:
            for endpoint in endpoints:
                # Credits bound the frames on their way, so the socket is no back-pressure here: it must
                # hold every frame they allow and the control messages beside them. At capture.send_hwm
                # (2), a camera's second frame found it full now and then while the worker was busy
                # (16 x 60 fps: 16-44 a phase), and that frame was dropped and both its credits voided.
                hwm = max(config.capture.send_hwm, self.want + CONTROL_MESSAGES)
                socket = _frames_socket(context, zmq.DEALER, config, hwm)
                self.links.append(WorkerLink(endpoint, socket, lease_s=config.features.credit_lease_s))
                socket.connect(endpoint)
                self.poller.register(socket, zmq.POLLIN)
        except BaseException:
            self.close(0)
            raise
        self.resend: deque[wire.Frame] = deque()  # a gone worker's unacknowledged file frames, oldest first
        self.last_used: WorkerLink | None = None
        self.received = self.expired = self.resent = self.lost = self.workers_lost = self.malformed = 0

    # ------------------------------------------------------------------------------ sending

    def ready(self, timeout_ms: float) -> bool:
        """True once a frame can go (a usable credit, nothing waiting to be sent again); False after `timeout_ms`."""
        return self._pump(timeout_ms, lambda: not self.resend and self._choose() is not None)

    def settled(self, timeout_ms: float) -> bool:
        """True once every file frame sent is acknowledged (a file's end may go); False after `timeout_ms`."""
        return self._pump(timeout_ms, self._delivered)

    def send_frame(self, frame: wire.Frame) -> bool:
        link = self._choose()
        return link is not None and self._spend(link, frame)

    def send_control(self, message: wire.Message) -> bool:
        """Stream start/end and stats go without credit: to the worker that took the last frames, else any."""
        order = ([self.last_used] if self.last_used else []) + [link for link in self.links if link is not self.last_used]
        return any(_send(link.socket, message) for link in order)

    def counters(self) -> dict[str, float]:
        return {"credits_received": self.received, "credits_expired": self.expired, "frames_resent": self.resent,
                "dropped_in_dead_worker": self.lost, "workers_lost": self.workers_lost,
                "credits_malformed": self.malformed, "credits_held": sum(len(link.credits) for link in self.links)}

    def close(self, linger_ms: int) -> None:
        for link in self.links:
            link.socket.close(linger=linger_ms)

    # ----------------------------------------------------------------------------- internals

    def _spend(self, link: WorkerLink, frame: wire.Frame) -> bool:
        if not _send(link.socket, frame):
            link.credits.clear()  # its connection is gone: those credits can never be spent
            return False
        link.credits.popleft()
        link.unacked[frame.seq] = frame if self.keep else None
        if self.keep:
            self.pinned = self.links.index(link)  # a file stays with the worker that has its frames
        if len(link.unacked) > MAX_UNACKED:
            del link.unacked[next(iter(link.unacked))]
        self.last_used = link
        return True

    def _pump(self, timeout_ms: float, done) -> bool:
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            now = time.monotonic()
            self._receive(now)
            self._look_after(now)
            while self.resend and (link := self._choose()) is not None and self._spend(link, self.resend[0]):
                self.resend.popleft()
                self.resent += 1
            if done():
                return True
            remaining = deadline - now
            if remaining <= 0:
                return False
            self.poller.poll(poll_ms(min(remaining, 0.1)))

    def _receive(self, now: float) -> None:
        for link in self.links:
            while True:
                try:
                    parts = link.socket.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                try:
                    credit = wire.unpack(parts)
                except wire.WireError:
                    credit = None
                if not isinstance(credit, wire.Credit):
                    self.malformed += 1
                    continue
                if link.worker is not None and credit.worker != link.worker:
                    self._lose(link)  # the worker restarted: what the old one held is gone
                link.worker, link.heard, link.eta_ms = credit.worker, now, credit.eta_ms
                link.lease_s = credit.lease_ms / 1000
                for seq in credit.done:
                    link.unacked.pop(seq, None)
                link.credits.extend([now + LEASE_MARGIN * link.lease_s] * credit.grant)
                self.received += credit.grant

    def _look_after(self, now: float) -> None:
        for link in self.links:
            while link.credits and link.credits[0] <= now:
                link.credits.popleft()
                self.expired += 1
            if link.worker is not None and not link.alive(now):
                self._lose(link)
                link.worker = None
            if now - link.last_hello >= link.lease_s / 2 and _send(link.socket, wire.Hello(self.stream, self.want,
                                                                                          time.time())):
                link.last_hello = now

    def _lose(self, link: WorkerLink) -> None:
        """The worker behind `link` died or restarted: its credits are void, its file frames go again."""
        self.workers_lost += 1
        link.credits.clear()
        frames = [frame for frame in link.unacked.values() if frame is not None]
        self.lost += len(link.unacked) - len(frames)
        link.unacked.clear()
        if frames:
            self.resend = deque(sorted([*self.resend, *frames], key=lambda frame: frame.seq))
        if self.pinned is not None and self.links[self.pinned] is link:
            self.pinned = None  # the file moves to whichever worker grants credit next

    def _choose(self) -> WorkerLink | None:
        now = time.monotonic()
        if self.pinned is not None:
            link = self.links[self.pinned]
            return link if link.credits else None
        holding = [link for link in self.links if link.credits]
        if not holding:
            return None
        if self.keep:
            return min(holding, key=lambda link: link.eta_ms)
        best = min((link.eta_ms for link in self.links if link.alive(now)), default=0.0)
        usable = [link for link in holding if link.eta_ms <= ETA_FACTOR * best + ETA_SLACK_MS]
        return min(usable, key=lambda link: link.eta_ms) if usable else None

    def _delivered(self) -> bool:
        return not self.resend and not any(frame is not None for link in self.links for frame in link.unacked.values())
