"""ResNet-18 on a CUDA device with two batches in flight: the copy of one overlaps the compute of the other.

The feature worker keeps `backend.depth` batches running and collects the next batch of frames
meanwhile (workers/feature_worker.py). This backend gives it two slots, each with its own
staging buffers, so the worker never waits for the GPU to finish before it reads more frames:

    submit(batch k):  frames -> slot k%2's pinned uint8 buffer (host memcpy)
                      copy stream:    wait until slot k%2's last compute consumed its device input,
                                      upload (non-blocking), record `uploaded`
                      compute stream: wait `uploaded`, normalise + ResNet-18 in float16, download
                                      features to the slot's pinned float32 buffer, record `finished`
    a waiter thread:  waits for `finished` in submission order, marks the batch done, wakes the
                      worker's poll loop (OpenVINO does this from its completion callback).

The upload of batch k+1 runs on the copy stream while batch k computes on the compute stream, and
`submit` returns without waiting for the device: nothing in `launch` blocks the host (the
normalisation constants are uploaded once, since a per-batch upload of them is a synchronous copy).
A slot is handed out again only after its batch's features were read, so neither pinned buffer
is written while the GPU may still read it. `pinned=False` stages in pageable memory instead (the
same code path; CUDA then copies through its own bounce buffer and the upload cannot overlap), for
measuring what pinning buys.

`SlotPipeline` holds the ordering logic and is written against `Slots`, a small interface the
CUDA implementation (`CudaSlots`) and a CPU fake in the tests both provide.
"""

from __future__ import annotations

import copy
import queue
import threading
from typing import Callable, Protocol

import numpy as np
import torch

from models.networks import FeatureExtractor
from models.normalize import normalization, normalize_batch
from models.presets import Preset


class Completion(Protocol):
    def synchronize(self) -> None: ...


class Slots(Protocol):
    """Staging buffers and launches for `count` batches at once; what `SlotPipeline` drives."""

    count: int
    name: str

    def stage(self, slot: int, images: np.ndarray) -> None:
        """Copy `images` into the slot's host buffer (only called for a slot with no batch in flight)."""

    def launch(self, slot: int, size: int) -> Completion:
        """Start the slot's upload, model and download; returns what completes when its features are readable."""

    def read(self, slot: int, size: int) -> np.ndarray:
        """A copy of the slot's first `size` feature rows (only called after its completion)."""


class Pending:
    """One submitted batch: `done()` turns true from the waiter thread; `result()` frees its slot."""

    def __init__(self, pipeline: "SlotPipeline", slot: int, size: int, wake: Callable[[], None] | None):
        self._pipeline, self.slot, self.size, self.wake = pipeline, slot, size, wake
        self._finished = threading.Event()
        self.error: BaseException | None = None
        self._features: np.ndarray | None = None

    def done(self) -> bool:
        return self._finished.is_set()

    def wait(self) -> None:
        self._finished.wait()

    def result(self) -> np.ndarray:
        self._finished.wait()
        if self._features is None:
            self._features = self._pipeline._collect(self)
        return self._features

    def _mark_finished(self, error: BaseException | None = None) -> None:
        self.error = error
        self._finished.set()
        if self.wake is not None:
            self.wake()


class SlotPipeline:
    """`submit`/`has_room`/`depth` for the feature worker over any `Slots`; batches finish in submission order."""

    def __init__(self, slots: Slots):
        self.slots = slots
        self.depth = slots.count
        self.name = slots.name
        self._free = list(range(slots.count))
        self._lock = threading.Lock()
        self._launched: queue.Queue[tuple[Pending, Completion] | None] = queue.Queue()
        self._waiter = threading.Thread(target=self._wait_in_order, name="cuda-completions", daemon=True)
        self._waiter.start()

    def has_room(self) -> bool:
        with self._lock:
            return bool(self._free)

    def submit(self, images: np.ndarray, wake: Callable[[], None] | None = None) -> Pending:
        with self._lock:
            if not self._free:
                raise RuntimeError("submit() while both slots are busy: check has_room() first")
            slot = self._free.pop(0)
        try:
            self.slots.stage(slot, images)
            completion = self.slots.launch(slot, len(images))
        except BaseException:
            self._release(slot)
            raise
        pending = Pending(self, slot, len(images), wake)
        self._launched.put((pending, completion))
        return pending

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """One batch, waited for (the probe against float32 and the bare-model timing use this)."""
        pending = self.submit(images)
        return pending.result()

    def close(self) -> None:
        self._launched.put(None)
        self._waiter.join()

    def _wait_in_order(self) -> None:
        while (item := self._launched.get()) is not None:
            pending, completion = item
            try:
                completion.synchronize()  # releases the GIL while the device works
            except BaseException as error:  # noqa: BLE001 - handed to the worker through result()
                pending._mark_finished(error)
                continue
            pending._mark_finished()

    def _collect(self, pending: Pending) -> np.ndarray:
        try:
            if pending.error is not None:
                raise pending.error
            return self.slots.read(pending.slot, pending.size)
        finally:
            self._release(pending.slot)

    def _release(self, slot: int) -> None:
        with self._lock:
            self._free.append(slot)


class CudaSlots:
    """Two (or `count`) staging slots on one CUDA device: pinned host buffers, a copy and a compute stream."""

    def __init__(self, extractor: FeatureExtractor, preset: Preset, max_batch: int, device: str = "cuda",
                 pinned: bool = True, count: int = 2, half: bool = True):
        self.preset, self.device, self.pinned, self.count, self.half = preset, torch.device(device), pinned, count, half
        torch.backends.cudnn.benchmark = True  # fixed frame size: let cuDNN pick its fastest kernels
        # A copy: the caller's model stays on the CPU in float32 (it is the reference we are checked against).
        model = copy.deepcopy(extractor).eval().to(self.device, memory_format=torch.channels_last)
        self.model = model.half() if half else model
        self._copy_stream = torch.cuda.Stream(self.device)
        self._compute_stream = torch.cuda.Stream(self.device)
        # The weight upload and casts were queued on the default stream: ours must not start first.
        for stream in (self._copy_stream, self._compute_stream):
            stream.wait_stream(torch.cuda.current_stream(self.device))
        self._consumed = [torch.cuda.Event() for _ in range(count)]  # the slot's device input was read
        self._constants = normalization(preset, self.device)  # uploaded once: a per-batch upload would block
        self._allocate(max_batch, preset.crop)
        kind = "pinned" if pinned else "pageable"
        self.name = (f"torch-cuda-{'fp16' if half else 'fp32'}-{kind}-{count}-in-flight "
                     f"({torch.cuda.get_device_name(self.device)})")

    def _allocate(self, batch: int, side: int) -> None:
        self._host_in, self._host_out, self._device_in = [None] * self.count, [None] * self.count, [None] * self.count
        for slot in range(self.count):
            self._allocate_slot(slot, batch, side)

    def _allocate_slot(self, slot: int, batch: int, side: int) -> None:
        features = int(self.model.cnn.backbone.fc.in_features)

        def host(shape, dtype):
            tensor = torch.empty(shape, dtype=dtype)
            return tensor.pin_memory() if self.pinned else tensor

        self._host_in[slot] = host((batch, side, side, 3), torch.uint8)
        self._host_out[slot] = host((batch, features), torch.float32)
        self._device_in[slot] = torch.empty((batch, side, side, 3), dtype=torch.uint8, device=self.device)

    def stage(self, slot: int, images: np.ndarray) -> None:
        if tuple(images.shape[1:]) != tuple(self._host_in[slot].shape[1:]) or len(images) > len(self._host_in[slot]):
            # A larger batch than ever before: new buffers for this slot only (the other may be in flight).
            torch.cuda.synchronize(self.device)  # nothing may still read this slot's old buffers
            self._allocate_slot(slot, max(len(images), len(self._host_in[slot])), images.shape[1])
        self._host_in[slot][:len(images)].numpy()[...] = images

    @torch.inference_mode()
    def launch(self, slot: int, size: int) -> torch.cuda.Event:
        uploaded, finished = torch.cuda.Event(), torch.cuda.Event()
        with torch.cuda.stream(self._copy_stream):
            self._copy_stream.wait_event(self._consumed[slot])  # the last batch of this slot has been read
            self._device_in[slot][:size].copy_(self._host_in[slot][:size], non_blocking=True)
            uploaded.record(self._copy_stream)
        with torch.cuda.stream(self._compute_stream):
            self._compute_stream.wait_event(uploaded)
            dtype = torch.float16 if self.half else torch.float32
            batch = normalize_batch(self._device_in[slot][:size], self.preset, dtype=dtype,
                                    constants=self._constants)
            self._consumed[slot].record(self._compute_stream)
            features = self.model(batch)
            self._host_out[slot][:size].copy_(features.float(), non_blocking=True)
            finished.record(self._compute_stream)
        return finished

    def read(self, slot: int, size: int) -> np.ndarray:
        return self._host_out[slot][:size].numpy().copy()  # the pinned buffer is reused by the slot's next batch


def torch_cuda(extractor: FeatureExtractor, preset: Preset, max_batch: int, pinned: bool = True,
               half: bool = True) -> SlotPipeline:
    """The CUDA feature backend: two batches in flight through pinned staging buffers, float16."""
    return SlotPipeline(CudaSlots(extractor, preset, max_batch, pinned=pinned, half=half))
