"""The LSTM worker under a cell's assignment: labels carry the epoch, other streams are fenced off,
and a stream taken away and given back starts a fresh window equal to the offline model."""

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
from tests.conftest import endpoint_overrides, loopback_endpoints, recv_published, wait_until
from workers.loading import load_sequence_model
from workers.lstm_worker import LstmWorker


def test_an_assigned_worker_stamps_its_epoch_fences_other_streams_and_restarts_a_returning_window(zmq_context):
    endpoints = loopback_endpoints()
    config = load_config(None, endpoint_overrides(endpoints) + ["lstm.bundle=none.pt", "lstm.top_k=8",
                                                                "lstm.random_window=8", "lstm.stats_interval_s=0.2"])
    reference = load_sequence_model(config)  # the same seeded random model the worker builds
    worker, stop = LstmWorker(config), StopFlag()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    rng = np.random.default_rng(3)
    features = {name: rng.standard_normal((20, 512)).astype(np.float32) for name in ("a", "b")}
    got: dict[tuple[str, int], list[wire.Label]] = defaultdict(list)
    sub = zmq_context.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.connect(endpoints["labels"])
    sub.setsockopt(zmq.SUBSCRIBE, b"label/")
    push = zmq_context.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.connect(endpoints["features"])

    def send(stream: str, seqs: range, session: int) -> None:
        for seq in seqs:
            wire.send(push, wire.Feature(stream=stream, seq=seq, t_capture=time.time(), vector=features[stream][seq],
                                         session=session))

    def receive(count: int) -> None:
        for _ in range(count):
            label = wire.unpack_published(recv_published(sub, 10))
            got[(label.stream, label.epoch)].append(label)

    try:
        time.sleep(0.5)  # slow joiner
        send("a", range(3), session=1)  # before any assignment: one host, epoch 0
        receive(3)
        wire.send(push, wire.Assignment(cell="cell-0", epoch=5, streams=["a"]))
        send("a", range(3, 12), session=1)
        send("b", range(12), session=1)  # not this cell's: fenced off
        receive(9)
        wire.send(push, wire.Assignment(cell="cell-0", epoch=4, streams=["b"]))  # an older epoch changes nothing
        wire.send(push, wire.Assignment(cell="cell-0", epoch=6, streams=["b"]))  # "a" moves away
        send("a", range(12, 14), session=1)
        send("b", range(12), session=2)
        receive(12)
        wire.send(push, wire.Assignment(cell="cell-0", epoch=7, streams=["a", "b"]))  # "a" comes back
        send("a", range(10), session=2)
        receive(10)
        wait_until(lambda: worker.stats()["epoch"] == 7, 5, what="epoch 7 in the stats")
    finally:
        stop.set()
        thread.join(5)
    assert sorted(got) == [("a", 0), ("a", 5), ("a", 7), ("b", 6)]
    assert [label.seq for label in got[("a", 5)]] == list(range(3, 12))
    assert not got[("a", 5)][-1].warming  # the window went on across the first assignment
    stats = worker.stats()
    assert stats["dropped_unassigned"] == 12 + 2 and stats["dropped_old_epoch"] == 1 and stats["moved_away"] == 1
    classes = reference.classes
    for key, first in ((("b", 6), 0), (("a", 7), 0)):
        labels = got[key]
        assert [label.seq for label in labels] == list(range(first, first + len(labels)))
        # a fresh window: warming for 7 frames, then equal to the offline model on the same frames
        assert [label.warming for label in labels] == [seq < 7 for seq in range(len(labels))]
        streamed = np.array([[dict(label.top_k)[c] for c in classes] for label in labels])
        expected = offline_window_probabilities(reference.model, features[key[0]][:len(labels)], reference.window)
        assert np.abs(streamed - expected).max() <= 1e-4
