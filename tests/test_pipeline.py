"""The live pipeline with real processes on loopback: `run.py up`, real sockets, real labels."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import msgpack
import numpy as np
import zmq

from configs.settings import load_config
from streamer.transport import wire
from streamer.transport.sockets import StopFlag
from tests.conftest import endpoint_overrides, loopback_endpoints, recv_published
from workers.loading import load_sequence_model
from workers.lstm_worker import LstmWorker
from models.window import offline_window_probabilities

ROOT = Path(__file__).resolve().parent.parent
# Small frames keep the CNN cheap on a 2-core test machine; the pipeline is the same.
SMALL = ["capture.crop=64", "capture.resize=72", "capture.fps=30", "lstm.stats_interval_s=0.5",
         "features.stats_interval_s=0.5", "capture.stats_interval_s=0.5", "features.bundle=none.pt",
         "lstm.bundle=none.pt"]


def start_up(tmp_path: Path, endpoints: dict[str, str], sources: list[str], extra: list[str] = ()) -> subprocess.Popen:
    overrides = endpoint_overrides(endpoints) + SMALL + [f"supervisor.log_dir={tmp_path / 'logs'}"] + list(extra)
    argv = [sys.executable, str(ROOT / "run.py"), "up", "--seconds", "120"]
    for source in sources:
        argv += ["--source", source]
    for item in overrides:
        argv += ["--set", item]
    return subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def stop_up(process: subprocess.Popen) -> str:
    process.send_signal(signal.SIGTERM)
    try:
        output, _ = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return output.decode(errors="replace")


def subscriber(context: zmq.Context, endpoint: str, *topics: bytes) -> zmq.Socket:
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.connect(endpoint)
    for topic in topics:
        sub.setsockopt(zmq.SUBSCRIBE, topic)
    return sub


def test_two_synthetic_streams_through_up(tmp_path, zmq_context):
    endpoints = loopback_endpoints()
    process = start_up(tmp_path, endpoints, ["synthetic", "synthetic"])
    try:
        sub = subscriber(zmq_context, endpoints["labels"], b"label/")
        labels = defaultdict(list)
        deadline = time.monotonic() + 90
        while min((len(v) for v in labels.values()), default=0) < 45 or len(labels) < 2:
            assert time.monotonic() < deadline, f"labels so far: { {k: len(v) for k, v in labels.items()} }"
            assert process.poll() is None, stop_up(process)
            message = wire.unpack_published(recv_published(sub, 60))
            labels[message.stream].append((message, time.time()))
    finally:
        log = stop_up(process)
    assert set(labels) == {"cam0", "cam1"}, log
    # up's console: ready with the command that reaches this endpoint, the children's warnings
    # prefixed with their names, and a summary per stream once stopped
    assert f"ready: labels on {endpoints['labels']}" in log, log
    assert f"python run.py subscribe --set endpoints.labels={endpoints['labels']}" in log, log
    assert "features:0: no bundle at none.pt" in log and "lstm: no bundle at none.pt: RANDOM LSTM weights" in log, log
    summary = log[log.index("up stopped: 2 stream(s)"):]
    assert "cam0" in summary and "cam1" in summary and "read" in summary and "p99 ms" in summary, log
    port = endpoints["labels"].rsplit(":", 1)[1]
    assert (tmp_path / "logs" / f"127.0.0.1-{port}" / "lstm.log").is_file()  # this pipeline's own folder
    for stream, received in labels.items():
        seqs = [label.seq for label, _ in received]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), f"{stream}: seq not increasing"
        # The first label a late subscriber sees may already be warm; every warm-up label it does
        # see has fewer than 32 frames, and from the 32nd frame on none is warming.
        for label, _ in received:
            assert label.warming == (label.frames_in_window < 32)
            if label.seq >= 31:
                assert not label.warming and label.frames_in_window == 32
        assert any(not label.warming for label, _ in received)
        for label, got in received:
            # Every stage is measured (a real batch takes time), and together they fit in the frame's
            # end-to-end time: capture_wait includes preprocess, the rest follow one another
            # (2 ms of slack: clocks read in different processes).
            assert label.stages["cnn"] > 0.0 and label.stages["preprocess"] > 0.0, label.stages
            spent = sum(label.stages[stage] for stage in ("capture_wait", "transport_frames", "queue_features", "cnn",
                                                          "transport_features", "queue_lstm", "lstm"))
            assert spent <= (got - label.t_capture) * 1000 + 2.0, label.stages
            assert label.t_capture <= label.t_publish <= got + 0.01
            assert label.model_id == "random-seed0" and label.truth is not None
            assert len(label.top_k) == 3 and label.label == label.top_k[0][0]


def test_up_s_summary_has_every_captures_last_counters(tmp_path, zmq_context):
    # No periodic capture report in this run: the summary's frames can only come from the report a
    # capture sends as it stops, which has to travel through the feature and LSTM workers to `up`
    # (stopped all at once, they lost it now and then: the summary then showed fewer frames than labels).
    endpoints = loopback_endpoints()
    process = start_up(tmp_path, endpoints, ["synthetic", "synthetic"], ["capture.stats_interval_s=600"])
    try:
        sub = subscriber(zmq_context, endpoints["labels"], b"label/")
        seen: dict[str, int] = defaultdict(int)
        deadline = time.monotonic() + 90
        while len(seen) < 2 or min(seen.values()) < 20:
            assert time.monotonic() < deadline, f"labels so far: {dict(seen)}"
            assert process.poll() is None, stop_up(process)
            seen[wire.unpack_published(recv_published(sub, 60)).stream] += 1
    finally:
        log = stop_up(process)
    summary = log[log.index("up stopped: 2 stream(s)"):]
    rows = {name: (int(read), int(sent), int(labels))
            for name, read, sent, labels in re.findall(r"(cam\d)\s*\S\s*(\d+) read, (\d+) sent\s*\S\s*(\d+)", summary)}
    assert set(rows) == {"cam0", "cam1"}, summary
    for name, (read, sent, labels) in rows.items():
        # every label is of a frame sent, every frame sent was read
        assert read >= sent >= labels >= 20, (name, summary)


def test_lstm_worker_labels_equal_offline_windows_with_out_of_order_delivery(zmq_context):
    """Two 'feature workers' interleave three streams out of order; every label equals offline."""
    endpoints = loopback_endpoints()
    config = load_config(None, endpoint_overrides(endpoints) + ["lstm.bundle=none.pt", "lstm.top_k=8",
                                                                "lstm.reorder_wait_ms=2000"])
    reference = load_sequence_model(config)  # the same seeded random model the worker builds
    worker, stop = LstmWorker(config), StopFlag()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    frames = 70
    rng = np.random.default_rng(5)
    streams = {f"s{i}": rng.standard_normal((frames, 512)).astype(np.float32) for i in range(3)}
    try:
        sub = subscriber(zmq_context, endpoints["labels"], b"label/")
        pushes = [zmq_context.socket(zmq.PUSH) for _ in range(2)]
        for push in pushes:
            push.connect(endpoints["features"])
        time.sleep(0.5)  # slow joiner
        sends = []
        for stream, features in streams.items():
            for seq in range(frames):
                sends.append((seq + rng.uniform(0, 4), stream, seq))  # jitter by up to 4 places
        for index, (_, stream, seq) in enumerate(sorted(sends)):
            feature = wire.Feature(stream=stream, seq=seq, t_capture=time.time(), vector=streams[stream][seq],
                                   session=1)
            wire.send(pushes[index % 2], feature)
        got = defaultdict(dict)
        while sum(len(v) for v in got.values()) < 3 * frames:
            label = wire.unpack_published(recv_published(sub, 10))
            got[label.stream][label.seq] = label
    finally:
        stop.set()
        thread.join(5)
    classes = reference.classes
    for stream, features in streams.items():
        assert sorted(got[stream]) == list(range(frames))
        streamed = np.array([[dict(got[stream][seq].top_k)[c] for c in classes] for seq in range(frames)])
        expected = offline_window_probabilities(reference.model, features, reference.window)
        assert np.abs(streamed - expected).max() <= 1e-4
        assert [got[stream][s].warming for s in range(frames)] == [s < reference.window - 1 for s in range(frames)]
    assert worker.stats()["gaps"] == 0 and worker.stats()["dropped"] == 0


def _garbage(socket_name: str) -> list[list[bytes]]:
    """Messages each receiving socket must drop: every one is malformed or does not belong there."""
    frame = {"v": wire.SCHEMA_VERSION, "kind": "frame", "stream": "cam9", "seq": 0, "t_capture": 1.0, "t_sent": 1.0,
             "truth": None, "truth_since": -1, "stages": {}, "session": 0, "shape": [64, 64, 3]}
    feature = {k: v for k, v in frame.items() if k != "shape"} | {"kind": "feature", "dim": 512}
    common = [
        [b"random bytes \x00\xff\xfe"],
        [msgpack.packb(dict(frame, v=99)), bytes(64 * 64 * 3)],  # wrong schema version
        [msgpack.packb(frame), bytes(100)],  # truncated buffer
        [msgpack.packb(dict(frame, shape=[9000, 9000, 3])), bytes(10)],  # huge declared shape
        [msgpack.packb({"v": wire.SCHEMA_VERSION, "kind": "stats"})],  # missing fields
        [msgpack.packb(dict(feature, stream="bad name!")), bytes(512 * 4)],  # invalid stream name
        [msgpack.packb(frame), bytes(64 * 64 * 3), b"extra part"],
    ]
    if socket_name == "frames":
        return common + [
            [msgpack.packb(dict(frame, shape=[32, 32, 3])), bytes(32 * 32 * 3)],  # wrong size for the model
            [msgpack.packb(feature), bytes(512 * 4)],  # a feature on the frames socket
        ]
    return common + [
        [msgpack.packb(dict(feature, dim=7)), bytes(28)],  # wrong feature size for the LSTM
        [msgpack.packb(dict(frame, shape=[64, 64, 3])), bytes(64 * 64 * 3)],  # a frame on the features socket
    ]


def test_garbage_on_every_socket_is_dropped_counted_and_the_good_stream_keeps_flowing(tmp_path, zmq_context):
    endpoints = loopback_endpoints()
    process = start_up(tmp_path, endpoints, ["synthetic"])
    stats: dict[str, dict] = {}
    labels: list[wire.Label] = []
    try:
        sub = subscriber(zmq_context, endpoints["labels"], b"label/", b"stats/")

        def receive_until(condition, timeout_s: float) -> None:
            deadline = time.monotonic() + timeout_s
            while not condition():
                assert time.monotonic() < deadline, f"timed out; last stats {stats}"
                message = wire.unpack_published(recv_published(sub, 60))
                if isinstance(message, wire.Stats):
                    stats[message.process] = message.counters
                else:
                    labels.append(message)

        receive_until(lambda: len(labels) >= 5, 90)
        sent = {}
        pushes = []
        for name in ("frames", "features"):
            push = zmq_context.socket(zmq.DEALER if name == "frames" else zmq.PUSH)  # frames: a worker's ROUTER
            push.connect(endpoints[name])
            pushes.append(push)
            sent[name] = 0
            for _ in range(5):
                for parts in _garbage(name):
                    push.send_multipart(parts)
                    sent[name] += 1
        before = len(labels)
        receive_until(lambda: stats.get("features:0", {}).get("dropped", 0) >= sent["frames"]
                      and stats.get("lstm", {}).get("dropped", 0) >= sent["features"]
                      and len(labels) >= before + 30, 60)
    finally:
        log = stop_up(process)
    assert process.returncode == 0, log
    features, lstm = stats["features:0"], stats["lstm"]
    assert features["dropped"] == sent["frames"] and lstm["dropped"] == sent["features"]
    assert features["dropped_version"] == 5 and features["dropped_frame_size"] == 5 and features["dropped_kind"] == 5
    assert lstm["dropped_feature_size"] == 5 and lstm["dropped_kind"] == 5 and lstm["dropped_size"] == 5
    after = [label.seq for label in labels[before:]]
    assert after == sorted(after) and {label.stream for label in labels} == {"cam0"}
