"""Choosing on validation, never on test: the carved-out groups, the epoch, the activity thresholds."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from configs.settings import Activity
from models.activity_tuning import score, tune_activity
from models.training_loop import Precision, evaluate_loader, fit, score_test_once
from models.training_report import TrainingReport
from models.validation import ValidationSplitError, carve_validation, validation_groups


@dataclass(frozen=True)
class Clip:
    name: str
    group: int


def test_validation_takes_the_highest_training_groups_and_leaves_training_some():
    assert validation_groups(range(8, 26), 0.15) == {23, 24, 25}  # UCF101 split 1: train groups 8-25
    assert validation_groups([4, 5, 6, 7, 8, 9, 10], 0.15) == {10}  # the synthetic set's 7 training groups
    assert validation_groups([4, 7], 0.15) == {7}  # at least one
    assert validation_groups([4, 7], 0.9) == {7}  # and at least one left to train on
    with pytest.raises(ValidationSplitError, match="at least 2"):
        validation_groups([5, 5, 5], 0.15)
    with pytest.raises(ValidationSplitError, match="validation_fraction"):
        validation_groups([1, 2, 3], 0.0)


def test_carved_validation_is_disjoint_from_train_and_never_touches_test():
    train_list = [Clip(f"c{group}_{k}", group) for group in range(4, 11) for k in range(3)]
    test_list = [Clip(f"t{group}", group) for group in range(1, 4)]
    train, validation = carve_validation(train_list, 0.3)
    assert {c.group for c in validation} == {9, 10}
    assert not {c.group for c in train} & {c.group for c in validation}
    assert not {c.group for c in test_list} & {c.group for c in validation}
    assert sorted(train + validation, key=lambda c: c.name) == sorted(train_list, key=lambda c: c.name)


def loader(x: torch.Tensor, y: torch.Tensor) -> DataLoader:
    return DataLoader(TensorDataset(x, y), batch_size=len(x))


def test_the_epoch_is_chosen_by_validation_where_test_disagrees(tmp_path: Path):
    """Validation and test carry opposite labels for the same points: whatever the training does, the
    epoch validation likes most is the one test likes least, so picking by test would pick another one."""
    torch.manual_seed(0)
    x = torch.cat([torch.randn(64, 2) + 2, torch.randn(64, 2) - 2])
    y = torch.cat([torch.zeros(64), torch.ones(64)]).long()
    model = nn.Sequential(nn.Linear(2, 2), nn.LogSoftmax(dim=1))
    with torch.no_grad():  # start out wrong, so accuracy changes over the epochs
        model[0].weight.copy_(torch.tensor([[-1.0, -1.0], [1.0, 1.0]]))
        model[0].bias.zero_()
    output = Console(file=io.StringIO(), width=200)
    report = TrainingReport("toy", 6, output, tmp_path / "c.png", tmp_path / "h.json")
    device = torch.device("cpu")
    precision = Precision(device, None)
    saved = []
    best = fit(model, DataLoader(TensorDataset(x, y), batch_size=16, shuffle=False), loader(x, y),
               lambda batch, target: batch, epochs=6, lr=0.05, device=device, precision=precision, report=report,
               on_best=lambda result: saved.append(result.epoch), progress=False)
    accuracies = [r.validation_accuracy for r in report.results]
    assert len(set(accuracies)) > 1
    assert best.validation_accuracy == max(accuracies) and saved[-1] == best.epoch
    # the model holds the chosen epoch's weights again: its validation figures are that epoch's
    assert evaluate_loader(model, loader(x, y), lambda b, t: b, device, precision)[1] == best.validation_accuracy
    test = score_test_once(model, loader(x, 1 - y), lambda b, t: b, device, precision, "toy", "point", output)
    assert test["test_accuracy"] == pytest.approx(1 - best.validation_accuracy)
    best_by_test = max(1 - a for a in accuracies)
    assert test["test_accuracy"] < best_by_test  # the test figure is not the best test figure of any epoch
    assert "scored once" in output.file.getvalue()


def one_hot(labels, classes: int, confidence: float = 0.9) -> np.ndarray:
    rows = np.full((len(labels), classes), (1 - confidence) / (classes - 1))
    rows[np.arange(len(labels)), labels] = confidence
    return rows


def test_the_score_rewards_covering_the_right_activity_and_punishes_flicker():
    truth = np.repeat([0, 1, 2, 0], 50)
    steady = score(["a", "b", "c"], one_hot(truth, 3), truth, Activity(0.5, 0.6, 0.4, 4))
    assert steady.frame_accuracy > 0.95 and steady.segments_per_activity == 1.0
    flicker = truth.copy()
    flicker[10::12] = 1 - np.minimum(flicker[10::12], 1)  # a wrong frame every 12
    jumpy = score(["a", "b", "c"], one_hot(flicker, 3, 0.99), truth, Activity(1.0, 0.6, 0.4, 1))
    calm = score(["a", "b", "c"], one_hot(flicker, 3, 0.99), truth, Activity(0.25, 0.6, 0.4, 8))
    assert jumpy.segments_per_activity > 2 and calm.score > jumpy.score


class Replay(nn.Module):
    """A stand-in sequence model: the label is the sign of the summed input of the window's channel 0."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        total = windows[:, :, 0].sum(dim=1)
        return torch.log_softmax(torch.stack([-total, total], dim=1) * 4, dim=1)


@dataclass
class Video:
    label: int
    frames: torch.Tensor


def test_tuning_picks_settings_at_least_as_good_as_the_configured_ones():
    rng = np.random.default_rng(0)
    videos = []
    for k in range(12):
        label = k % 2
        trend = torch.linspace(0, 1, 40) * (1 if label else -1)
        frames = torch.from_numpy(rng.normal(0, 0.05, (40, 3)).astype(np.float32))
        frames[:, 0] += trend
        videos.append(Video(label, frames))
    configured = Activity(ema_alpha=1.0, enter=0.5, leave=0.45, min_frames=1)
    best, current = tune_activity(Replay(), 8, "differences", ["down", "up"], videos, configured)
    assert best.score >= current.score and best.frame_accuracy > 0.6
    assert best.settings != configured and best.frames == current.frames


def test_the_tuning_sentence_names_both_settings():
    from models.activity_tuning import TunedActivity, tuned_sentence

    best = TunedActivity(Activity(0.1, 0.7, 0.3, 12), 0.71, 0.71, 1.0, 4727, 45)
    configured = TunedActivity(Activity(0.25, 0.6, 0.4, 8), 0.64, 0.78, 1.22, 4727, 45)
    output = Console(file=io.StringIO(), width=400)
    output.print(tuned_sentence(best, configured), soft_wrap=True)
    printed = output.file.getvalue()
    assert "ema_alpha=0.1, enter=0.7, leave=0.3, min_frames=12: score 0.710" in printed
    assert "activity.* settings ema_alpha=0.25, enter=0.6, leave=0.4, min_frames=8: score 0.640" in printed
