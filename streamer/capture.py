"""The capture process: one source -> preprocessed frames pushed over ZeroMQ.

Two threads with one job each:
- the reader pulls frames from the source at the configured rate, reconnecting a failed live
  source with capped exponential backoff, and leaves each frame in a one-frame slot;
- the sender waits until the socket can take a frame, takes the newest one, applies the
  geometric half of the preset and pushes it.
A slow consumer therefore makes frames drop (each counted), never makes latency grow.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from dataclasses import dataclass

import zmq

from configs.settings import Config, add_config_arguments, from_args
from models.presets import Preset, geometric
from streamer import wire
from streamer.logs import setup_logging
from streamer.sockets import StopFlag, make_socket
from streamer.sources import SourceError, SourceFrame, monotonic_pacer, open_source

log = logging.getLogger("capture")


@dataclass
class _Captured:
    frame: SourceFrame
    t_capture: float  # wall clock when the source handed us the frame
    session: int  # which connection of the source it came from


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
            self._ready.notify()

    def take(self, timeout: float) -> _Captured | None:
        with self._ready:
            if self._item is None:
                self._ready.wait(timeout)
            item, self._item = self._item, None
            return item


class Reader(threading.Thread):
    """Reads the source at the configured rate into the slot; owns reconnecting."""

    def __init__(self, spec: str, config: Config, slot: LatestSlot, stop: StopFlag):
        super().__init__(name="reader", daemon=True)
        self.spec, self.config, self.slot, self.stop = spec, config, slot, stop
        self.frames_read = 0
        self.reconnects = 0
        self.source_errors = 0
        self.session = 0
        self.description = spec
        self.source_fps = 0.0
        self.ended = threading.Event()  # the source ended for good (file done) or failed fatally
        self.fatal_error: str | None = None
        self.connected = threading.Event()

    def run(self) -> None:
        capture = self.config.capture
        delay = capture.retry_initial_s
        while not self.stop:
            try:
                source = open_source(self.spec, loop=capture.loop, seed=capture.synthetic_seed,
                                     segment_frames=capture.synthetic_segment_frames,
                                     timeout_s=capture.stall_timeout_s)
            except SourceError as error:
                if not error.retry:
                    return self._fail(str(error))
                self._retry_later(error, delay)
                delay = min(delay * 2, capture.retry_max_s)
                continue
            self.description, self.source_fps = source.description, source.fps
            self.session = time.time_ns() // 1_000_000  # a fresh window downstream after each (re)connect
            self.connected.set()
            log.info("source %s open (%s fps native)", source.description, source.fps or "unknown")
            try:
                finished = self._read_until_end(source)
                delay = capture.retry_initial_s
            except SourceError as error:
                if not error.retry:
                    return self._fail(str(error))
                self._retry_later(error, delay)
                delay = min(delay * 2, capture.retry_max_s)
                continue
            finally:
                source.close()
                self.connected.clear()
            if finished:
                self.ended.set()
                return

    def _read_until_end(self, source) -> bool:
        """True when the source ended for good; raises SourceError when it broke."""
        capture = self.config.capture
        pacer = monotonic_pacer(capture.fps)
        # Paced sources (files, folders, synthetic) advance source_fps/fps source frames per sample;
        # live sources deliver at their own rate and are sampled by time.
        stride = source.fps / capture.fps if (not source.live and source.fps and capture.fps) else 1.0
        position, next_due = 0.0, 0.0
        while not self.stop:
            if capture.max_frames and self.frames_read >= capture.max_frames:
                return True
            if not source.live:
                time.sleep(next(pacer))
            frame = source.read()
            if frame is None:
                return True
            if source.live:
                now = time.monotonic()
                if capture.fps and now < next_due:
                    continue  # faster camera than the configured rate: skip this frame
                next_due = max(next_due + 1.0 / capture.fps, now) if capture.fps else now
            else:
                position += stride
                while position >= 2.0:  # skip source frames to keep the configured rate
                    if source.read() is None:
                        return True
                    position -= 1.0
                position -= 1.0
            self.frames_read += 1
            self.slot.put(_Captured(frame, time.time(), self.session))
        return False

    def _retry_later(self, error: SourceError, delay: float) -> None:
        self.source_errors += 1
        self.reconnects += 1
        log.warning("%s; retrying in %.1f s", error, delay)
        self.stop.wait(delay)

    def _fail(self, message: str) -> None:
        self.fatal_error = message
        log.error("%s", message)
        self.ended.set()


def run_capture(spec: str, stream: str, config: Config, stop: StopFlag | None = None) -> int:
    """Capture `spec` as stream `stream` until stopped or the source ends. Returns an exit code."""
    if not wire.STREAM_NAME.match(stream):
        raise ValueError(f"stream name {stream!r} must match {wire.STREAM_NAME.pattern}")
    stop = stop or StopFlag()
    preset = Preset(resize=config.capture.resize, crop=config.capture.crop)
    context = zmq.Context()
    socket = make_socket(context, zmq.PUSH, config.endpoints.frames, bind=False,
                         security=config.security, hwm=config.capture.send_hwm)
    slot = LatestSlot()
    reader = Reader(spec, config, slot, stop)
    sent = send_failures = 0
    announced_session = -1
    truth, truth_since = None, -1
    seq = 0
    last_stats = time.monotonic()
    process = f"capture:{stream}"
    try:
        reader.start()
        while not stop:
            if reader.ended.is_set() and not reader.is_alive():
                break
            if announced_session != reader.session and reader.connected.is_set():
                if _send_quietly(socket, wire.StreamStart(stream=stream, source=reader.description,
                                                          fps=config.capture.fps, width=preset.crop,
                                                          height=preset.crop, t=time.time())):
                    announced_session = reader.session
            if time.monotonic() - last_stats >= config.capture.stats_interval_s:
                last_stats = time.monotonic()
                _send_quietly(socket, wire.Stats(process=process, t=time.time(), counters={
                    "frames_read": reader.frames_read, "frames_sent": sent, "dropped_stale": slot.dropped,
                    "send_failures": send_failures, "reconnects": reader.reconnects,
                    "source_errors": reader.source_errors}))
            if not socket.poll(50, zmq.POLLOUT):
                continue  # nobody can take a frame now: the reader keeps replacing the newest one
            item = slot.take(timeout=0.05)
            if item is None:
                continue
            started = time.perf_counter()
            image = geometric(item.frame.image_bgr, preset)
            if item.frame.truth != truth:
                truth, truth_since = item.frame.truth, seq
            frame = wire.Frame(stream=stream, seq=seq, t_capture=item.t_capture, image=image, truth=truth,
                               truth_since=truth_since, session=item.session,
                               stages={"preprocess": (time.perf_counter() - started) * 1000,
                                       "capture_wait": (time.time() - item.t_capture) * 1000})
            try:
                wire.send(socket, frame, flags=zmq.NOBLOCK)
                sent += 1
                seq += 1
            except zmq.Again:
                send_failures += 1
                slot.dropped += 1
        reason = "stopped" if stop else ("failed" if reader.fatal_error else "source ended")
        _send_quietly(socket, wire.StreamEnd(stream=stream, reason=reason, t=time.time()))
        log.info("capture %s done (%s): %d read, %d sent, %d dropped", stream, reason, reader.frames_read, sent,
                 slot.dropped)
        return 2 if reader.fatal_error else 0
    finally:
        stop.set()
        reader.join(timeout=2.0)
        socket.close(linger=200)  # give the last messages a moment to leave
        context.term()


def _send_quietly(socket: zmq.Socket, message) -> bool:
    """Control messages are best effort: False when nobody can take one right now."""
    try:
        wire.send(socket, message, flags=zmq.NOBLOCK)
        return True
    except zmq.Again:
        return False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--source", required=True, help="rtsp://..., a video file, a folder, webcam:N or synthetic")
    parser.add_argument("--stream", default="cam0", help="stream name used in topics (letters, digits, _.:-)")


def main(args: argparse.Namespace) -> int:
    setup_logging(f"capture:{args.stream}")
    return run_capture(args.source, args.stream, from_args(args))
