"""How steady and how well placed labels are, raw against smoothed into segments (models/segments.py).

- label changes per minute: raw, each frame whose label differs from the one before; smoothed,
  each segment start (the smoothed label changed to it);
- boundary error: for each true change of activity, the distance in frames to the nearest
  boundary into the new activity (raw: a frame whose label turns to it; smoothed: a segment of it
  starting), counted as missed beyond `max_error` frames;
- settled accuracy: the share of labels whose whole window lies in one activity that name it.

`python -m models.segment_quality --config demo.toml` measures all three on the synthetic camera
with the trained bundle, offline (the same window and segment code as the live workers, no drops),
for activities of 40, 80 and 160 frames.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BoundaryErrors:
    errors: list[int]  # frames, one per true change that was found
    missed: int  # true changes with no boundary into the new activity within max_error frames

    @property
    def mean(self) -> float:
        return float(np.mean(self.errors)) if self.errors else float("nan")

    @property
    def median(self) -> float:
        return float(np.median(self.errors)) if self.errors else float("nan")


def changes_per_minute(changes: int, frames: int, fps: float) -> float:
    return changes / (frames / fps / 60) if frames else 0.0


def raw_changes(labels: list[str]) -> list[int]:
    """The frames whose label differs from the frame before."""
    return [t for t in range(1, len(labels)) if labels[t] != labels[t - 1]]


def true_changes(truth: list[str]) -> list[tuple[int, str]]:
    """(frame, new activity) for each change of the ground truth."""
    return [(t, truth[t]) for t in range(1, len(truth)) if truth[t] != truth[t - 1]]


def boundary_errors(changes: list[tuple[int, str]], boundaries: list[tuple[int, str]], max_error: int
                    ) -> BoundaryErrors:
    """For each true change, the nearest predicted boundary into the same activity."""
    errors, missed = [], 0
    for frame, activity in changes:
        distances = [abs(b - frame) for b, label in boundaries if label == activity and abs(b - frame) <= max_error]
        if distances:
            errors.append(min(distances))
        else:
            missed += 1
    return BoundaryErrors(errors, missed)


def settled_accuracy(labels: list[str], truth: list[str], window: int) -> float:
    """Labels from `window` - 1 frames after a change on, while the activity lasts."""
    judged = correct = 0
    since = 0
    for t in range(len(truth)):
        if t and truth[t] != truth[t - 1]:
            since = t
        if t - since >= window - 1:
            judged += 1
            correct += labels[t] == truth[t]
    return correct / judged if judged else float("nan")


def measure(config, segment_frames: int, frames: int, seed: int) -> dict:
    """Raw against smoothed on `frames` frames of the synthetic camera, with the trained bundle."""
    from pathlib import Path

    import torch

    from models import bundle
    from models.networks import FeatureExtractor
    from models.normalize import normalize_batch
    from models.presets import geometric
    from models.segments import activity_settings, segment_all
    from models.sequence_inputs import checkpoint_inputs, sequence_inputs
    from models.synthetic import SyntheticCamera
    from models.window import offline_window_probabilities

    cnn, lstm = bundle.load_cnn(Path(config.features.bundle)), bundle.load_lstm(Path(config.lstm.bundle))
    extractor, preset = FeatureExtractor(cnn.model).eval(), cnn.preset
    model, window, classes = lstm.model.eval(), lstm.window, lstm.classes
    camera = SyntheticCamera(seed=seed, segment_frames=segment_frames)
    images, truth = [], []
    for _ in range(frames):
        image, activity, _ = camera.next_frame()
        images.append(geometric(image, preset))
        truth.append(activity)
    features = []
    with torch.no_grad():
        for start in range(0, frames, 64):
            batch = torch.from_numpy(np.stack(images[start:start + 64]))
            features.append(extractor(normalize_batch(batch, preset)).float())
    inputs = sequence_inputs(torch.cat(features), checkpoint_inputs(lstm.metrics)).numpy()
    probabilities = offline_window_probabilities(model, inputs, window)
    labels = [classes[i] for i in probabilities.argmax(axis=1)]
    settings, source = activity_settings(config.activity, lstm.metrics)
    segments = segment_all(classes, range(frames), range(frames), probabilities,
                           ema_alpha=settings.ema_alpha, enter=settings.enter, leave=settings.leave,
                           min_frames=settings.min_frames)
    fps = config.capture.fps
    warm = window - 1  # the first labels see fewer frames than the model was trained on
    changes = [c for c in true_changes(truth) if c[0] > warm]
    raw = [(t, labels[t]) for t in raw_changes(labels) if t > warm]
    starts = [(s.start_seq, s.label) for s in segments]
    max_error = segment_frames // 2
    return {
        "segment_frames": segment_frames, "frames": frames, "true_changes": len(changes),
        "activity": settings, "activity_source": source,
        "settled_accuracy": settled_accuracy(labels, truth, window),
        "raw_changes_per_minute": changes_per_minute(len(raw), frames - warm, fps),
        "smoothed_changes_per_minute": changes_per_minute(max(0, len(starts) - 1), frames - warm, fps),
        "true_changes_per_minute": changes_per_minute(len(changes), frames - warm, fps),
        "raw_boundary": boundary_errors(changes, raw, max_error),
        "smoothed_boundary": boundary_errors(changes, starts, max_error),
    }


def main(argv: list[str] | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    from configs.settings import add_config_arguments, from_args
    from models.segments import describe

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_arguments(parser)
    parser.add_argument("--frames", type=int, default=1920, help="frames of the synthetic camera per length")
    parser.add_argument("--seed", type=int, default=7, help="the synthetic camera's seed")
    parser.add_argument("--lengths", type=int, nargs="+", default=[40, 80, 160], help="activity lengths, frames")
    args = parser.parse_args(argv)
    config = from_args(args)
    table = Table()
    for column in ("activity frames", "settled accuracy", "true changes/min", "raw changes/min",
                   "smoothed changes/min", "raw boundary error (mean/median, missed)",
                   "smoothed boundary error (mean/median, missed)"):
        table.add_column(column, justify="right")
    for length in args.lengths:
        result = measure(config, length, args.frames, args.seed)
        raw, smooth = result["raw_boundary"], result["smoothed_boundary"]
        table.add_row(str(length), f"{result['settled_accuracy']:.1%}", f"{result['true_changes_per_minute']:.1f}",
                      f"{result['raw_changes_per_minute']:.1f}", f"{result['smoothed_changes_per_minute']:.1f}",
                      f"{raw.mean:.1f} / {raw.median:.0f}, {raw.missed} of {result['true_changes']}",
                      f"{smooth.mean:.1f} / {smooth.median:.0f}, {smooth.missed} of {result['true_changes']}")
        table.title = (f"raw labels against segments ({describe(result['activity'])}: {result['activity_source']}; "
                       f"{config.capture.fps:g} frames/s)")
    Console().print(table)


if __name__ == "__main__":
    main()
