"""The normalising half of the preset (the geometric half is models/presets.py): runs where the CNN runs."""

from __future__ import annotations

import torch

from models.presets import Preset


def normalize_batch(images: torch.Tensor, preset: Preset, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 [N, H, W, 3] (any device) -> normalised [N, 3, H, W] in `dtype`, channels-last in memory."""
    mean = torch.tensor(preset.mean, device=images.device, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
    inv_std = 1.0 / (torch.tensor(preset.std, device=images.device, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)
    # permute gives an NCHW view whose memory is NHWC: exactly channels-last, no copy needed.
    nchw = images.permute(0, 3, 1, 2).to(torch.float32)
    return ((nchw - mean) * inv_std).to(dtype).contiguous(memory_format=torch.channels_last)
