"""The activity segments' thresholds (config [activity], models/segments.py), chosen on validation.

The validation clips (groups carved out of the training list, models/validation.py) are joined
into one stream, in a seeded random order, each replayed at one of `SPEEDS` (activities as long
as the clips and 2x and 4x longer, models/temporal_augment.py), as a live camera shows one activity
after another. The trained LSTM labels every frame of it once; then every combination of the
grid below is scored on those labels:

    score = (frames inside a segment of the true activity / frames)
            x min(1, true activities / segments)

the first factor rewards segments that are right and cover their activity, the second punishes
splitting one activity into several segments (flicker). The test split plays no part.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

from configs.settings import Activity
from models.segments import segment_all
from models.sequence_inputs import sequence_inputs
from models.temporal_augment import replay, replay_positions

SPEEDS = (1.0, 0.5, 0.25)
GRID = {"ema_alpha": (0.1, 0.15, 0.25, 0.4), "enter": (0.5, 0.6, 0.7), "leave": (0.3, 0.4, 0.5),
        "min_frames": (4, 8, 12)}


@dataclass(frozen=True)
class TunedActivity:
    settings: Activity
    score: float
    frame_accuracy: float  # frames inside a segment of their true activity
    segments_per_activity: float
    frames: int
    activities: int


def validation_stream(videos, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """(raw features [T, D], true class per frame) of the validation clips joined, each at a random speed."""
    rng = np.random.default_rng(seed)
    parts, truth = [], []
    for index in rng.permutation(len(videos)):
        video = videos[index]
        speed = SPEEDS[int(rng.integers(len(SPEEDS)))]
        replayed = replay(video.frames, replay_positions(len(video.frames), speed, 0.0, rng), rng)
        parts.append(replayed)
        truth.append(np.full(len(replayed), video.label))
    return torch.cat(parts), np.concatenate(truth)


@torch.no_grad()
def stream_probabilities(model: torch.nn.Module, inputs: torch.Tensor, window: int, chunk: int = 512) -> np.ndarray:
    """Probabilities of the full window ending at each frame from window - 1 on (as a warm live stream)."""
    device = next(model.parameters()).device
    windows = inputs.unfold(0, window, 1).permute(0, 2, 1)
    return torch.cat([torch.exp(model(windows[i:i + chunk].contiguous().to(device))).float().cpu()
                      for i in range(0, len(windows), chunk)]).numpy()


def score(classes: list[str], probabilities: np.ndarray, truth: np.ndarray, settings: Activity) -> TunedActivity:
    frames = np.arange(len(truth))
    segments = segment_all(classes, frames, frames, probabilities, ema_alpha=settings.ema_alpha,
                           enter=settings.enter, leave=settings.leave, min_frames=settings.min_frames)
    covered = np.full(len(truth), -1)
    for segment in segments:
        covered[segment.start_seq:segment.end_seq + 1] = classes.index(segment.label)
    activities = 1 + int((np.diff(truth) != 0).sum())
    accuracy = float((covered == truth).mean())
    return TunedActivity(settings, accuracy * min(1.0, activities / max(1, len(segments))), accuracy,
                         len(segments) / activities, len(truth), activities)


def tune_activity(model: torch.nn.Module, window: int, inputs: str, classes: list[str], videos,
                  configured: Activity, seed: int = 0) -> tuple[TunedActivity, TunedActivity]:
    """(the best [activity] settings of the grid on the validation stream (ties: the first in grid order),
    the configured settings' figures on the same stream)."""
    model.eval()
    features, truth = validation_stream(videos, seed)
    probabilities = stream_probabilities(model, sequence_inputs(features, inputs), window)
    truth = truth[window - 1:]
    best = None
    for alpha, enter, leave, min_frames in itertools.product(*GRID.values()):
        if leave >= enter:
            continue
        result = score(classes, probabilities, truth,
                       Activity(ema_alpha=alpha, enter=enter, leave=leave, min_frames=min_frames))
        if best is None or result.score > best.score:
            best = result
    return best, score(classes, probabilities, truth, configured)


def tuned_sentence(best: TunedActivity, configured: TunedActivity) -> str:
    def figures(result: TunedActivity) -> str:
        s = result.settings
        return (f"ema_alpha={s.ema_alpha:g}, enter={s.enter:g}, leave={s.leave:g}, min_frames={s.min_frames}: "
                f"score {result.score:.3f}, {100 * result.frame_accuracy:.1f}% of frames inside a segment of their "
                f"activity, {result.segments_per_activity:.2f} segments per activity")
    return (f"activity thresholds chosen on validation ({best.activities} activities, {best.frames} frames at "
            f"{', '.join(f'{speed:g}' for speed in SPEEDS)}x the clips' speed): {figures(best)}; the configured "
            f"activity.* settings {figures(configured)}")
