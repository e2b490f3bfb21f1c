"""The shared preset: the capture's geometric half plus the worker's normalisation equal torchvision's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.transforms import v2

from models.normalize import normalize_batch
from models.presets import Preset, geometric


def test_geometric_resizes_the_short_side_and_center_crops_to_rgb():
    frame = np.zeros((120, 160, 3), np.uint8)
    frame[:, :, 0] = 255  # blue in BGR
    frame[60, 80] = (0, 0, 255)  # one red pixel in the middle
    out = geometric(frame, Preset(resize=128, crop=112))
    assert out.shape == (112, 112, 3) and out.dtype == np.uint8
    assert out[0, 0, 2] == 255 and out[0, 0, 0] == 0  # channels now RGB
    red = np.argwhere(out[:, :, 0] > 100)
    assert abs(red[:, 0].mean() - 56) <= 2 and abs(red[:, 1].mean() - 56) <= 2  # the centre stays the centre


def test_normalisation_matches_torchvision_and_is_channels_last():
    preset = Preset(resize=72, crop=64)
    images = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    ours = normalize_batch(torch.from_numpy(images), preset)
    reference = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(preset.mean, preset.std)])(
        torch.from_numpy(images).permute(0, 3, 1, 2))
    assert torch.allclose(ours, reference, atol=1e-5)
    assert ours.is_contiguous(memory_format=torch.channels_last)


def test_crop_larger_than_resize_is_refused():
    with pytest.raises(ValueError, match="crop 112"):
        Preset(resize=100, crop=112)
