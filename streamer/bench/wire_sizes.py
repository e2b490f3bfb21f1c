"""Bytes on the network per stream, from the wire format itself (streamer/transport/wire.py).

    python -m streamer.bench.wire_sizes                              # print the tables
    python -m streamer.bench.wire_sizes --write docs/cluster.md      # rewrite them in place, between their markers
    python -m streamer.bench.wire_sizes --check docs/cluster.md      # exit 1 when the doc's tables are stale

Each message is packed by `wire.pack_published` / `wire.pack` as the processes send it, with values an
hour into a run (sequence numbers of five digits, the lecture's class names, the default settings);
then each is sent over real TCP on loopback, plain and with CURVE, through a relay that counts the
bytes the receiving side gets (ZMTP's framing, CURVE's nonce and MAC; not TCP/IP headers). Between
cells only what the LSTM worker publishes travels; frames and features stay inside a node.
"""

from __future__ import annotations

import socket
import sys
import threading
from dataclasses import dataclass

import numpy as np
import zmq

from configs.reference import fill_blocks, generated_blocks_main
from configs.settings import Config
from models.presets import Preset, geometric
from models.synthetic import SyntheticCamera
from models.ucf101 import LECTURE_CLASSES
from streamer.capture.previews import thumbnail
from streamer.transport import wire

MARKERS = ("<!-- wire-sizes:begin (generated from streamer/transport/wire.py by `python -m streamer.bench.wire_sizes "
           "--write docs/cluster.md`) -->", "<!-- wire-sizes:end -->")
STREAM = "cam0"  # `up`'s name for the first camera; each further character adds 2 bytes to a label
SEQ = 54_000  # an hour at 15 frames/s
T = 1_796_000_000.0  # a wall-clock time, seconds (every float is 9 bytes in msgpack)
MODEL_ID = "cnnlstm-20261201-132e26e49d"  # the form of a trained bundle's id
STAGE_NAMES = ("preprocess", "capture_wait", "transport_frames", "queue_features", "cnn", "transport_features",
               "queue_lstm", "lstm")
FPS_COLUMNS = (15.0, 30.0)
REPEATS = 20  # messages sent per measurement, after the connection's handshake is over


@dataclass
class Sized:
    name: str
    where: str  # which sockets it travels on
    parts: list  # the multipart message as sent
    tcp: float = 0.0  # bytes one message took on a TCP connection (measured)
    tcp_curve: float = 0.0  # same, with CURVE on (measured)

    @property
    def payload(self) -> int:
        return sum(len(part) for part in self.parts)

    @property
    def on_wire(self) -> int:
        """Payload plus ZMTP framing: per part a flag byte and a 1-byte length, or an 8-byte one above 255 bytes."""
        return sum(len(part) + (2 if len(part) <= 255 else 9) for part in self.parts)


def published(name: str, where: str, message: wire.Message) -> Sized:
    """As the LSTM worker publishes it: [topic, header(, buffer)]."""
    return Sized(name, where, [bytes(part) for part in wire.pack_published(message)])


def pushed(name: str, where: str, message: wire.Message) -> Sized:
    """As a capture or feature worker pushes it: [header, buffer]."""
    return Sized(name, where, [bytes(part) for part in wire.pack(message)])


def label(config: Config) -> wire.Label:
    top = [(name, p) for name, p in zip(LECTURE_CLASSES, (0.8123, 0.1011, 0.0502))][:config.lstm.top_k]
    return wire.Label(stream=STREAM, seq=SEQ, t_capture=T, t_publish=T + 0.02, label=top[0][0], score=top[0][1],
                      top_k=top, warming=False, frames_in_window=32, model_id=MODEL_ID,
                      stages={name: 1.234 for name in STAGE_NAMES})


def capture_stats() -> wire.Stats:
    """A capture's counters (streamer/capture/process.py), sent every `capture.stats_interval_s` per stream."""
    counters = {"frames_read": 54_010, "reconnects": 0, "connect_failures": 0, "outages": 0, "stalls": 0,
                "source_errors": 0, "connected": 1.0, "stuck_readers": 0, "frames_sent": 54_000,
                "dropped_stale": 10, "send_failures": 12, "previews_sent": 7_200, "previews_dropped": 0}
    return wire.Stats(process=f"capture:{STREAM}", t=T, counters=counters)


def worker_stats() -> list[wire.Stats]:
    """A cell's feature worker and LSTM worker counters, every `*.stats_interval_s`, whatever the streams."""
    features = {"frames": 432_000, "batches": 40_000, "dropped": 0, "mean_batch": 10.8, "cnn_ms_per_batch": 21.5,
                f"{wire.BACKEND_KEY}openvino-cpu-int8": 1.0}
    lstm = {"steps": 40_000, "labels": 432_000, "previews": 57_600, "session_changes": 8, "seq_jumps": 0,
            "window_restarts": 8, "activity_starts": 2_700, "activity_ends": 2_700, "dropped": 0, "streams": 8,
            "held_for_order": 0, "ready_queue": 0, "gaps": 0, "step_ms": 1.2}
    return [wire.Stats(process="features:0", t=T, counters=features), wire.Stats(process="lstm", t=T, counters=lstm)]


def preview_jpeg(config: Config, preset: Preset) -> bytes:
    """The thumbnail a capture sends for a synthetic camera's frame (a real scene's size differs)."""
    frame, _, _ = SyntheticCamera(seed=0, width=320, height=240).next_frame()
    jpeg = thumbnail(geometric(frame, preset), config.capture.preview_size, config.capture.preview_quality)
    assert jpeg is not None, "OpenCV could not encode a JPEG"
    return jpeg


def messages(config: Config) -> list[Sized]:
    every = f"every {config.capture.stats_interval_s:g} s"
    start = wire.StreamStart(stream=STREAM, source="rtsp://10.0.0.7:554/stream1", fps=config.capture.fps, width=224,
                             height=224, t=T)
    activity = wire.Activity(stream=STREAM, event="start", label=LECTURE_CLASSES[0], confidence=0.9, start_seq=SEQ,
                             start_t=T, end_seq=SEQ + 6, end_t=T + 0.4)
    preview = wire.Preview(stream=STREAM, seq=SEQ, t_capture=T, jpeg=preview_jpeg(config, Preset()))
    frame_stages = {"preprocess": 1.0, "capture_wait": 1.0}
    vector = np.random.default_rng(0).standard_normal(512).astype(np.float32)
    return [
        published("label (top-3, 8 stages)", "cell -> proxy -> each subscriber", label(config)),
        published("stats of a capture", f"same, {every} per stream", capture_stats()),
        *[published(f"stats of `{s.process}`", f"same, {every} per cell", s) for s in worker_stats()],
        published("stream_start", "same, once per capture session", start),
        published("activity (start or end)", "same, twice per activity segment", activity),
        published("preview (160-px JPEG, synthetic camera)", "same, `capture.preview_fps` a second, if subscribed",
                  preview),
        pushed("frame, 224 px", "capture -> feature worker, inside the node",
               wire.Frame(stream=STREAM, seq=SEQ, t_capture=T, image=np.zeros((224, 224, 3), np.uint8),
                          stages=frame_stages)),
        pushed("frame, 112 px", "same", wire.Frame(stream=STREAM, seq=SEQ, t_capture=T,
                                                  image=np.zeros((112, 112, 3), np.uint8), stages=frame_stages)),
        pushed("feature, 512-d float32", "feature worker -> LSTM worker, inside the node",
               wire.Feature(stream=STREAM, seq=SEQ, t_capture=T, vector=vector,
                            stages={name: 1.234 for name in STAGE_NAMES[:5]})),
    ]


class CountingRelay:
    """A TCP relay on loopback that counts the bytes flowing from the server side to the client side."""

    def __init__(self, server_port: int):
        self.server_port, self.counted = server_port, 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            client, _ = self.listener.accept()
            server = socket.create_connection(("127.0.0.1", self.server_port))
        except OSError:
            return  # closed before anyone connected
        self.connections += [client, server]
        threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
        self._pump(server, client, True)

    def _pump(self, source: socket.socket, target: socket.socket, count: bool) -> None:
        try:
            while data := source.recv(1 << 16):
                if count:
                    self.counted += len(data)
                target.sendall(data)
        except OSError:
            pass  # closed by close()

    def close(self) -> None:
        for connection in [self.listener] + self.connections:
            connection.close()


def measured(parts: list, curve: bool) -> float:
    """Bytes one message takes on a PUB -> SUB TCP connection, its handshake excluded."""
    context = zmq.Context()
    # bare sockets: a measurement of the wire, with throwaway CURVE keys instead of the deployment's
    pub, sub = context.socket(zmq.PUB), context.socket(zmq.SUB)
    if curve:
        server_public, server_secret = zmq.curve_keypair()
        sub.curve_publickey, sub.curve_secretkey = zmq.curve_keypair()
        pub.curve_server, pub.curve_secretkey, sub.curve_serverkey = True, server_secret, server_public
    relay = CountingRelay(pub.bind_to_random_port("tcp://127.0.0.1"))
    try:
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(f"tcp://127.0.0.1:{relay.port}")
        while not sub.poll(50):  # until the subscription has reached the publisher
            pub.send_multipart([b"probe"])
        pub.send_multipart([b"fence"])  # TCP keeps order: once it is here, every probe was counted
        while _received(sub) != [b"fence"]:
            pass
        before = relay.counted
        for _ in range(REPEATS):
            pub.send_multipart(parts)
        for _ in range(REPEATS):
            _received(sub)  # the relay counts bytes before it forwards them
        return (relay.counted - before) / REPEATS
    finally:
        pub.close(linger=0)
        sub.close(linger=0)
        context.term()
        relay.close()


def _received(sub: zmq.Socket) -> list[bytes]:
    if not sub.poll(5000):
        raise RuntimeError("a message sent over loopback did not arrive within 5 s")
    return sub.recv_multipart()


def measure(sized: list[Sized]) -> list[Sized]:
    for item in sized:
        item.tcp, item.tcp_curve = measured(item.parts, curve=False), measured(item.parts, curve=True)
    return sized


def _by_name(sized: list[Sized], prefix: str) -> Sized:
    return next(s for s in sized if s.name.startswith(prefix))


def message_table(sized: list[Sized]) -> str:
    rows = ["| message | travels | parts | bytes of its parts | bytes on TCP | bytes on TCP with CURVE |",
            "| --- | --- | --- | --- | --- | --- |"]
    rows += [f"| {s.name} | {s.where} | {len(s.parts)} | {s.payload:,} | {s.tcp:,.0f} | {s.tcp_curve:,.0f} |"
             for s in sized]
    return "\n".join(rows)


def rate_table(sized: list[Sized], config: Config) -> str:
    """Bytes a second per stream leaving its cell (and again from the proxy to each subscriber)."""
    label_bytes = _by_name(sized, "label").tcp
    label_curve = _by_name(sized, "label").tcp_curve
    stats_per_s = _by_name(sized, "stats of a capture").tcp / config.capture.stats_interval_s
    stats_curve = _by_name(sized, "stats of a capture").tcp_curve / config.capture.stats_interval_s
    preview_per_s = _by_name(sized, "preview").tcp * config.capture.preview_fps
    frame_bytes = _by_name(sized, "frame, 224").tcp
    heads = " | ".join(f"{fps:g} frames/s" for fps in FPS_COLUMNS)
    rows = [f"| per stream | {heads} |", "| --- |" + " --- |" * len(FPS_COLUMNS)]

    def row(what: str, per_fps) -> str:
        return f"| {what} | " + " | ".join(_rate(per_fps(fps)) for fps in FPS_COLUMNS) + " |"

    rows += [
        row("labels (one per frame)", lambda fps: label_bytes * fps),
        row(f"capture stats (one per {config.capture.stats_interval_s:g} s)", lambda fps: stats_per_s),
        row("**labels + stats: what leaves the cell**", lambda fps: label_bytes * fps + stats_per_s),
        row("the same with CURVE", lambda fps: label_curve * fps + stats_curve),
        row(f"previews, only while someone subscribes to `preview/` ({config.capture.preview_fps:g} a second)",
            lambda fps: preview_per_s),
        row("for contrast: its 224-px frames, were they to cross", lambda fps: frame_bytes * fps),
    ]
    return "\n".join(rows)


def _rate(bytes_per_s: float) -> str:
    return f"{bytes_per_s / 1000:,.1f} kB/s ({bytes_per_s * 8 / 1000:,.0f} kbit/s)"


def tables(config: Config | None = None) -> str:
    config = Config() if config is None else config
    sized = measure(messages(config))
    return message_table(sized) + "\n\n" + rate_table(sized, config)


def _blocks() -> list[tuple[tuple[str, str], str]]:
    return [(MARKERS, tables())]


def rewrite(text: str) -> str:
    return fill_blocks(text, _blocks())


def main(argv: list[str] | None = None) -> int:
    return generated_blocks_main(argv, "python -m streamer.bench.wire_sizes", __doc__.splitlines()[0], _blocks)


if __name__ == "__main__":
    sys.exit(main())
