"""A real FeatureWorker on loopback sockets with a backend the test gives it: frames in, features out."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import zmq

from configs.settings import load_config
from streamer.transport import wire
from streamer.transport.sockets import StopFlag
from tests.conftest import endpoint_overrides, loopback_endpoints
from workers.feature_worker import FeatureWorker

SIDE = 64  # the frames' side; each frame is filled with its number, so a feature can say whose it is


@contextmanager
def feature_worker_with(zmq_context: zmq.Context, backend) -> Iterator[tuple[FeatureWorker, "Feed"]]:
    """The worker running in a thread with `backend` (batches of 4), and a feed of frames into it."""
    endpoints = loopback_endpoints()
    config = load_config(None, endpoint_overrides(endpoints) + [
        "features.backend=torch", "features.bundle=absent.pt", "features.imagenet_fallback=false",
        "capture.resize=72", f"capture.crop={SIDE}", "features.max_batch=4"])
    worker = FeatureWorker(config, "test")
    worker.backend = backend
    features_in = zmq_context.socket(zmq.PULL)
    features_in.bind(endpoints["features"])
    features_in.setsockopt(zmq.RCVTIMEO, 10_000)
    stop = StopFlag()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    frames_out = zmq_context.socket(zmq.DEALER)  # frames without credit, as a capture that never said hello
    frames_out.connect(endpoints["frames"])
    try:
        yield worker, Feed(frames_out, features_in)
    finally:
        stop.set()
        thread.join(10)
        frames_out.close(linger=0)
        features_in.close(linger=0)


class Feed:
    def __init__(self, frames_out: zmq.Socket, features_in: zmq.Socket):
        self.frames_out, self.features_in = frames_out, features_in

    def send(self, stream: str, seq: int, fill: int) -> None:
        image = np.full((SIDE, SIDE, 3), fill, dtype=np.uint8)
        wire.send(self.frames_out, wire.Frame(stream=stream, seq=seq, t_capture=time.time(), image=image))

    def features(self, count: int) -> list[wire.Feature]:
        """The next `count` features, taken from the worker's batch messages (fails after 10 s of silence)."""
        got = []
        while len(got) < count:
            message = wire.unpack(self.features_in.recv_multipart())
            if isinstance(message, wire.FeatureBatch):  # one message per batch
                got.extend(message.features)
        return got
