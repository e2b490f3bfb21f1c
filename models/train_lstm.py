"""Stage 5, `run.py train-lstm` (the lecture's third notebook): the LSTM over feature windows.

SequenceLSTM on `sequence.window`-frame windows of the extracted 512-d features, sampled every
`sequence.window_stride` frames across each video, classifying from the last step; NLL loss, Adam.
A share (`sequence.augment_share`) of the training windows come from the clip replayed at a random
speed with random drops (models/temporal_augment.py), so a window stands for a span of time, not
a count of frames. The best epoch by validation window accuracy (groups carved out of the training
list, models/validation.py; plain windows plus, with augmentation, as many replayed ones drawn once)
is saved with `save_lstm` to <work_dir>/lstm.pt (curves lstm_curves.png, figures lstm_history.json)
and scored once on the test split's windows. The activity segments' thresholds are then chosen on
the validation clips joined into a stream (models/activity_tuning.py; printed and stored in the
checkpoint's metrics, `activity`). Then cnn.pt + lstm.pt are joined, with the capture
they were trained for (`capture_trained_for`), into <work_dir>/bundle.pt, whose model id is printed, and the bundle is copied to --bundle-out (by
default artifacts/bundle.pt, what the live workers load).
"""

from __future__ import annotations

import argparse
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from rich.console import Console
import numpy as np
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from configs.exit_codes import ExitCode
from configs.settings import DEFAULT_BUNDLE, Config, LstmRecipe, from_args
from models.stage_options import train_lstm as add_arguments  # noqa: F401 - run.py reads it
from models import bundle
from models.activity_tuning import tune_activity, tuned_sentence
from models.extract import feature_path, load_features
from models.files import write_atomically
from models.frames import FramesError, prepared_videos, read_manifest
from models.int8 import make_int8_if_available
from models.networks import SequenceLSTM
from models.sequence_inputs import check_kind, sequence_inputs
from models.synthetic_set import MARKER_FILE
from models.temporal_augment import replayed_window
from models.train_cnn import cnn_path
from models.training_loop import Precision, choose_device, fit, score_test_once
from models.training_report import EpochResult, TrainingReport
from models.validation import carve_validation


@dataclass
class VideoFeatures:
    key: str
    label: int
    features: torch.Tensor  # float32 [T, 512]: the LSTM's inputs (features or their differences)
    group: int = 0  # UCF101 group, for the validation split
    frames: torch.Tensor | None = None  # float32 [T, 512]: the CNN features the inputs were computed from


@dataclass
class TrainedLstm:
    checkpoint: Path
    bundle: Path
    model_id: str
    best: EpochResult | None
    seconds: float
    test_window_accuracy: float  # of the best epoch by validation, scored once at the end


def lstm_path(work_dir: Path) -> Path:
    return Path(work_dir) / "lstm.pt"


def bundle_path(work_dir: Path) -> Path:
    return Path(work_dir) / "bundle.pt"


def load_split_features(work_dir: Path, split: str, inputs: str = "features") -> tuple[list[str], list[VideoFeatures]]:
    """The prepared classes and every video's LSTM inputs of one split (extract must have run)."""
    classes, videos = prepared_videos(work_dir, split)
    labels = {name: index for index, name in enumerate(classes)}
    loaded = []
    for video in videos:
        path = feature_path(work_dir, video.key)
        if not path.is_file():
            raise FramesError(f"features {path} are missing: run `python run.py extract` first")
        features = load_features(path)
        loaded.append(VideoFeatures(video.key, labels[video.class_name], sequence_inputs(features, inputs),
                                    video.group, features))
    return classes, loaded


def window_starts(length: int, window: int, stride: int) -> range:
    """First frames of the full windows of one video (none when the video is shorter than a window)."""
    return range(0, length - window + 1, max(1, stride))


class WindowDataset(Dataset):
    """(features [window, 512], label) for every full window, `stride` frames apart, of every video."""

    def __init__(self, videos: list[VideoFeatures], window: int, stride: int):
        self.window = window
        self.videos = videos
        self.items = [(v, start) for v, video in enumerate(videos)
                      for start in window_starts(len(video.features), window, stride)]
        self.too_short = sum(1 for video in videos if len(video.features) < window)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        v, start = self.items[index]
        video = self.videos[v]
        return video.features[start:start + self.window], video.label


class ReplayedWindowDataset(WindowDataset):
    """WindowDataset whose windows are, with probability `share`, taken from the clip replayed at a
    random speed with random drops (models/temporal_augment.py); the inputs are computed after replaying."""

    def __init__(self, videos: list[VideoFeatures], window: int, stride: int, inputs: str, recipe: LstmRecipe,
                 share: float, seed: int):
        super().__init__(videos, window, stride)
        self.inputs, self.recipe, self.share = inputs, recipe, share
        self.rng = np.random.default_rng(seed)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if self.share > 0 and self.rng.random() < self.share:
            v, _ = self.items[index]
            video = self.videos[v]
            replayed = replayed_window(video.frames, self.window, self.rng, min_speed=self.recipe.augment_min_speed,
                                       max_speed=self.recipe.augment_max_speed,
                                       drop_rate=self.recipe.augment_drop_rate)
            if replayed is not None:
                return sequence_inputs(replayed, self.inputs)[-self.window:], video.label
        return super().__getitem__(index)


def validation_windows(videos: list[VideoFeatures], recipe: LstmRecipe, inputs: str) -> Dataset:
    """Every plain validation window and, when training replays clips, as many replayed ones, drawn once
    (the same windows every epoch), so the epoch chosen is the one that holds at other speeds too."""
    plain = WindowDataset(videos, recipe.window, recipe.window_stride)
    if recipe.augment_share <= 0:
        return plain
    replayed = ReplayedWindowDataset(videos, recipe.window, recipe.window_stride, inputs, recipe, share=1.0,
                                     seed=recipe.seed + 1)
    return ConcatDataset([plain, [replayed[i] for i in range(len(replayed))]])


def capture_trained_for(config: Config) -> bundle.TrainedCapture:
    """What a live capture should do for this model: the CNN's crop, the rate the training frames
    were taken at and, for the synthetic set, its clip length (the length of one live activity)."""
    work_dir = Path(config.data.work_dir)
    cnn = bundle.trained_capture(cnn_path(work_dir))
    manifest = read_manifest(work_dir)
    videos = list(manifest["videos"].values())
    # every frame is kept from a video slower than frames_per_second (0: every frame of every video)
    rates = [float(rate) for rate in [manifest.get("frames_per_second")] + [v.get("source_fps") for v in videos]
             if rate and float(rate) > 0]
    fps = min(rates) if rates else None
    segment = None
    if (Path(config.data.ucf_root) / MARKER_FILE).is_file():
        lengths = sorted(int(v["frames"]) for v in videos if int(v["frames"]) > 0)
        segment = lengths[len(lengths) // 2] if lengths else None
    return bundle.TrainedCapture(crop=cnn.crop, resize=cnn.resize, fps=fps, synthetic_segment_frames=segment)


def channel_dropout(sequences: torch.Tensor, rate: float) -> torch.Tensor:
    """Training-time regulariser: zero a random `rate` of each window's input channels at every step."""
    keep = torch.rand(sequences.shape[0], 1, sequences.shape[2], device=sequences.device) >= rate
    return sequences * keep / (1.0 - rate)


def train_lstm(config: Config, bundle_out: Path | None = Path(DEFAULT_BUNDLE), console: Console | None = None,
               progress: bool = True) -> TrainedLstm:
    console = console or Console()
    started = time.perf_counter()
    recipe, work_dir = config.sequence, Path(config.data.work_dir)
    inputs = check_kind(recipe.inputs)
    classes, train_videos = load_split_features(work_dir, "train", inputs)
    train_videos, validation_videos = carve_validation(train_videos, config.data.validation_fraction)
    _, test_videos = load_split_features(work_dir, "test", inputs)
    train_set = ReplayedWindowDataset(train_videos, recipe.window, recipe.window_stride, inputs, recipe,
                                      share=recipe.augment_share, seed=recipe.seed)
    validation_set = validation_windows(validation_videos, recipe, inputs)
    test_set = WindowDataset(test_videos, recipe.window, recipe.window_stride)
    if len(train_set) == 0 or len(validation_set) == 0 or len(test_set) == 0:
        raise FramesError(f"no {recipe.window}-frame windows in one of the train, validation and test splits: "
                          f"their videos are shorter than sequence.window; lower it or prepare more frames per second")
    skipped = train_set.too_short + test_set.too_short + sum(1 for v in validation_videos if len(v.features) < recipe.window)
    torch.manual_seed(recipe.seed)
    model = SequenceLSTM(len(classes), hidden=recipe.hidden, layers=recipe.layers, dropout=recipe.dropout)
    device = choose_device()
    # bfloat16 buys nothing for a small LSTM on the CPU; AMP helps on CUDA.
    precision = Precision.choose(device, config.cnn.mixed_precision and device.type == "cuda")
    generator = torch.Generator().manual_seed(recipe.seed)
    train_loader = DataLoader(train_set, batch_size=recipe.batch_size, shuffle=True, generator=generator,
                              pin_memory=device.type == "cuda")
    validation_loader = DataLoader(validation_set, batch_size=max(recipe.batch_size, 256), shuffle=False,
                                   pin_memory=device.type == "cuda")
    test_loader = DataLoader(test_set, batch_size=max(recipe.batch_size, 256), shuffle=False,
                             pin_memory=device.type == "cuda")
    replaying = (f"; {100 * recipe.augment_share:.0f}% of training windows replayed at speed "
                 f"{recipe.augment_min_speed:g}-{recipe.augment_max_speed:g}x with up to "
                 f"{100 * recipe.augment_drop_rate:.0f}% drops" if recipe.augment_share > 0 else "")
    console.print(f"train-lstm: {len(classes)} classes, {len(train_set)} train, {len(validation_set)} validation "
                  f"({len(validation_videos)} videos) and {len(test_set)} test windows of "
                  f"{recipe.window} frames (stride {recipe.window_stride})" + replaying
                  + (f", {skipped} videos shorter than a window left out" if skipped else "")
                  + f"; LSTM on {inputs}, hidden {recipe.hidden} x {recipe.layers} layers, {recipe.epochs} epochs, "
                  f"batch {recipe.batch_size}, lr {recipe.lr:g}, on {device.type}")

    def to_device(batch, target):
        sequences, labels = batch
        sequences = sequences.to(target, non_blocking=True)
        if model.training and recipe.input_dropout > 0:
            sequences = channel_dropout(sequences, recipe.input_dropout)
        return sequences, labels.to(target, non_blocking=True)

    checkpoint = lstm_path(work_dir)

    def save(result: EpochResult, extra: dict | None = None) -> None:
        bundle.save_lstm(checkpoint, model, classes, recipe.window,
                         metrics={"inputs": inputs, "epoch": result.epoch, "validation_loss": result.validation_loss,
                                  "validation_window_accuracy": result.validation_accuracy,
                                  "train_accuracy": result.train_accuracy, **(extra or {})})

    report = TrainingReport("train-lstm", recipe.epochs, console, work_dir / "lstm_curves.png",
                            work_dir / "lstm_history.json")
    best = fit(model, train_loader, validation_loader, to_device, epochs=recipe.epochs, lr=recipe.lr, device=device,
               precision=precision, report=report, on_best=save, progress=progress)
    test = score_test_once(model, test_loader, to_device, device, precision, "train-lstm", "window", console)
    test = {"test_loss": test["test_loss"], "test_window_accuracy": test["test_accuracy"]}
    tuned, configured = tune_activity(model, recipe.window, inputs, classes, validation_videos, config.activity,
                                      seed=recipe.seed)
    console.print(f"train-lstm: {tuned_sentence(tuned, configured)}", soft_wrap=True)
    test["activity"] = {**asdict(tuned.settings), "score": tuned.score, "configured_score": configured.score}
    if best is not None:
        save(best, test)
    seconds = time.perf_counter() - started
    report.finish({"seconds": seconds, "classes": classes, **test})

    joined = bundle_path(work_dir)
    model_id = bundle.save_bundle(joined, cnn_path(work_dir), checkpoint, capture_trained_for(config))
    console.print(f"train-lstm: bundle {joined} ({seconds:.0f} s in all)")
    console.print(f"model id [bold]{model_id}[/bold]", soft_wrap=True)
    if bundle_out is not None and Path(bundle_out).resolve() != joined.resolve():
        _copy_atomically(joined, Path(bundle_out))
        console.print(f"train-lstm: copied the bundle to {bundle_out} (what the live workers load)")
    return TrainedLstm(checkpoint, joined, model_id, best, seconds, test["test_window_accuracy"])


def _copy_atomically(source: Path, target: Path) -> None:
    write_atomically(target, lambda temporary: shutil.copyfile(source, temporary))


def main(args: argparse.Namespace) -> int:
    console = Console()
    config = from_args(args)
    trained = train_lstm(config, args.bundle_out, console)
    make_int8_if_available(config, args.bundle_out or trained.bundle, console)
    return ExitCode.OK
