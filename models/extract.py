"""Stage 4, `run.py extract` (the lecture's second notebook): 512-d features for every frame.

The trained CNN minus its last layer (`FeatureExtractor`, what the live feature worker runs), the
same preset, batched; one float32 [T, 512] tensor file per video:

    <work_dir>/features/<split>/<Class>/<video_stem>.pt
    <work_dir>/features/source.json   the sha256 of the cnn.pt the features came from

Videos already done are skipped, unless cnn.pt changed since (then everything is extracted again,
and the log says so): features from an old CNN would not match the one in the bundle.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch.utils.data import DataLoader

from configs.exit_codes import ExitCode
from configs.settings import Config, from_args
from models.stage_options import extract as add_arguments  # noqa: F401 - run.py reads it
from models import bundle
from models.files import write_atomically
from models.frames import FramesError, PreparedVideo, VideoDataset, prepared_videos
from models.networks import FEATURE_DIM, FeatureExtractor
from models.normalize import normalize_batch
from models.presets import Preset
from models.train_cnn import cnn_path
from models.training_loop import Precision, choose_device


@dataclass
class ExtractResult:
    written: int
    skipped: int
    seconds: float
    frames: int  # frames run through the CNN this time


def features_dir(work_dir: Path) -> Path:
    return Path(work_dir) / "features"


def feature_path(work_dir: Path, video_key: str) -> Path:
    return features_dir(work_dir) / f"{video_key}.pt"


def load_features(path: Path) -> torch.Tensor:
    features = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(features, torch.Tensor) or features.ndim != 2 or features.shape[1] != FEATURE_DIM:
        raise FramesError(f"{path} is not a [T, {FEATURE_DIM}] feature tensor; delete it and run extract again")
    return features


@torch.no_grad()
def video_features(extractor: FeatureExtractor, frames: torch.Tensor, preset: Preset, device: torch.device,
                   precision: Precision, batch_size: int) -> torch.Tensor:
    """uint8 RGB [T, crop, crop, 3] -> float32 [T, 512], in batches."""
    parts = []
    for start in range(0, len(frames), batch_size):
        images = normalize_batch(frames[start:start + batch_size].to(device, non_blocking=True), preset)
        with precision.autocast():
            parts.append(extractor(images).float().cpu())
    return torch.cat(parts)


def extract(config: Config, console: Console | None = None, progress: bool = True) -> ExtractResult:
    console = console or Console()
    started = time.perf_counter()
    work_dir = Path(config.data.work_dir)
    checkpoint_file = cnn_path(work_dir)
    checkpoint = bundle.load_cnn(checkpoint_file)
    classes, train_videos = prepared_videos(work_dir, "train")
    _, test_videos = prepared_videos(work_dir, "test")
    if classes != checkpoint.classes:
        raise FramesError(f"{checkpoint_file} was trained on {checkpoint.classes}, the prepared frames are "
                          f"{classes}: run train-cnn again")
    _forget_stale_features(work_dir, _sha256(checkpoint_file), console)
    device = choose_device()
    precision = Precision.choose(device, config.cnn.mixed_precision)
    extractor = FeatureExtractor(checkpoint.model.to(memory_format=torch.channels_last)).to(device).eval()
    videos = train_videos + test_videos
    todo = [video for video in videos if not feature_path(work_dir, video.key).is_file()]
    console.print(f"extract: {len(todo)} of {len(videos)} videos to do with {checkpoint_file} "
                  f"(preset {checkpoint.preset.resize}/{checkpoint.preset.crop}) on {device.type}, "
                  f"{precision.describe()}")
    # Videos are decoded in loader workers while the CNN runs; one video per item.
    loader = DataLoader(VideoDataset(todo, checkpoint.preset), batch_size=None, shuffle=False,
                        num_workers=config.cnn.workers, pin_memory=device.type == "cuda")
    frames_done = 0
    columns = (TextColumn("[bold]extract"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=console, disable=not progress) as bar:
        task = bar.add_task("videos", total=len(todo))
        for index, frames in loader:
            video: PreparedVideo = todo[index]
            features = video_features(extractor, frames, checkpoint.preset, device, precision,
                                      config.cnn.batch_size)
            _save_tensor(feature_path(work_dir, video.key), features)
            frames_done += len(frames)
            bar.advance(task)
    seconds = time.perf_counter() - started
    console.print(f"extract: {len(todo)} videos ({frames_done} frames) in {seconds:.1f} s, "
                  f"{len(videos) - len(todo)} already done; features in {features_dir(work_dir)}")
    return ExtractResult(written=len(todo), skipped=len(videos) - len(todo), seconds=seconds, frames=frames_done)


def _forget_stale_features(work_dir: Path, cnn_digest: str, console: Console) -> None:
    """Features from another cnn.pt are removed, so they are all extracted again with this one."""
    folder = features_dir(work_dir)
    source = folder / "source.json"
    if source.is_file():
        recorded = json.loads(source.read_text()).get("cnn_sha256")
        if recorded == cnn_digest:
            return
        console.print(f"extract: {cnn_path(work_dir)} changed since the features were made; extracting all again")
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    source.write_text(json.dumps({"cnn_sha256": cnn_digest}) + "\n")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _save_tensor(path: Path, tensor: torch.Tensor) -> None:
    write_atomically(path, lambda temporary: torch.save(tensor.contiguous(), temporary))


def main(args: argparse.Namespace) -> int:
    console = Console()
    extract(from_args(args), console)
    return ExitCode.OK
