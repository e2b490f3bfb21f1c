"""OpenVINO on the CPU: the torchvision model converted in-process, normalisation included.

The converted graph takes the uint8 NHWC frames the capture sends, so the whole preprocessing
and the network run in OpenVINO's kernels. bfloat16 where the CPU has AMX or AVX-512 bf16
(OpenVINO decides from its own capability list), else float32.
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
    def __init__(self, extractor: FeatureExtractor, preset: Preset, max_batch: int = 16):
        import openvino

        side = preset.crop
        example = torch.zeros((1, side, side, 3), dtype=torch.uint8)
        with warnings.catch_warnings():  # tracing warnings about constant tensors are expected here
            warnings.simplefilter("ignore")
            converted = openvino.convert_model(_FromUint8(extractor.eval(), preset), example_input=example,
                                               input=[openvino.PartialShape([-1, side, side, 3])])
        core = openvino.Core()
        bf16 = "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        precision = "bf16" if bf16 else "f32"
        self._compiled = core.compile_model(converted, "CPU", {"INFERENCE_PRECISION_HINT": precision,
                                                               "PERFORMANCE_HINT": "LATENCY"})
        self._request = self._compiled.create_infer_request()
        self.name = f"openvino-cpu-{precision}"

    def __call__(self, images: np.ndarray) -> np.ndarray:
        result = self._request.infer([np.ascontiguousarray(images)])
        return np.asarray(result[0], dtype=np.float32).copy()  # the request reuses its output memory
