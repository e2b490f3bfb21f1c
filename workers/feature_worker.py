"""The feature worker: frames from any number of streams -> batched ResNet-18 -> 512-d features.

It binds the frames endpoint (captures connect and push), batches across streams up to
`features.max_batch` frames, runs the backend, and pushes one message per batch (its frames'
features, `wire.FeatureBatch`) to the LSTM worker. Stream start/end and upstream stats are passed along. Malformed messages are
dropped and counted by reason; the worker never stops for one.

Batching takes what is already queued and goes (`features.max_wait_ms` = 0): while one batch
runs, the next frames queue up, so batches grow by themselves when the worker is the
bottleneck and stay at one frame, with no added wait, when it is not. Backends that can run
several batches at once (OpenVINO: `features.openvino_requests`) get the next batch while the
previous ones run; a finished batch frees its request at once, and features still leave in
the order the frames came in. The backend's completion callback writes to a pipe the poll
loop watches, so nothing spins. The frames socket keeps its queues small (one message per
capture, a 64 KiB kernel buffer), so a slow model makes the captures drop stale frames instead
of serving old ones late. The profile of a saturated worker
is ~98% inside the backend's inference call.

With credit dispatch (`capture.dispatch`, the default) the frames socket is a ROUTER: captures
say hello and send a frame only against a credit this worker granted (workers/credits.py). The
worker keeps one batch of credits out (`features.max_batch`, counting frames that arrived but
are not taken yet): as soon as a batch is taken, its credits go out again, so the next batch's
frames come in while it runs and wait here at most about one batch time. Granting only once the
backend is free (or a predicted moment before) left it idle for a round trip to every capture,
which on a loaded machine is long: 0.75x push's throughput at 8 x 60 fps on 2 cores. A batch
that has frames waits up to CREDIT_FILL_S for the rest its credits called for. With push
dispatch it is a PULL socket the captures push into round-robin.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np
import zmq

from configs.settings import Config, add_config_arguments, from_args
from streamer.transport import wire
from streamer.transport.drops import DropCounter
from streamer.runtime.logs import setup_logging
from streamer.transport.sockets import PortInUseError, StopFlag, bind_endpoint, make_socket, poll_ms, split_endpoints
from workers.credits import CreditLedger

log = logging.getLogger("features")

HELD_BATCHES_PER_REQUEST = 4  # batches done but waiting for an older one, per batch the backend runs at once
# Credit dispatch: how long a batch that has frames waits for the rest its credits called for.
CREDIT_FILL_S = 0.005
ETA_WEIGHT = 0.3  # weight of the newest batch in the batch time each credit carries


class FeatureWorker:
    def __init__(self, config: Config, name: str):
        from workers.backends import choose_backend, configure_threads  # torch: after `--help` has answered
        from workers.loading import load_extractor

        self.config, self.name = config, name
        settings = config.features
        configure_threads(settings)
        loaded = load_extractor(config)
        self.preset, self.weights = loaded.preset, loaded.weights
        self.backend = choose_backend(loaded.extractor, loaded.preset, backend=settings.backend,
                                      device=settings.device, max_batch=settings.max_batch, settings=settings)
        self.counters: Counter[str] = Counter()
        self.drop = DropCounter(log)
        self.cnn_ms_total = 0.0
        self.credits = CreditLedger(settings.credit_lease_s) if config.capture.dispatch == "credit" else None
        self.eta_ms = 0.0  # moving average of batch start -> features, sent with each credit

    def run(self, stop: StopFlag) -> int:
        config = self.config
        context = zmq.Context()
        # No message part bigger than one of the model's frames: anything else is refused by ZeroMQ unread.
        frames_in = bind_frames_socket(context, config,
                                       max_message_bytes=max(3 * self.preset.crop ** 2, wire.MAX_HEADER_BYTES))
        # Room for every feature that can leave at once (all held batches, when the oldest completes),
        # twice over: a burst must not find the queue full while this process's I/O thread waits for a core.
        burst = HELD_BATCHES_PER_REQUEST * self.backend.depth * config.features.max_batch
        features_out = make_socket(context, zmq.PUSH, config.endpoints.features, bind=False,
                                   security=config.security, hwm=max(64, 2 * burst))
        poller = zmq.Poller()
        done_reader, done_writer = os.pipe()  # the backend's callback writes a byte when a batch is done
        for fd in (done_reader, done_writer):
            os.set_blocking(fd, False)
        poller.register(done_reader, zmq.POLLIN)

        def wake() -> None:
            try:
                os.write(done_writer, b"\0")
            except BlockingIOError:
                pass  # the pipe is full of unread wake-ups already: the loop will look anyway

        in_flight: deque[Batch] = deque()
        last_stats = float("-inf")  # the first stats go out at once: `up` reads them as "this worker is ready"
        log.info("feature worker %s ready on %s (weights: %s, backend: %s, up to %d batch(es) at once)", self.name,
                 config.endpoints.frames, self.weights, self.backend.name, self.backend.depth)
        try:
            while not stop:
                # The backend says when a request is free; the cap only bounds batches done but held for order.
                taking = len(in_flight) < HELD_BATCHES_PER_REQUEST * self.backend.depth and self.backend.has_room()
                # Frames are only watched while a batch could start: else they wait in the socket.
                poller.register(frames_in, zmq.POLLIN if taking else 0)
                events = dict(poller.poll(100))
                if done_reader in events:
                    while _read_some(done_reader):
                        pass
                if events.get(frames_in):
                    batch, event = self._collect_batch(frames_in, features_out)
                    if batch:
                        in_flight.append(self._start(batch, wake))
                    if event is not None and in_flight:
                        in_flight[-1].after.append(event)  # leaves behind the features of the frames before it
                    elif event is not None:
                        self._forward(features_out, event)
                for batch in in_flight:
                    if batch.features is None and batch.pending.done():
                        self._collect_features(batch)  # at once: frees its request for the next batch
                while in_flight and in_flight[0].features is not None:  # in order, so each stream's stay ordered
                    self._finish(in_flight.popleft(), features_out)
                if self.credits is not None:
                    self._grant(frames_in)
                if time.monotonic() - last_stats >= config.features.stats_interval_s:
                    last_stats = time.monotonic()
                    self._forward(features_out, wire.Stats(process=f"features:{self.name}", t=time.time(),
                                                           counters=self.stats()))
        finally:
            for batch in in_flight:
                batch.pending.wait()  # OpenVINO may still read the frames: let it finish before they go
            frames_in.close()
            features_out.close()
            context.term()
            os.close(done_reader)
            os.close(done_writer)
        return 0

    def _grant(self, frames_in: zmq.Socket) -> None:
        """Credits up to one batch out; answers to hellos; acknowledgements."""
        now = time.monotonic()
        self.credits.expire(now)
        room = self.config.features.max_batch - self.credits.outstanding()
        for identity, credit in self.credits.messages(max(0, room), now, self.eta_ms):
            try:
                frames_in.send_multipart([identity, *wire.pack(credit)], flags=zmq.NOBLOCK)
            except zmq.Again:
                self.drop("credit_unsent", "a capture is not reading its credits")

    def stats(self) -> dict[str, float]:
        batches = self.counters["batches"]
        return {**self.counters, **self.drop.counters(), **(self.credits.counters() if self.credits else {}),
                "mean_batch": self.counters["frames"] / batches if batches else 0.0,
                "cnn_ms_per_batch": self.cnn_ms_total / batches if batches else 0.0, "cnn_ms_total": self.cnn_ms_total,
                # which backend runs, as a key worth 1 (Prometheus' info convention), for dashboards
                f"{wire.BACKEND_KEY}{self.backend.name}": 1.0}

    def _collect_batch(self, frames_in: zmq.Socket, features_out: zmq.Socket
                       ) -> tuple[list[tuple[wire.Frame, float, bytes]], wire.Message | None]:
        """Everything waiting, up to max_batch frames; waits at most max_wait_ms for the batch to fill.

        A stream start or end ends the batch and is returned with it: it must reach the LSTM worker
        after the features of the frames sent before it (a file's last labels precede its end)."""
        settings = self.config.features
        batch: list[tuple[wire.Frame, float, bytes]] = []
        started = time.perf_counter()
        deadline = started + settings.max_wait_ms / 1000
        while len(batch) < settings.max_batch:
            try:
                parts = frames_in.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                remaining = deadline - time.perf_counter()
                if self.credits is not None and self.credits.outstanding():  # frames called for are on their way
                    remaining = max(remaining, started + CREDIT_FILL_S - time.perf_counter())
                if remaining <= 0 or not batch or not frames_in.poll(poll_ms(remaining)):
                    break
                continue
            received = time.time()
            identity = b""
            if self.credits is not None:  # a ROUTER: the sending capture's identity comes first
                identity, parts = parts[0].bytes, parts[1:]
            message = self._parse(parts)
            if isinstance(message, wire.Hello) and self.credits is not None:
                self.credits.hello(identity, message, time.monotonic())
            elif isinstance(message, wire.Frame):
                if self.credits is not None:
                    self.credits.frame(identity, time.monotonic())
                batch.append((message, received, identity))
            elif isinstance(message, (wire.StreamStart, wire.StreamEnd)):
                return batch, message
            elif message is not None:
                self._forward(features_out, message)  # capture stats go downstream at once
        return batch, None

    def _parse(self, parts) -> wire.Message | None:
        try:
            message = wire.unpack(parts)
        except wire.WireError as error:
            self.drop(error.reason, str(error))
            return None
        if isinstance(message, wire.Frame):
            expected = (self.preset.crop, self.preset.crop, 3)
            if message.image.shape != expected:
                self.drop("frame_size", f"stream {message.stream}: frame {message.image.shape}, the model's preset "
                                         f"needs {expected}; set capture.crop={self.preset.crop} "
                                         f"capture.resize={self.preset.resize}")
                return None
        elif isinstance(message, (wire.Feature, wire.FeatureBatch, wire.Label, wire.Credit)) or (
                isinstance(message, wire.Hello) and self.credits is None):
            self.drop("kind", f"a {type(message).__name__} message arrived on the frames socket")
            return None
        return message

    def _start(self, frames: list[tuple[wire.Frame, float, bytes]], wake) -> "Batch":
        started = time.time()
        images = np.stack([frame.image for frame, _, _ in frames])
        return Batch([(frame, received) for frame, received, _ in frames], started, self.backend.submit(images, wake),
                     senders=[sender for _, _, sender in frames])

    def _collect_features(self, batch: "Batch") -> None:
        batch.features = batch.pending.result()
        if self.config.features.slowdown > 1:  # a benchmark's stand-in for a slower machine: compute time x k
            time.sleep((self.config.features.slowdown - 1) * (time.time() - batch.started))
        batch.cnn_ms = (time.time() - batch.started) * 1000  # from its start to its features (others ran beside)
        self.eta_ms = batch.cnn_ms if not self.eta_ms else (1 - ETA_WEIGHT) * self.eta_ms + ETA_WEIGHT * batch.cnn_ms
        self.cnn_ms_total += batch.cnn_ms
        self.counters["batches"] += 1
        self.counters["frames"] += len(batch.frames)

    def _finish(self, batch: "Batch", features_out: zmq.Socket) -> None:
        """The batch's features to the LSTM worker, in one message."""
        cnn_ms = batch.cnn_ms
        features = []
        for (frame, received), vector in zip(batch.frames, batch.features):
            stages = dict(frame.stages)
            stages["transport_frames"] = max(0.0, (received - frame.t_sent) * 1000)
            stages["queue_features"] = (batch.started - received) * 1000
            stages["cnn"] = cnn_ms
            feature = wire.Feature(stream=frame.stream, seq=frame.seq, t_capture=frame.t_capture, vector=vector,
                                   truth=frame.truth, truth_since=frame.truth_since, stages=stages,
                                   session=frame.session)
            features.append(feature)
        self._forward(features_out, wire.FeatureBatch(features))
        if self.credits is not None:  # acknowledged with the next credit message to each capture
            for (frame, _), sender in zip(batch.frames, batch.senders):
                self.credits.finished(sender, frame.seq)
        for event in batch.after:
            self._forward(features_out, event)

    def _forward(self, features_out: zmq.Socket, message: wire.Message) -> None:
        try:
            wire.send(features_out, message, flags=zmq.NOBLOCK)
            self.counters["sent"] += 1
        except zmq.Again:
            # The LSTM worker is gone or far behind; dropping here keeps this worker's memory bounded.
            self.drop("downstream_full", "the LSTM worker is not taking features")


@dataclass
class Batch:
    frames: list[tuple[wire.Frame, float]]  # each frame with the time it was received
    started: float
    pending: object  # the backend's handle: done(), wait(), result()
    features: np.ndarray | None = None  # once done; sent when every earlier batch has been
    cnn_ms: float = 0.0
    after: list[wire.Message] = field(default_factory=list)  # stream start/end messages that follow these frames
    senders: list[bytes] = field(default_factory=list)  # credit dispatch: each frame's capture (ROUTER identity)


def _read_some(fd: int) -> bool:
    try:
        return bool(os.read(fd, 4096))
    except BlockingIOError:
        return False


def bind_frames_socket(context: zmq.Context, config: Config, max_message_bytes: int | None = None) -> zmq.Socket:
    """The socket captures send frames into (a ROUTER with credit dispatch, a PULL with push), with a
    small kernel receive buffer.

    ZeroMQ's high-water mark counts messages in its own queues; the TCP buffers under it are
    sized by the kernel (up to megabytes on loopback: ~50 frames of 224x224 per connection), and
    frames parked there are served late instead of being dropped at the capture. The receive
    buffer has to be set before binding (accepted connections inherit it), so the socket is made
    without endpoints and bound here.
    """
    settings = config.features
    kind = zmq.ROUTER if config.capture.dispatch == "credit" else zmq.PULL
    socket = make_socket(context, kind, "", bind=True, security=config.security, hwm=settings.recv_hwm,
                         max_message_bytes=max_message_bytes)
    if settings.recv_buffer_bytes > 0:
        socket.setsockopt(zmq.RCVBUF, settings.recv_buffer_bytes)
    try:
        for endpoint in split_endpoints(config.endpoints.frames):
            bind_endpoint(socket, endpoint, config.security, setting="endpoints.frames")
    except PortInUseError:
        socket.close()
        raise
    return socket


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--name", default="0", help="this worker's name in stats and logs")


def main(args: argparse.Namespace) -> int:
    setup_logging(f"features:{args.name}")
    config = from_args(args)
    return FeatureWorker(config, args.name).run(StopFlag())
