"""The feature worker keeps several batches running and still sends features in frame order.

The backend here is a stand-in whose later batch finishes before the earlier one (as two
OpenVINO requests can); the worker, its sockets and the frames are the real ones.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from tests.support.feature_worker import feature_worker_with


class _Handle:
    def __init__(self, images: np.ndarray, wake):
        # The feature of a frame is its first pixel, so a test can tell which frame a feature belongs to.
        self.features = np.zeros((len(images), 512), dtype=np.float32)
        self.features[:, 0] = images[:, 0, 0, 0]
        self.wake, self.finished, self.collected = wake, threading.Event(), False

    def finish(self) -> None:
        self.finished.set()
        self.wake()

    def done(self) -> bool:
        return self.finished.is_set()

    def wait(self) -> None:
        self.finished.wait()

    def result(self) -> np.ndarray:
        self.collected = True
        return self.features


class LaterBatchFinishesFirst:
    """Two batches at once; every even-numbered batch takes 0.4 s, every odd one finishes at once."""

    depth = 2
    name = "later-finishes-first"

    def __init__(self):
        self.handles: list[_Handle] = []
        self.overtaken = 0  # odd batches collected while the batch before them still ran

    def has_room(self) -> bool:
        return sum(not handle.collected for handle in self.handles) < self.depth

    def submit(self, images: np.ndarray, wake) -> _Handle:
        handle = _Handle(images, wake)
        self.handles.append(handle)
        if len(self.handles) % 2 == 0:
            earlier = self.handles[-2]
            handle.finish()
            self.overtaken += not earlier.done()
        else:
            threading.Timer(0.4, handle.finish).start()
        return handle


def test_features_leave_in_frame_order_when_a_later_batch_finishes_first(zmq_context):
    backend = LaterBatchFinishesFirst()
    count = 40
    with feature_worker_with(zmq_context, backend) as (worker, feed):
        for seq in range(count):
            feed.send("cam0", seq, fill=seq)
            time.sleep(0.03)  # frames keep coming while the slow batches run
        got = feed.features(count)
    assert [feature.seq for feature in got] == list(range(count))
    assert [int(feature.vector[0]) for feature in got] == list(range(count))  # each frame's own feature
    assert backend.overtaken >= 3, "the later batch never finished first: the test did not test anything"
    assert worker.stats()["batches"] == len(backend.handles) and worker.stats()["frames"] == count
