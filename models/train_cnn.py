"""Stage 3, `run.py train-cnn` (the lecture's first notebook): fine-tune the per-frame ResNet-18.

FrameCNN (ResNet-18, last layer 512 -> classes) trained on single frames with NLL loss on its
log-softmax and Adam; ImageNet start with cnn.weights = "imagenet" (file must be on this machine,
see models/pretrained.py), from scratch with "none". The best epoch by validation accuracy (groups
carved out of the training list, models/validation.py) is saved with `models.bundle.save_cnn` to
<work_dir>/cnn.pt, then scored once on the test split; curves go to cnn_curves.png, figures to
cnn_history.json.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from torch.utils.data import DataLoader, RandomSampler

from configs.exit_codes import ExitCode
from configs.settings import Config, from_args, replace
from models.stage_options import WEIGHT_CHOICES, train_cnn as add_arguments  # noqa: F401 - run.py reads it
from models import bundle
from models.frames import FrameDataset, FramesError, prepared_videos
from models.networks import FrameCNN
from models.normalize import normalize_batch
from models.presets import Preset
from models.pretrained import imagenet_resnet18
from models.training_loop import Precision, choose_device, fit, score_test_once
from models.training_report import EpochResult, TrainingReport
from models.validation import carve_validation

@dataclass
class TrainedCnn:
    checkpoint: Path
    best: EpochResult | None
    seconds: float
    test_accuracy: float  # of the best epoch by validation, scored once at the end


def cnn_path(work_dir: Path) -> Path:
    return Path(work_dir) / "cnn.pt"


def build_cnn(num_classes: int, weights: str, weights_url: str = "") -> FrameCNN:
    """FrameCNN from ImageNet weights ("imagenet": downloaded when missing and the network allows; raises
    ImageNetWeightsMissing otherwise) or random init ("none")."""
    if weights == "imagenet":
        return FrameCNN(num_classes, backbone=imagenet_resnet18(download=True, url=weights_url))
    if weights == "none":
        return FrameCNN(num_classes)
    raise ValueError(f"cnn.weights must be one of {', '.join(WEIGHT_CHOICES)}, got {weights!r}")


def training_classes(config: Config, manifest_classes: list[str]) -> list[str]:
    """The prepared classes; a different data.classes means prepare must run again."""
    if config.data.classes and sorted(config.data.classes) != sorted(manifest_classes):
        raise FramesError(f"data.classes {list(config.data.classes)} differ from the prepared classes "
                          f"{manifest_classes}: run `python run.py prepare` with this config first")
    return manifest_classes


def train_cnn(config: Config, console: Console | None = None, progress: bool = True) -> TrainedCnn:
    console = console or Console()
    started = time.perf_counter()
    recipe, work_dir = config.cnn, Path(config.data.work_dir)
    classes, train_videos = prepared_videos(work_dir, "train")
    train_videos, validation_videos = carve_validation(train_videos, config.data.validation_fraction)
    _, test_videos = prepared_videos(work_dir, "test")
    classes = training_classes(config, classes)
    preset = Preset(resize=config.data.resize, crop=config.data.crop)
    torch.manual_seed(recipe.seed)
    model = build_cnn(len(classes), recipe.weights, recipe.weights_url).to(memory_format=torch.channels_last)
    device = choose_device()
    precision = Precision.choose(device, recipe.mixed_precision)

    train_set = FrameDataset(train_videos, classes, preset)
    validation_set = FrameDataset(validation_videos, classes, preset, frame_stride=recipe.test_frame_stride)
    test_set = FrameDataset(test_videos, classes, preset, frame_stride=recipe.test_frame_stride)
    generator = torch.Generator().manual_seed(recipe.seed)
    sampler = RandomSampler(train_set, num_samples=recipe.frames_per_epoch or None, generator=generator)
    loader_options = dict(batch_size=recipe.batch_size, num_workers=recipe.workers,
                          pin_memory=device.type == "cuda", persistent_workers=recipe.workers > 0)
    train_loader = DataLoader(train_set, sampler=sampler, **loader_options)
    validation_loader = DataLoader(validation_set, shuffle=False, **loader_options)
    test_loader = DataLoader(test_set, shuffle=False, **loader_options)
    console.print(f"train-cnn: {len(classes)} classes, {len(train_set)} train frames "
                  f"({len(sampler)} per epoch), {len(validation_set)} validation frames "
                  f"({len(validation_videos)} videos), {len(test_set)} test frames, weights {recipe.weights}, "
                  f"preset {preset.resize}/{preset.crop}, {recipe.epochs} epochs, batch {recipe.batch_size}, "
                  f"lr {recipe.lr:g}, on {device.type} with {precision.describe()}")

    def to_device(batch, target):
        images, labels = batch
        images = normalize_batch(images.to(target, non_blocking=True), preset)
        return images, labels.to(target, non_blocking=True)

    checkpoint = cnn_path(work_dir)

    def save(result: EpochResult, test: dict | None = None) -> None:
        bundle.save_cnn(checkpoint, model, classes, preset,
                        metrics={"epoch": result.epoch, "validation_accuracy": result.validation_accuracy,
                                 "validation_loss": result.validation_loss, "train_accuracy": result.train_accuracy,
                                 "weights": recipe.weights, "frames_per_second": recipe.frames_per_second,
                                 **(test or {})})

    report = TrainingReport("train-cnn", recipe.epochs, console, work_dir / "cnn_curves.png",
                            work_dir / "cnn_history.json")
    best = fit(model, train_loader, validation_loader, to_device, epochs=recipe.epochs, lr=recipe.lr, device=device,
               precision=precision, report=report, on_best=save, progress=progress)
    test = score_test_once(model, test_loader, to_device, device, precision, "train-cnn", "frame", console)
    if best is not None:
        save(best, test)
    seconds = time.perf_counter() - started
    report.finish({"seconds": seconds, "classes": classes, "weights": recipe.weights, **test})
    console.print(f"train-cnn: saved the best epoch to {checkpoint} ({seconds:.0f} s in all)")
    return TrainedCnn(checkpoint, best, seconds, test["test_accuracy"])


def main(args: argparse.Namespace) -> int:
    console = Console()
    config = from_args(args)
    if args.weights:
        config = replace(config, "cnn", weights=args.weights)
    train_cnn(config, console)
    return ExitCode.OK
