"""The LSTM worker takes one message per feature batch (`wire.FeatureBatch`), as the feature worker sends.

A real LSTM worker on real sockets gets batches that mix three streams, as a feature worker's
batches across streams do; every frame gets its label, equal to the offline window.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict

import numpy as np
import zmq

from configs.settings import load_config
from models.window import offline_window_probabilities
from streamer.transport import wire
from streamer.transport.sockets import StopFlag
from tests.conftest import endpoint_overrides, loopback_endpoints, recv_published
from workers.loading import load_sequence_model
from workers.lstm_worker import LstmWorker


def test_every_frame_of_a_feature_batch_gets_its_label(zmq_context):
    endpoints = loopback_endpoints()
    config = load_config(None, endpoint_overrides(endpoints) + ["lstm.bundle=none.pt", "lstm.top_k=8"])
    reference = load_sequence_model(config)
    worker, stop = LstmWorker(config), StopFlag()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    frames, rng = 50, np.random.default_rng(2)
    streams = {f"s{i}": rng.standard_normal((frames, 512)).astype(np.float32) for i in range(3)}
    order = [(stream, seq) for seq in range(frames) for stream in streams]  # a batch mixes the streams
    try:
        sub = zmq_context.socket(zmq.SUB)
        sub.connect(endpoints["labels"])
        sub.setsockopt(zmq.SUBSCRIBE, b"label/")
        push = zmq_context.socket(zmq.PUSH)
        push.connect(endpoints["features"])
        time.sleep(0.5)  # slow joiner
        for start in range(0, len(order), 16):
            wire.send(push, wire.FeatureBatch([
                wire.Feature(stream=stream, seq=seq, t_capture=time.time(), vector=streams[stream][seq], session=1)
                for stream, seq in order[start:start + 16]]))
        got = defaultdict(dict)
        while sum(len(v) for v in got.values()) < len(order):
            label = wire.unpack_published(recv_published(sub, 10))
            got[label.stream][label.seq] = label
    finally:
        stop.set()
        thread.join(5)
        push.close(linger=0)
        sub.close(linger=0)
    for stream, features in streams.items():
        assert sorted(got[stream]) == list(range(frames))
        streamed = np.array([[dict(got[stream][seq].top_k)[c] for c in reference.classes] for seq in range(frames)])
        expected = offline_window_probabilities(reference.model, features, reference.window)
        assert np.abs(streamed - expected).max() <= 1e-4
    assert worker.stats()["labels"] == len(order) and worker.stats()["dropped"] == 0
