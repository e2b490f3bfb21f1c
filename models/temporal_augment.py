"""Training windows at other speeds and with dropped frames, so a window means a span of time.

Live, an activity can run slower or faster than in the training clips (a synthetic camera with
160-frame segments shows a 40-frame clip's change 4x slower), and a saturated pipeline drops
frames, so 32 received frames span more time than 32 training frames. Training windows are
therefore also taken from the clip replayed at a random speed with random drops:

    positions p_0 = phase, p_{i+1} = p_i + speed * (1 + frames dropped after p_i)

(fractional positions: the clip's slow trend, a 5-frame moving average, is interpolated linearly
between the two nearest frames, so a speed below 1 shows the same change spread over more frames,
and each replayed frame gets the frame-to-frame noise of a random frame of the clip, as a real
slow clip is as noisy per frame as a fast one). The speed is drawn
log-uniformly from [min_speed, max_speed], each window's drop rate uniformly from [0, drop_rate].
The LSTM's inputs (features or differences, models/sequence_inputs.py) are computed on the
resampled sequence, as the live worker computes them on the frames that arrived.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def replay_positions(length: int, speed: float, drop_rate: float, rng: np.random.Generator) -> np.ndarray:
    """Fractional frame positions (within 0..length-1) of a `length`-frame clip replayed at `speed`,
    each frame after a kept one dropped with probability `drop_rate`."""
    if speed <= 0:
        raise ValueError(f"speed must be positive, got {speed}")
    if not 0 <= drop_rate < 1:
        raise ValueError(f"drop_rate must be in [0, 1), got {drop_rate}")
    positions = []
    position = rng.uniform(0.0, min(speed, length - 1)) if length > 1 else 0.0
    while position <= length - 1:
        positions.append(position)
        dropped = rng.geometric(1.0 - drop_rate) - 1 if drop_rate > 0 else 0
        position += speed * (1 + dropped)
    return np.asarray(positions, dtype=np.float64)


def interpolate(features: torch.Tensor, positions: np.ndarray) -> torch.Tensor:
    """Features [T, D] at fractional positions -> [len(positions), D], linear between neighbouring frames."""
    low = np.floor(positions).astype(np.int64)
    high = np.minimum(low + 1, len(features) - 1)
    weight = torch.from_numpy((positions - low).astype(np.float32)).unsqueeze(1)
    return features[low] * (1 - weight) + features[high] * weight


def replay(features: torch.Tensor, positions: np.ndarray, rng: np.random.Generator, smooth: int = 5) -> torch.Tensor:
    """Features at fractional positions, keeping the clip's frame-to-frame noise: the slow part (a moving
    average over `smooth` frames) is interpolated, and each replayed frame gets the residual (frame minus
    moving average) of a random frame of the clip, so a slowed clip changes slowly but is as noisy per
    frame as a real slow one (plain interpolation would also average its noise away)."""
    half = smooth // 2 if len(features) > smooth // 2 else 0
    # ends extended by point reflection, so a steady trend is averaged without lag or bend at the ends
    before = 2 * features[:1] - features[1:half + 1].flip(0)
    after = 2 * features[-1:] - features[len(features) - 1 - half:len(features) - 1].flip(0)
    average = torch.cat([before, features, after]).unfold(0, 2 * half + 1, 1).mean(dim=2)
    residual = features - average
    return interpolate(average, positions) + residual[torch.from_numpy(rng.integers(0, len(features), len(positions)))]


def draw_speed(rng: np.random.Generator, min_speed: float, max_speed: float) -> float:
    """A speed drawn log-uniformly, so 0.25x and 4x slower/faster are as likely as 0.5x and 2x."""
    if not 0 < min_speed <= max_speed:
        raise ValueError(f"need 0 < min_speed <= max_speed, got {min_speed} and {max_speed}")
    return float(math.exp(rng.uniform(math.log(min_speed), math.log(max_speed))))


def replayed_window(features: torch.Tensor, window: int, rng: np.random.Generator, *, min_speed: float,
                    max_speed: float, drop_rate: float, attempts: int = 8) -> torch.Tensor | None:
    """Raw features of one window of the clip replayed at a random speed with random drops, with the
    replayed frame before it when there is one ([window + 1, D], else [window, D]: differences are then
    taken as at a clip's start); None when no draw leaves a full window (the clip is too short for the
    speeds and drops asked)."""
    for _ in range(attempts):
        speed = draw_speed(rng, min_speed, max_speed)
        positions = replay_positions(len(features), speed, rng.uniform(0.0, drop_rate), rng)
        if len(positions) >= window:
            start = int(rng.integers(0, len(positions) - window + 1))
            return replay(features, positions[max(0, start - 1):start + window], rng)
    return None
