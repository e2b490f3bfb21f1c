"""The feature CNN as an OpenVINO model that takes the capture's uint8 NHWC frames (normalisation inside).

Used by the OpenVINO feature backend (workers/openvino_backend.py) and by the int8 quantization
(models/int8.py), so both run the very same graph. `openvino` is imported only when called.
"""

from __future__ import annotations

import warnings

import torch

from models.networks import FeatureExtractor
from models.normalize import normalize_batch
from models.presets import Preset


class FromUint8(torch.nn.Module):
    """uint8 [N, H, W, 3] frames -> 512-d features: the preset's normalisation, then the extractor."""

    def __init__(self, extractor: FeatureExtractor, preset: Preset):
        super().__init__()
        self.extractor, self.preset = extractor, preset

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.extractor(normalize_batch(images, self.preset))


def convert(extractor: FeatureExtractor, preset: Preset):
    """An `openvino.Model` of `FromUint8`, with a dynamic batch dimension."""
    import openvino

    side = preset.crop
    example = torch.zeros((1, side, side, 3), dtype=torch.uint8)
    with warnings.catch_warnings():  # tracing warnings about constant tensors are expected here
        warnings.simplefilter("ignore")
        return openvino.convert_model(FromUint8(extractor.eval(), preset), example_input=example,
                                      input=[openvino.PartialShape([-1, side, side, 3])])
