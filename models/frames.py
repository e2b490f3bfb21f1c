"""Prepared frames on disk and the datasets that read them.

    <work_dir>/frames/manifest.json                       written by `prepare`
    <work_dir>/frames/<split>/<Class>/<video_stem>/000001.jpg ...

Frames are stored as decoded from the video (source size, BGR JPEG); the preset's `geometric`
runs when they are loaded, and `normalize_batch` runs on the training device: exactly the two
functions the live workers use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from configs.settings import ActionableError
from models.presets import Preset, geometric

MANIFEST_FORMAT = "frames-manifest/1"


class FramesError(ActionableError, FileNotFoundError):
    """Prepared frames missing or not matching the configuration; the message says what to run."""


@dataclass(frozen=True)
class PreparedVideo:
    key: str  # "<split>/<Class>/<stem>"
    class_name: str
    split: str
    frames: int
    directory: Path
    group: int = 0  # UCF101 group (actor/setting); 0 when unknown


def frames_dir(work_dir: Path) -> Path:
    return Path(work_dir) / "frames"


def manifest_path(work_dir: Path) -> Path:
    return frames_dir(work_dir) / "manifest.json"


def frame_name(index: int) -> str:
    """1-based file name of a frame, as the lecture stores them: 000001.jpg."""
    return f"{index:06d}.jpg"


def read_manifest(work_dir: Path) -> dict:
    path = manifest_path(work_dir)
    if not path.is_file():
        raise FramesError(f"{path} is missing: run `python run.py prepare` with the same config first")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != MANIFEST_FORMAT:
        raise FramesError(f"{path} is not a {MANIFEST_FORMAT} manifest; "
                          f"delete {frames_dir(work_dir)} and prepare again")
    return manifest


def prepared_videos(work_dir: Path, split: str) -> tuple[list[str], list[PreparedVideo]]:
    """The manifest's classes and its finished videos of one split (classes in that list only)."""
    manifest = read_manifest(work_dir)
    classes = list(manifest["classes"])
    root = frames_dir(work_dir)
    videos = [PreparedVideo(key=key, class_name=entry["class"], split=entry["split"], frames=int(entry["frames"]),
                            directory=root / key, group=int(entry.get("group") or 0))
              for key, entry in sorted(manifest["videos"].items())
              if entry["split"] == split and entry["class"] in classes and int(entry["frames"]) > 0]
    if not videos:
        raise FramesError(f"no prepared {split} videos in {manifest_path(work_dir)}: run `python run.py prepare`")
    return classes, videos


def load_frame(path: Path, preset: Preset) -> np.ndarray:
    """One stored frame -> the preset's uint8 RGB [crop, crop, 3]."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FramesError(f"frame {path} cannot be read; delete its video folder and run prepare again")
    return geometric(image, preset)


def load_video_frames(video: PreparedVideo, preset: Preset) -> np.ndarray:
    """Every frame of a prepared video -> uint8 RGB [T, crop, crop, 3]."""
    return np.stack([load_frame(video.directory / frame_name(i), preset) for i in range(1, video.frames + 1)])


class FrameDataset(Dataset):
    """Single frames with their class label: (uint8 RGB tensor [crop, crop, 3], label)."""

    def __init__(self, videos: list[PreparedVideo], classes: list[str], preset: Preset, frame_stride: int = 1):
        labels = {name: index for index, name in enumerate(classes)}
        self.preset = preset
        self.items = [(video.directory / frame_name(i), labels[video.class_name])
                      for video in videos for i in range(1, video.frames + 1, frame_stride)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.items[index]
        return torch.from_numpy(load_frame(path, self.preset)), label


class VideoDataset(Dataset):
    """Whole prepared videos, for feature extraction: (index, uint8 [T, crop, crop, 3])."""

    def __init__(self, videos: list[PreparedVideo], preset: Preset):
        self.videos, self.preset = videos, preset

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor]:
        return index, torch.from_numpy(load_video_frames(self.videos[index], self.preset))
