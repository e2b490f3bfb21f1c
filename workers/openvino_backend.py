"""OpenVINO on the CPU: the torchvision model converted in-process, normalisation included.

The converted graph takes the uint8 NHWC frames the capture sends, so the whole preprocessing
and the network run in OpenVINO's kernels. bfloat16 where the CPU has AMX or AVX-512 bf16
(OpenVINO decides from its own capability list), else float32. With `int8_model`, the int8 graph
NNCF made for the bundle (models/int8.py) instead of a conversion of the extractor.

The model is compiled twice, because one compilation cannot be best at both:
- latency mode: one request using every core (`threads`; 0 = OpenVINO's default). A lone frame
  comes back fastest this way, so an idle pipeline answers at once.
- throughput mode with `requests` streams (when > 1): each stream runs its own batch on its own
  share of the cores, with no barrier between cores inside a layer. Under load the worker keeps
  that many batches running. A core taken away for a moment by another process (a capture, the
  LSTM worker) then delays one batch, instead of stalling every core of a shared batch at the
  next layer; on 2 cores shared with 8 captures this gives ~10% more frames per CPU-second.
`submit` picks: a partial batch while nothing runs goes to the latency request; a fuller batch,
or one arriving while others run, to a free throughput request.
"""

from __future__ import annotations

import logging
from collections import deque
from pathlib import Path
from typing import Callable

import numpy as np

from models.networks import FeatureExtractor
from models.openvino_export import convert
from models.presets import Preset

log = logging.getLogger(__name__)


class _Running:
    """One batch inside an infer request; `done()` turns true from OpenVINO's completion callback."""

    def __init__(self, request, images: np.ndarray, release: Callable[[], None], wake: Callable[[], None] | None):
        self.request, self.images, self._release = request, images, release  # images: read in place
        self.wake = wake
        self.finished = False

    def done(self) -> bool:
        return self.finished

    def wait(self) -> None:
        self.request.wait()

    def result(self) -> np.ndarray:
        self.request.wait()  # returns at once when done; raises what the inference raised
        features = np.array(self.request.get_output_tensor(0).data, dtype=np.float32)  # the request reuses it
        self.images = None
        self._release()
        return features


class OpenVinoCpu:
    def __init__(self, extractor: FeatureExtractor, preset: Preset, max_batch: int = 16, reduced: bool = True,
                 threads: int = 0, requests: int = 2, int8_model: Path | None = None):
        import openvino

        core = openvino.Core()
        # int8: the quantized graph stored beside the bundle (models/int8.py); else the extractor converted now
        converted = core.read_model(str(int8_model)) if int8_model is not None else convert(extractor, preset)
        bf16 = reduced and "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        precision = "bf16" if bf16 else "f32"
        common = {"INFERENCE_PRECISION_HINT": precision} | ({"INFERENCE_NUM_THREADS": int(threads)} if threads else {})
        latency = core.compile_model(converted, "CPU", common | {"PERFORMANCE_HINT": "LATENCY"})
        self._call_request = latency.create_infer_request()  # for __call__
        self._lone_request = latency.create_infer_request()  # for submit, when nothing else runs
        self._lone_busy = False
        self.threads = int(latency.get_property("INFERENCE_NUM_THREADS"))
        self.depth = max(1, int(requests))  # batches running at once under load
        self._idle: deque[int] = deque()
        self._throughput_requests = []
        if self.depth > 1:
            throughput = core.compile_model(converted, "CPU", common | {"PERFORMANCE_HINT": "THROUGHPUT",
                                                                       "NUM_STREAMS": self.depth})
            self._throughput_requests = [throughput.create_infer_request() for _ in range(self.depth)]
            self._idle.extend(range(self.depth))
            streams = int(throughput.get_property("NUM_STREAMS"))
            log.info("OpenVINO compiled for CPU: precision %s; latency mode with %d threads for lone batches, "
                     "throughput mode with %d streams on %d thread(s) in all under load", precision, self.threads,
                     streams, int(throughput.get_property("INFERENCE_NUM_THREADS")))
        else:
            log.info("OpenVINO compiled for CPU: precision %s, latency mode, %d threads, one batch at a time",
                     precision, self.threads)
        self._running: dict[int, _Running] = {}  # request index (0: the lone request) -> its batch
        self._lone_threshold = max(2, max_batch // 2)  # batches smaller than this, when idle: latency mode
        for index, request in enumerate([self._lone_request, *self._throughput_requests]):
            request.set_callback(self._completed, index)
        self.name = f"openvino-cpu-{'int8' if int8_model is not None else precision}"

    def __call__(self, images: np.ndarray) -> np.ndarray:
        # share_inputs: the request reads the caller's batch in place (no copy; we wait for it);
        # the output is copied out of the request's memory, which the next call reuses.
        result = self._call_request.infer([np.ascontiguousarray(images)], share_inputs=True, share_outputs=False)
        return np.asarray(result[0], dtype=np.float32)

    def has_room(self) -> bool:
        """Whether `submit` can start a batch now (the lone request uses every core: nothing beside it)."""
        if self._lone_busy:
            return False
        return bool(self._idle) if self._throughput_requests else True

    def submit(self, images: np.ndarray, wake: Callable[[], None] | None = None) -> _Running:
        """Start `images` without waiting; `wake()` is called from OpenVINO's thread when it is done."""
        if not self.has_room():
            raise RuntimeError("submit() while every infer request is busy: check has_room() first")
        images = np.ascontiguousarray(images)
        everything_idle = len(self._idle) == len(self._throughput_requests)
        if not self._throughput_requests or (everything_idle and len(images) < self._lone_threshold):
            index, request = 0, self._lone_request
            self._lone_busy = True
            release = self._release_lone
        else:
            slot = self._idle.popleft()
            index, request = slot + 1, self._throughput_requests[slot]
            release = lambda: self._idle.append(slot)  # noqa: E731
        running = self._running[index] = _Running(request, images, release, wake)
        request.start_async([images], share_inputs=True)
        return running

    def _release_lone(self) -> None:
        self._lone_busy = False

    def _completed(self, index: int) -> None:
        # OpenVINO's thread: mark the batch done, then wake the worker's poll loop.
        running = self._running[index]
        running.finished = True
        if running.wake is not None:
            running.wake()
