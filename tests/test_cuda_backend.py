"""The CUDA backend's two batches in flight, checked on the CPU with stand-in device slots.

`SlotPipeline` (workers/cuda_backend.py) is the part of the CUDA backend that decides which
staging slot a batch uses, when a slot may be written again, and in which order batches are
reported done. Here it drives `FakeSlots`: host buffers and "device work" on threads whose
finishing order the test controls. The real feature worker then runs on it over real ZeroMQ.
The CUDA slots themselves run in `python -m streamer.bench.gpu_check` on a machine with a GPU.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from tests.conftest import wait_until
from tests.support.feature_worker import feature_worker_with
from workers.cuda_backend import SlotPipeline


class _Launch:
    """Device work for one batch: runs on its own thread once `go` is set (or at once when auto)."""

    def __init__(self, slots: "FakeSlots", slot: int, size: int):
        self.slots, self.slot, self.size = slots, slot, size
        self.go, self.finished = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with self.slots.lock:
            self.slots.running += 1
            self.slots.most_running = max(self.slots.most_running, self.slots.running)
        self.go.wait()
        # The "model": feature 0 of a frame is its first pixel, read from the slot's staging buffer now,
        # so a staging buffer overwritten while its batch runs would show up as a wrong feature.
        staged = self.slots.host_in[self.slot][:self.size]
        self.slots.host_out[self.slot][:self.size] = 0
        self.slots.host_out[self.slot][:self.size, 0] = staged[:, 0, 0, 0]
        with self.slots.lock:
            self.slots.running -= 1
            self.slots.order.append(self.slot)
        self.finished.set()

    def synchronize(self) -> None:
        self.finished.wait()


class FakeSlots:
    """Two staging slots; `auto=False` holds every launch until the test releases it."""

    count = 2
    name = "fake-two-slots"

    def __init__(self, side: int, batch: int, auto: bool = True):
        self.host_in = [np.zeros((batch, side, side, 3), np.uint8) for _ in range(self.count)]
        self.host_out = [np.zeros((batch, 512), np.float32) for _ in range(self.count)]
        self.auto, self.lock = auto, threading.Lock()
        self.in_flight: set[int] = set()
        self.launches: list[_Launch] = []
        self.running = self.most_running = 0
        self.order: list[int] = []
        self.overwrites = 0  # stage() on a slot whose batch had not been read yet

    def stage(self, slot: int, images: np.ndarray) -> None:
        self.overwrites += slot in self.in_flight
        self.in_flight.add(slot)
        self.host_in[slot][:len(images)] = images

    def launch(self, slot: int, size: int) -> _Launch:
        launch = _Launch(self, slot, size)
        self.launches.append(launch)
        if self.auto:
            launch.go.set()
        return launch

    def read(self, slot: int, size: int) -> np.ndarray:
        self.in_flight.discard(slot)
        return self.host_out[slot][:size].copy()


def _batch(first: int, size: int, side: int = 8) -> np.ndarray:
    return np.stack([np.full((side, side, 3), (first + i) % 256, np.uint8) for i in range(size)])


def test_two_batches_in_flight_then_no_room_until_one_is_read():
    slots = FakeSlots(side=8, batch=4, auto=False)
    pipeline = SlotPipeline(slots)
    woken = []
    first = pipeline.submit(_batch(0, 4), wake=lambda: woken.append("first"))
    second = pipeline.submit(_batch(10, 3), wake=lambda: woken.append("second"))
    assert pipeline.depth == 2 and not pipeline.has_room()
    with pytest.raises(RuntimeError, match="has_room"):
        pipeline.submit(_batch(20, 1))
    wait_until(lambda: slots.most_running == 2, 5, what="both batches running at once")
    # The second batch's device work finishes first; it is still reported after the first.
    slots.launches[1].go.set()
    slots.launches[1].finished.wait(5)
    time.sleep(0.05)
    assert not first.done() and not second.done() and woken == []
    slots.launches[0].go.set()
    second.wait()
    assert first.done() and woken == ["first", "second"]
    assert not pipeline.has_room(), "a slot is free only once its features were read"
    assert list(second.result()[:, 0]) == [10, 11, 12]
    assert pipeline.has_room()
    third = pipeline.submit(_batch(30, 2))  # reuses the second's slot while the first is still unread
    slots.launches[2].go.set()
    assert list(third.result()[:, 0]) == [30, 31] and list(first.result()[:, 0]) == [0, 1, 2, 3]
    assert slots.overwrites == 0
    pipeline.close()


def test_every_batch_gets_its_own_features_when_kept_full():
    # Launches are held until the test releases them, so both slots are busy whenever the pipeline
    # has no room, however slowly the stand-in threads are scheduled.
    slots = FakeSlots(side=8, batch=8, auto=False)
    pipeline = SlotPipeline(slots)
    running, results, first = [], [], 0

    def finish_oldest() -> None:
        expected, pending, launch = running.pop(0)
        launch.go.set()
        results.append((expected, list(pending.result()[:, 0].astype(int))))

    for size in [8, 3, 8, 1, 5, 8, 2, 7] * 5:
        while not pipeline.has_room():
            wait_until(lambda: slots.running == 2, 5, what="two batches on the device at once")
            finish_oldest()
        pending = pipeline.submit(_batch(first, size))
        running.append((list(range(first, first + size)), pending, slots.launches[-1]))
        first += size
    while running:
        finish_oldest()
    assert all(got == [v % 256 for v in expected] for expected, got in results)
    assert len(results) == 40 and slots.overwrites == 0 and slots.most_running == 2
    pipeline.close()


def test_a_failed_batch_frees_its_slot_and_the_error_reaches_the_caller():
    class LostOnce(FakeSlots):
        def launch(self, slot, size):
            launch = super().launch(slot, size)
            if len(self.launches) == 1:
                launch.synchronize = lambda: (_ for _ in ()).throw(RuntimeError("device lost"))
            return launch

    pipeline = SlotPipeline(LostOnce(side=8, batch=2))
    failed = pipeline.submit(_batch(0, 2))
    with pytest.raises(RuntimeError, match="device lost"):
        failed.result()
    assert pipeline.has_room()
    assert list(pipeline(_batch(5, 2))[:, 0]) == [5, 6] and pipeline.has_room()
    pipeline.close()


def test_feature_worker_on_two_slots_sends_every_frame_its_feature_in_order(zmq_context):
    slots = FakeSlots(side=64, batch=4)
    count = 60
    with feature_worker_with(zmq_context, SlotPipeline(slots)) as (worker, feed):
        try:
            for seq in range(count):
                feed.send(f"cam{seq % 2}", seq // 2, fill=seq)
                time.sleep(0.005)
            got = feed.features(count)
        finally:
            worker.backend.close()
    for stream in ("cam0", "cam1"):
        mine = [feature for feature in got if feature.stream == stream]
        assert [feature.seq for feature in mine] == list(range(count // 2))
        assert [int(feature.vector[0]) for feature in mine] == [2 * s + (stream == "cam1") for s in range(count // 2)]
    assert slots.overwrites == 0 and worker.stats()["frames"] == count
