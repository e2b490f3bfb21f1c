"""OpenVINO on the CPU: the torchvision model converted in-process, normalisation included.

The converted graph takes the uint8 NHWC frames the capture sends, so the whole preprocessing
and the network run in OpenVINO's kernels. bfloat16 where the CPU has AMX or AVX-512 bf16
(OpenVINO decides from its own capability list), else float32.

Threads: `threads` sets INFERENCE_NUM_THREADS (0: OpenVINO's default, every core). With
`requests` > 1 the model is compiled for that many parallel streams (throughput mode) and a batch
is split into that many slices run as asynchronous infer requests at once, each on its own
core: no barrier between cores inside one layer, which holds up better when other processes
share the cores; a batch of one still runs on one stream.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import torch

from models.networks import FeatureExtractor
from models.presets import Preset, normalize_batch

log = logging.getLogger(__name__)


class _FromUint8(torch.nn.Module):
    def __init__(self, extractor: FeatureExtractor, preset: Preset):
        super().__init__()
        self.extractor, self.preset = extractor, preset

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.extractor(normalize_batch(images, self.preset))


class OpenVinoCpu:
    def __init__(self, extractor: FeatureExtractor, preset: Preset, max_batch: int = 16, reduced: bool = True,
                 threads: int = 0, requests: int = 1):
        import openvino

        side = preset.crop
        example = torch.zeros((1, side, side, 3), dtype=torch.uint8)
        with warnings.catch_warnings():  # tracing warnings about constant tensors are expected here
            warnings.simplefilter("ignore")
            converted = openvino.convert_model(_FromUint8(extractor.eval(), preset), example_input=example,
                                               input=[openvino.PartialShape([-1, side, side, 3])])
        core = openvino.Core()
        bf16 = reduced and "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        precision = "bf16" if bf16 else "f32"
        self.requests = max(1, int(requests))
        properties = {"INFERENCE_PRECISION_HINT": precision}
        if self.requests > 1:
            properties |= {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": self.requests}
        else:
            properties |= {"PERFORMANCE_HINT": "LATENCY"}
        if threads:
            properties["INFERENCE_NUM_THREADS"] = int(threads)
        self._compiled = core.compile_model(converted, "CPU", properties)
        self._request = self._compiled.create_infer_request()
        self._parallel = [self._compiled.create_infer_request() for _ in range(self.requests)] \
            if self.requests > 1 else []
        self.threads = int(self._compiled.get_property("INFERENCE_NUM_THREADS"))
        streams = int(self._compiled.get_property("NUM_STREAMS"))
        self.name = f"openvino-cpu-{precision}" + (f"-{streams}streams" if self.requests > 1 else "")
        log.info("OpenVINO compiled for CPU: precision %s, %d inference threads, %d stream(s), %s hint",
                 precision, self.threads, streams, properties["PERFORMANCE_HINT"])

    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = np.ascontiguousarray(images)
        if not self._parallel or len(images) < 2:
            # share_inputs: the request reads the caller's batch in place (no copy; we wait for it);
            # the output is copied out of the request's memory, which the next call reuses.
            result = self._request.infer([images], share_inputs=True, share_outputs=False)
            return np.asarray(result[0], dtype=np.float32)
        slices = np.array_split(images, min(len(self._parallel), len(images)))
        used = self._parallel[:len(slices)]
        for request, part in zip(used, slices):
            request.start_async([part])
        for request in used:
            request.wait()
        return np.concatenate([np.asarray(request.get_output_tensor(0).data, dtype=np.float32) for request in used])
