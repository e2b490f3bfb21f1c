"""The normalising half of the preset (the geometric half is models/presets.py): runs where the CNN runs."""

from __future__ import annotations

import torch

from models.presets import Preset


def normalization(preset: Preset, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """The preset's mean x 255 and 1 / (std x 255), as float32 [1, 3, 1, 1] tensors on `device`."""
    mean = torch.tensor(preset.mean, device=device, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
    inv_std = 1.0 / (torch.tensor(preset.std, device=device, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)
    return mean, inv_std


def normalize_batch(images: torch.Tensor, preset: Preset, dtype: torch.dtype = torch.float32,
                    constants: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """uint8 [N, H, W, 3] (any device) -> normalised [N, 3, H, W] in `dtype`, channels-last in memory.

    `constants`: `normalization(preset, device)` made once, for callers that must not upload them per
    batch (on CUDA that upload is a synchronous copy, which would stall the caller on the device)."""
    mean, inv_std = constants if constants is not None else normalization(preset, images.device)
    # permute gives an NCHW view whose memory is NHWC: exactly channels-last, no copy needed.
    nchw = images.permute(0, 3, 1, 2).to(torch.float32)
    return ((nchw - mean) * inv_std).to(dtype).contiguous(memory_format=torch.channels_last)
