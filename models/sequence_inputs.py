"""What the LSTM reads per frame: the CNN's 512-d features, or their frame-to-frame differences.

    "features"     x_t                       (the lecture)
    "differences"  d_t = x_t - x_{t-1}, d_0 = 0 at a stream's first frame and after a gap

Differences drop what stays the same within a clip (background, colours: what a CNN trained on
few clips memorises) and keep what changes (size, contrast, count), which is what separates an
activity from the same activity played backwards. On the synthetic set they raised LSTM window
accuracy from ~90% to ~96% (numbers in the README).

The differences are taken along the whole stream, before any window: the first step of the
window ending at frame t reads x_{t-31} - x_{t-32}. Training (`sequence_inputs` on a whole
video, then windows) and the live worker (`StreamInputs`, one frame at a time, then the
staggered windows) therefore feed the LSTM exactly the same numbers. The kind is stored in the
LSTM checkpoint (`metrics["inputs"]`); `checkpoint_inputs` reads it (old checkpoints: features).
"""

from __future__ import annotations

import typing

import numpy as np
import torch

from configs.settings import SequenceInputsChoice

INPUT_KINDS = typing.get_args(SequenceInputsChoice)


def check_kind(kind: str) -> str:
    if kind not in INPUT_KINDS:
        raise ValueError(f"sequence.inputs must be one of {', '.join(INPUT_KINDS)}, got {kind!r}")
    return kind


def sequence_inputs(features: torch.Tensor, kind: str) -> torch.Tensor:
    """A whole stream's features [T, D] -> the LSTM's inputs [T, D] (float32)."""
    features = torch.as_tensor(features, dtype=torch.float32)
    if check_kind(kind) == "features":
        return features
    inputs = torch.zeros_like(features)
    inputs[1:] = features[1:] - features[:-1]
    return inputs


class StreamInputs:
    """The live counterpart of `sequence_inputs`: one feature per stream per call."""

    def __init__(self, kind: str):
        self.kind = check_kind(kind)
        self._previous: dict[str, np.ndarray] = {}

    def next(self, stream: str, feature: np.ndarray) -> np.ndarray:
        feature = np.asarray(feature, dtype=np.float32)
        if self.kind == "features":
            return feature
        previous = self._previous.get(stream)
        self._previous[stream] = feature
        return np.zeros_like(feature) if previous is None else feature - previous

    def reset(self, stream: str) -> None:
        """A gap or a new stream: the next frame's difference is zero (as at a video's first frame)."""
        self._previous.pop(stream, None)

    remove = reset


def checkpoint_inputs(metrics: dict) -> str:
    """The input kind an LSTM checkpoint was trained on (checkpoints without the key: features)."""
    return check_kind(str(metrics.get("inputs", "features")))
