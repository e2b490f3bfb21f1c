"""The preprocessing preset shared by training and the live workers.

Split in two because the halves run in different processes:
- `geometric` (here): resize the short side, center crop, BGR->RGB. Runs in the capture process,
  so only the small cropped frame crosses the wire. This module imports no torch, so a capture
  process stays small (~115 MiB resident instead of ~790) and starts fast.
- `normalize_batch` (models/normalize.py): uint8 RGB [N, H, W, 3] -> float [N, 3, H, W] with
  ImageNet mean/std. Runs where the CNN runs (on the GPU when there is one, after a uint8 upload
  that is 4x smaller).
Training applies exactly these two functions, imported, never copied, so what the live worker
sees is what the model was trained on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preset:
    resize: int = 256  # short side after resizing (the lecture: 256)
    crop: int = 224  # square center crop (the lecture: 224)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if not 0 < self.crop <= self.resize:
            raise ValueError(f"preset crop {self.crop} must be between 1 and resize {self.resize}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "Preset":
        return cls(resize=int(values["resize"]), crop=int(values["crop"]),
                   mean=tuple(values["mean"]), std=tuple(values["std"]))


def geometric(frame_bgr: np.ndarray, preset: Preset) -> np.ndarray:
    """Camera frame (BGR, any size) -> uint8 RGB [crop, crop, 3]."""
    height, width = frame_bgr.shape[:2]
    scale = preset.resize / min(height, width)
    new_w, new_h = max(preset.crop, round(width * scale)), max(preset.crop, round(height * scale))
    # INTER_AREA when shrinking avoids aliasing; bilinear when growing (as torchvision's Resize).
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(frame_bgr, (new_w, new_h), interpolation=interpolation)
    top, left = (new_h - preset.crop) // 2, (new_w - preset.crop) // 2
    cropped = resized[top:top + preset.crop, left:left + preset.crop]
    return np.ascontiguousarray(cropped[:, :, ::-1])


LECTURE_PRESET = Preset(resize=256, crop=224)
