"""The capture process: a source -> preprocessed frames pushed over ZeroMQ (several live sources
may share one process, a thread group each: `run_cameras`).

Three threads with one job each:
- a connection opens the source and pulls frames from it at the configured rate into a
  one-frame slot; it is the only thread that may block inside OpenCV/FFmpeg;
- the reader watches the connection: a source that breaks, or gives no frame for
  `capture.stall_timeout_s` (a camera that hangs with its socket open), is given up and opened
  again with capped exponential backoff, each time as a new `session` (a fresh window downstream);
- the sender (main thread) waits until a feature worker can take a frame (it granted a credit, or
  with push dispatch the socket has room: streamer/capture/dispatch.py), takes the newest one,
  applies the geometric half of the preset and sends it; it also tells downstream when a
  stream starts, is lost (`StreamEnd` "source lost") and ends.
A slow consumer therefore makes a camera's frames drop (each counted), never makes latency grow.
A file or folder is different: its frames are not going anywhere, so by default every sampled
frame is kept and sent (back-pressure: the connection waits for the sender, the sender for the
socket), numbered 0..N-1, and "source ended" follows the last one. `capture.files_as_live`
replays a file at `capture.fps` as a live camera instead (newest frame wins), for demos and benchmarks.
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import secrets
import threading
import time
import traceback
import zlib
from dataclasses import dataclass
from typing import Callable

import zmq

from configs.exit_codes import ExitCode
from configs.settings import ActionableError, Config, add_config_arguments, from_args
from models.capture_preset import capture_preset, fit_capture
from models.presets import geometric
from streamer.transport import wire
from streamer.runtime.logs import setup_logging
from streamer.transport.sockets import StopFlag, split_endpoints
from streamer.capture.dispatch import CreditLink, PushLink
from streamer.capture.sources import (SOURCE_VARIABLE, SourceError, SourceFrame, _redact, live_frames,
                                      monotonic_pacer, open_source, parse_spec, sampled_frames, scrub)
from streamer.capture.previews import PreviewSender

log = logging.getLogger("capture")

# Sessions are this process's random id (high bits) and a counter that only goes up (low bits): no
# wall clock, so a clock stepped back cannot make a restarted capture's frames look old, and a peer
# that cannot read the frames cannot guess the session of a stream to end it.
BOOT_ID = secrets.randbits(29) + 1
SESSION_COUNTER_BITS = 32


def session_id(counter: int) -> int:
    return (BOOT_ID << SESSION_COUNTER_BITS) | (counter % (1 << SESSION_COUNTER_BITS))


@dataclass
class _Captured:
    frame: SourceFrame
    t_capture: float  # wall clock when the source handed us the frame
    session: int  # which connection of the source it came from
    keep: bool = False  # a file's frame: sent however long it waits, never dropped for a newer one


class LatestSlot:
    """Holds only the newest frame; putting over an unsent frame drops (and counts) the old one."""

    def __init__(self) -> None:
        self._item: _Captured | None = None
        self._ready = threading.Condition()
        self.dropped = 0

    def put(self, item: _Captured) -> None:
        with self._ready:
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self._ready.notify_all()

    def offer(self, item: _Captured, timeout: float) -> bool:
        """Put `item` once the slot is empty (the sender took the previous frame); False after `timeout`."""
        with self._ready:
            if self._item is not None:
                self._ready.wait(timeout)
                if self._item is not None:
                    return False
            self._item = item
            self._ready.notify_all()
            return True

    def holds_kept(self) -> bool:
        with self._ready:
            return self._item is not None and self._item.keep

    def take(self, timeout: float) -> _Captured | None:
        with self._ready:
            if self._item is None:
                self._ready.wait(timeout)
            item, self._item = self._item, None
            self._ready.notify_all()  # a connection waiting in offer() may hand over its frame
            return item


class Connection(threading.Thread):
    """One opening of the source, read until it ends, breaks, or the watchdog gives up on it.

    OpenCV's open and read can block inside FFmpeg for longer than any timeout we pass (a read
    timeout of T returned only after ~3T on these machines), so the blocking calls run in this
    thread and the Reader watches `last_progress`. An abandoned connection is left to return on
    its own (daemon thread); it then closes its source and never touches the slot again.
    """

    def __init__(self, spec: str, config: Config, slot: LatestSlot, session: int, stop: StopFlag,
                 count_frames: Callable[[int], int]):
        super().__init__(name=f"source-{session}", daemon=True)
        self.spec, self.config, self.slot, self.session, self.stop = spec, config, slot, session, stop
        self.count_frames = count_frames  # adds to the Reader's total and returns it
        self.opened = threading.Event()
        self.abandoned = threading.Event()
        self.last_progress = time.monotonic()  # when open started, it finished, or a frame came back
        self.frames = 0
        self.finished = False  # the source ended for good (a file without loop, or max_frames)
        self.error: SourceError | None = None
        self.description, self.source_fps = _redact(spec), 0.0  # never the raw spec: it may hold a password

    def run(self) -> None:
        capture = self.config.capture
        # FFmpeg's own timeouts are set longer than the watchdog's: when a stream hangs, FFmpeg
        # returns after each timeout with one stale frame drained from its decoder (seen on
        # loopback: 3 such frames 2 s apart), which would keep a watchdog at the same limit fed.
        timeout_s = 1.5 * capture.stall_timeout_s
        try:
            source = open_source(self.spec, loop=capture.loop, seed=capture.synthetic_seed,
                                 segment_frames=capture.synthetic_segment_frames, timeout_s=timeout_s)
        except Exception as error:  # noqa: BLE001 - whatever the driver raised, the Reader decides
            self.error = _as_source_error(error, self.spec)
            return
        try:
            if self.abandoned.is_set():
                return
            self.description, self.source_fps = source.description, source.fps
            self.last_progress = time.monotonic()
            self.opened.set()
            self.finished = self._read_until_end(source)
        except Exception as error:  # noqa: BLE001
            self.error = _as_source_error(error, self.spec)
        finally:
            source.close()

    def _read_until_end(self, source) -> bool:
        """True when the source ended for good; raises SourceError when it broke."""
        capture = self.config.capture
        keep = every_frame(source, self.config)
        # Paced sources (files, folders, synthetic) advance source_fps/fps source frames per sample;
        # live sources deliver at their own rate and are sampled by time. A file whose every frame
        # is kept is read as fast as the pipeline takes it: no pacing.
        frames = live_frames(source, capture.fps) if source.live else sampled_frames(source, capture.fps)
        pacer = None if (keep or source.live) else monotonic_pacer(capture.fps)
        while not self.stop and not self.abandoned.is_set():
            if capture.max_frames and self.count_frames(0) >= capture.max_frames:
                return True
            if pacer is not None:
                time.sleep(next(pacer))
            frame = next(frames, None)
            self.last_progress = time.monotonic()
            if frame is None:
                return True
            if self.abandoned.is_set():
                break
            self.frames += 1
            self.count_frames(1)
            item = _Captured(frame, time.time(), self.session, keep)
            if not keep:
                self.slot.put(item)
            elif not self._hand_over(item):
                break
        return False

    def _hand_over(self, item: _Captured) -> bool:
        """Back-pressure for a file: wait until the sender took the previous frame. False when stopped."""
        while not self.slot.offer(item, timeout=0.1):
            self.last_progress = time.monotonic()  # waiting for the pipeline is not a stalled source
            if self.stop or self.abandoned.is_set():
                return False
        return True

    def stalled_for(self) -> float:
        return time.monotonic() - self.last_progress


def every_frame(source, config: Config) -> bool:
    """Whether every sampled frame of `source` is sent (files, folders) rather than the newest (cameras)."""
    return source.finite and not config.capture.files_as_live


def frames_endpoints(spec: str, stream: str, config: Config) -> list[str]:
    """Where this capture pushes frames. A camera round-robins over every feature worker; a file's frames
    all go to one (picked by stream name, so several files spread over the workers), so its end follows
    its last frame through that worker: with two, the end could overtake the other's last batch."""
    endpoints = split_endpoints(config.endpoints.frames)
    if kept_source(spec, config):
        return [endpoints[zlib.crc32(stream.encode()) % len(endpoints)]]
    return endpoints


def kept_source(spec: str, config: Config) -> bool:
    """Whether `spec` names a file or folder whose every frame is sent (known before it is opened)."""
    try:
        kind = parse_spec(spec).kind
    except SourceError:
        return False  # the reader reports what is wrong with the spec
    return kind in ("file", "folder") and not config.capture.files_as_live


def open_frame_link(context: zmq.Context, spec: str, stream: str, config: Config) -> CreditLink | PushLink:
    """The capture's way to the feature workers, as `capture.dispatch` says."""
    chosen = frames_endpoints(spec, stream, config)
    if config.capture.dispatch == "push":
        return PushLink(context, chosen, config)
    endpoints = split_endpoints(config.endpoints.frames)
    keep = kept_source(spec, config)
    # Connected to every worker, so a file can move on when its worker dies; it starts at its own.
    return CreditLink(context, endpoints, config, stream, keep, endpoints.index(chosen[0]) if keep else None)


def _as_source_error(error: Exception, spec: str) -> SourceError:
    """A driver error other than SourceError (an OpenCV exception, an OS error) is retried like one.

    Its text and traceback are scrubbed of the spec's secrets before they are logged."""
    if isinstance(error, SourceError):
        return SourceError(scrub(str(error), spec), retry=error.retry)
    description = _redact(spec)
    log.error("%s: unexpected error from the video driver:\n%s", description,
              scrub("".join(traceback.format_exception(error)), spec).rstrip())
    return SourceError(f"{description}: {type(error).__name__}: {scrub(str(error), spec)}", retry=True)


class Reader(threading.Thread):
    """Keeps one Connection alive: opens the source, watches it, reconnects with capped backoff.

    Outages of a source (it broke or stalled after opening) are put on `outage_queue`
    for the sender thread, which tells downstream the stream was lost.
    """

    def __init__(self, spec: str, config: Config, slot: LatestSlot, stop: StopFlag):
        super().__init__(name="reader", daemon=True)
        self.spec, self.config, self.slot, self.stop = spec, config, slot, stop
        self.frames_read = 0
        self.reconnects = 0  # waits before trying again, after any failure
        self.connect_failures = 0  # openings that failed
        self.outages = 0  # a source that had delivered frames broke or stalled
        self.stalls = 0  # connections given up by the watchdog (no frame for stall_timeout_s)
        self.source_errors = 0
        self.session = 0
        self.description = _redact(spec)  # the source's own description once open
        self.source_fps = 0.0
        self.ended = threading.Event()  # the source ended for good (file done) or failed fatally
        self.fatal_error: str | None = None
        self.stuck_exit = False  # too many reader threads stuck in the driver: exit to be restarted
        self.crashed = False  # an unexpected error in this thread: exit to be restarted
        self.connected = threading.Event()
        self.outage_queue: queue.Queue[tuple[int, str]] = queue.Queue()
        self._stuck: list[Connection] = []
        self._connections = 0
        self._count_lock = threading.Lock()

    def count_frames(self, added: int) -> int:
        with self._count_lock:
            self.frames_read += added
            return self.frames_read

    def run(self) -> None:
        try:
            self._keep_connected()
        except Exception:  # noqa: BLE001 - a bug here must not leave the capture idling forever
            log.exception("the reader of %s failed", self.description)
            self.crashed = True

    def _keep_connected(self) -> None:
        capture = self.config.capture
        delay = capture.retry_initial_s
        while not self.stop:
            self._connections += 1
            self.session = session_id(self._connections)  # a fresh window downstream
            connection = Connection(self.spec, self.config, self.slot, self.session, self.stop, self.count_frames)
            connection.start()
            outcome = self._watch(connection)
            self.connected.clear()
            if outcome == "stopped":
                connection.abandoned.set()
                connection.join(timeout=1.5)  # a live read returns within a frame interval
                return
            if outcome == "ended":
                self.ended.set()
                return
            if connection.frames:
                delay = capture.retry_initial_s  # it worked for a while: start the backoff again
            if outcome == "failed" and not connection.error.retry:
                return self._fail(str(connection.error))
            if outcome == "stalled":
                self.stalls += 1
                message = (f"{connection.description}: no frame for {capture.stall_timeout_s:.1f} s (camera stalled "
                           f"or network lost; the socket may still be open); reconnecting")
            else:
                message = str(connection.error)
            if connection.opened.is_set():
                self.outages += 1
                self.outage_queue.put((connection.session, message))
            else:
                self.connect_failures += 1
            if self._too_many_stuck():
                return
            self._retry_later(message, delay)
            delay = min(delay * 2, capture.retry_max_s)

    def _watch(self, connection: Connection) -> str:
        """Wait until the connection ends, fails or stalls (or we are stopped); returns which."""
        capture = self.config.capture
        # Opening may legitimately take FFmpeg's open timeout (1.5 x) plus the diagnosis of a failure.
        open_limit = 2 * capture.stall_timeout_s + 6.0
        read_limit = max(capture.stall_timeout_s, 2.0 / capture.fps if capture.fps else 0.0)
        while True:
            connection.join(timeout=0.05)
            if not connection.is_alive():
                if connection.finished:
                    return "ended"
                if connection.error is None and not self.stop:  # cannot happen; never wait silently
                    connection.error = SourceError(f"{connection.description}: the reader stopped", retry=True)
                return "failed" if connection.error is not None else "stopped"
            if self.stop:
                return "stopped"
            if connection.opened.is_set() and not self.connected.is_set():
                self.description, self.source_fps = connection.description, connection.source_fps
                self.connected.set()
                log.info("source %s open (%s fps native)", connection.description, connection.source_fps or "unknown")
            limit = read_limit if connection.opened.is_set() else open_limit
            if connection.stalled_for() > limit:
                connection.abandoned.set()
                self._stuck.append(connection)
                return "stalled"

    def _too_many_stuck(self) -> bool:
        self._stuck = [c for c in self._stuck if c.is_alive()]
        if len(self._stuck) <= self.config.capture.max_stuck_readers:
            return False
        self.fatal_error = (f"{len(self._stuck)} reader threads are stuck inside the video driver for "
                            f"{self.description}; exiting so the process is restarted clean")
        self.stuck_exit = True
        log.error("%s", self.fatal_error)
        self.ended.set()
        return True

    def _retry_later(self, message: str, delay: float) -> None:
        self.source_errors += 1
        self.reconnects += 1
        log.warning("%s; retrying in %.1f s", message, delay)
        self.stop.wait(delay)

    def _fail(self, message: str) -> None:
        self.fatal_error = message
        log.error("%s", message)
        self.ended.set()

    def counters(self) -> dict[str, float]:
        return {"frames_read": self.frames_read, "reconnects": self.reconnects,
                "connect_failures": self.connect_failures, "outages": self.outages, "stalls": self.stalls,
                "source_errors": self.source_errors, "connected": float(self.connected.is_set()),
                "stuck_readers": len([c for c in self._stuck if c.is_alive()])}


# A file's last frames and its end can still be queued when it ends (the pipeline is behind by design):
# closing waits this long for them to leave, rather than the usual moment.
ENDED_LINGER_MS = 60_000
# A stopped capture's last counters and stream end wait this long for room in a socket its last
# frames filled (with push dispatch it holds capture.send_hwm, 2): sent at once, they were lost now
# and then, and the stream then ended downstream only when the LSTM worker evicted it for silence.
FINAL_MESSAGES_S = 0.5


def run_capture(spec: str, stream: str, config: Config, stop: StopFlag | None = None,
                context: zmq.Context | None = None) -> int:
    """Capture `spec` as stream `stream` until stopped or the source ends. Returns an exit code.

    `context`: a ZeroMQ context shared with the process's other cameras (run_cameras), left open."""
    wire.check_stream_name(stream)
    stop = StopFlag() if stop is None else stop  # (an unset flag is falsy: `or` would replace it)
    config = fit_capture(config).config  # (already resolved under `up` and the bench: no bundle read)
    preset = capture_preset(config)
    own_context = context is None
    context = zmq.Context() if own_context else context
    link = open_frame_link(context, spec, stream, config)
    previews = PreviewSender(context, config, stream) if config.capture.preview_fps > 0 else None
    slot = LatestSlot()
    reader = Reader(spec, config, slot, stop)
    sent = send_failures = 0
    announced_session = -1
    lost_session: int | None = None  # an outage not yet told downstream
    truth, truth_since = None, -1
    seq = 0
    unsent: wire.Frame | None = None  # a file's frame the link could not take yet: sent before any other
    frame_session = -1
    linger_ms = 200  # how long the last messages may take to leave once we close
    last_stats = time.monotonic()
    process = f"capture:{stream}"

    def counters() -> dict[str, float]:
        return {**reader.counters(), "frames_sent": sent, "dropped_stale": slot.dropped,
                "send_failures": send_failures, **link.counters(), **(previews.counters() if previews else {})}

    try:
        reader.start()
        while not stop:
            if not reader.is_alive() and unsent is None and not slot.holds_kept():
                break
            while not reader.outage_queue.empty():
                lost_session, _ = reader.outage_queue.get()
            if lost_session is not None:
                # The LSTM worker drops the stream's state; the next session starts a fresh window.
                if link.send_control(wire.StreamEnd(stream=stream, reason="source lost", t=time.time(),
                                                    session=lost_session)):
                    lost_session = None
            elif announced_session != reader.session and reader.connected.is_set():
                if link.send_control(wire.StreamStart(stream=stream, source=reader.description,
                                                      fps=config.capture.fps, width=preset.crop,
                                                      height=preset.crop, t=time.time())):
                    announced_session = reader.session
            if not link.ready(50):
                continue  # nobody can take a frame now: the reader keeps replacing the newest one
            if time.monotonic() - last_stats >= config.capture.stats_interval_s:
                # Sent only when the link has room, and the timer restarts only once it went out,
                # so a consumer that is far behind still gets every capture's counters.
                if link.send_control(wire.Stats(process=process, t=time.time(), counters=counters())):
                    last_stats = time.monotonic()
            if unsent is not None:
                unsent = _send_kept(link, unsent)
                if unsent is None:
                    sent += 1
                    seq += 1
                continue
            item = slot.take(timeout=0.05)
            if item is None:
                continue
            started = time.perf_counter()
            image = geometric(item.frame.image_bgr, preset)
            if item.session != frame_session:  # each session numbers its frames from 0 (workers/reorder.py)
                frame_session, seq, truth = item.session, 0, None
            if item.frame.truth != truth:
                truth, truth_since = item.frame.truth, seq
            frame = wire.Frame(stream=stream, seq=seq, t_capture=item.t_capture, image=image, truth=truth,
                               truth_since=truth_since, session=item.session,
                               stages={"preprocess": (time.perf_counter() - started) * 1000,
                                       "capture_wait": (time.time() - item.t_capture) * 1000})
            if link.send_frame(frame):
                sent += 1
                seq += 1
            else:
                send_failures += 1
                if item.keep:
                    unsent = frame  # back-pressure: this frame waits, the connection waits behind it
                else:
                    slot.dropped += 1
                continue
            if previews:  # after the frame left, so a thumbnail never delays it
                previews.offer(image, frame.seq, frame.t_capture)
        reason = "stopped" if stop else ("failed" if reader.fatal_error or reader.crashed else "source ended")
        # the final counters, so a summary made from them (`up`'s) adds up to the end
        stats = wire.Stats(process=process, t=time.time(), counters=counters())
        end = wire.StreamEnd(stream=stream, reason=reason, t=time.time(),
                             session=frame_session if frame_session >= 0 else reader.session)
        if reason == "source ended":  # after a file's last frame, however long that waits
            _send_when_possible(link, stats, stop)
            _send_when_possible(link, end, stop)
            linger_ms = ENDED_LINGER_MS
        else:  # stopped or failed: the socket may be full of the last frames just now, so a moment for room
            deadline = time.monotonic() + FINAL_MESSAGES_S
            for message in (stats, end):
                _send_before(link, message, deadline)
        log.info("capture %s done (%s): %d read, %d sent, %d dropped", stream, reason, reader.frames_read, sent,
                 slot.dropped)
        if reader.stuck_exit or reader.crashed:
            return ExitCode.RESTART_ME
        return ExitCode.USER_ERROR if reader.fatal_error else ExitCode.OK
    finally:
        stop.set()
        reader.join(timeout=2.0)
        if previews:
            previews.close()
        link.close(linger_ms)  # give the last messages a moment to leave
        if own_context:
            context.term()


def run_cameras(named: list[tuple[str, str]], config: Config, stop: StopFlag | None = None) -> int:
    """Capture several sources in this process: each (stream, spec) runs `run_capture` in a thread of its
    own, with a stop flag of its own, and all share one ZeroMQ context.

    Why: with credit dispatch every frame is one credit in and one frame out, each waking a ZeroMQ I/O
    thread; a process per camera wakes one per frame, one shared I/O thread serves the frames of
    several cameras at a wake-up (16 cameras at 60 fps on 2 cores, docs/benchmarks.md: the captures
    took 50-52% of a core in two processes against 66-70% in sixteen). A process per camera also
    holds its own copy of Python, NumPy and OpenCV.

    A camera whose source ends or fails for good stops alone. One that asks for a fresh process
    (readers stuck in the driver) or crashes stops them all, and the process exits with RESTART_ME,
    so `up` restarts the lot: each of the others then starts a new session (a fresh window)."""
    stop = StopFlag() if stop is None else stop
    context = zmq.Context()
    flags = [StopFlag(signals=False) for _ in named]
    codes: dict[str, int] = {}

    def camera(spec: str, stream: str, flag: StopFlag) -> None:
        try:
            codes[stream] = run_capture(spec, stream, config, flag, context)
        except Exception:  # noqa: BLE001 - the others are stopped and the process restarted
            log.exception("the capture of %s failed", stream)
            codes[stream] = ExitCode.RESTART_ME

    threads = [threading.Thread(target=camera, args=(spec, stream, flag), name=f"camera-{stream}")
               for (stream, spec), flag in zip(named, flags)]
    try:
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            if stop or ExitCode.RESTART_ME in codes.values():
                break
            stop.wait(0.2)
    finally:
        for flag in flags:
            flag.set()
        for thread in threads:
            thread.join()
        context.term()
    if ExitCode.RESTART_ME in codes.values():
        return ExitCode.RESTART_ME
    return ExitCode.USER_ERROR if not stop and ExitCode.USER_ERROR in codes.values() else ExitCode.OK


def _send_kept(link: CreditLink | PushLink, frame: wire.Frame) -> wire.Frame | None:
    """Try again to send a frame that must not be dropped; None once it went out."""
    return None if link.send_frame(frame) else frame


def _send_before(link: CreditLink | PushLink, message, deadline: float) -> None:
    """Send `message` as soon as the link has room, or give up at `deadline` (monotonic)."""
    while not link.send_control(message) and time.monotonic() < deadline:
        time.sleep(0.005)


def _send_when_possible(link: CreditLink | PushLink, message, stop: StopFlag) -> None:
    """Wait until every frame sent is taken care of (until stopped), then send."""
    while not stop:
        if link.settled(100) and link.send_control(message):
            return


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--source", action="append", default=[],
                        help=f"rtsp://..., a video file, a folder, webcam:N or synthetic; repeat it with --stream for "
                             f"several cameras in this process (default: ${SOURCE_VARIABLE}, one source a line, which "
                             f"keeps a password out of the process list)")
    parser.add_argument("--stream", action="append", default=[],
                        help=f"stream name used in topics, one per source, in order (default: cam0; "
                             f"{wire.STREAM_NAME_RULE})")


def main(args: argparse.Namespace) -> int:
    # popped: nothing this starts inherits it
    specs = args.source or [line for line in os.environ.pop(SOURCE_VARIABLE, "").split("\n") if line]
    streams = args.stream or ["cam0"]
    if not specs:
        raise ActionableError(f"no source: give --source SPEC (or set {SOURCE_VARIABLE})")
    if len(specs) != len(streams):
        raise ActionableError(f"{len(specs)} source(s) for {len(streams)} stream name(s): give one --stream NAME per "
                              f"source, in the same order")
    for stream in streams:
        wire.check_stream_name(stream)
    if len(set(streams)) < len(streams):
        raise ActionableError(f"a stream name is given twice in {streams}: each source needs a name of its own")
    setup_logging("capture:" + "+".join(streams))
    config = from_args(args)
    if len(streams) == 1:
        code = run_capture(specs[0], streams[0], config)
    else:
        code = run_cameras(list(zip(streams, specs)), config)
    if any(isinstance(t, Connection) and t.is_alive() for t in threading.enumerate()):
        # A connection still blocked inside FFmpeg would be torn down by the interpreter's exit
        # (glibc then aborts: "exception not rethrown"); sockets are closed, so leave at once.
        logging.shutdown()
        os._exit(code)
    return code
