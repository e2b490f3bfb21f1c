"""Short real video files in the formats people bring, written by the tests themselves.

OpenCV's VideoWriter makes the MJPG AVIs; ffmpeg (installed by .ci/install-system-deps.sh) makes
H.264 MP4, MKV and an XviD AVI with an audio track. Each clip is a second or two of moving
shapes, so decoding and the pipeline stay cheap. `decodable_frames` counts what OpenCV really
decodes from a file, front to back: the number of frames a capture at full rate must label.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest


@dataclass(frozen=True)
class Clip:
    name: str  # also the stream name in the tests
    path: Path
    fps: float


def _frames(width: int, height: int, count: int):
    for index in range(count):
        image = np.full((height, width, 3), (40 + 7 * index) % 255, np.uint8)
        radius = max(4, min(width, height) // 8)
        x = radius + (index * 13) % max(1, width - 2 * radius)
        cv2.circle(image, (x, height // 2), radius, (0, 0, 255), -1)
        cv2.rectangle(image, (0, 0), (width // 4, height // 4), (255, (index * 20) % 255, 0), -1)
        yield image


def write_opencv(path: Path, fourcc: str, width: int, height: int, fps: float, count: int) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    assert writer.isOpened(), f"OpenCV cannot write {fourcc} to {path}"
    for image in _frames(width, height, count):
        writer.write(image)
    writer.release()
    return path


def write_ffmpeg(path: Path, width: int, height: int, fps: float, seconds: float, video_args: list[str],
                 audio: bool = False) -> Path:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.fail("ffmpeg is missing; run .ci/install-system-deps.sh (it installs it)")
    argv = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
            f"testsrc2=size={width}x{height}:rate={fps}:duration={seconds}"]
    if audio:
        argv += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", "-c:a", "libmp3lame", "-shortest"]
    subprocess.run(argv + video_args + [str(path)], check=True, timeout=60)
    return path


def truncate(path: Path, keep: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def decodable_frames(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


def format_clips(folder: Path) -> list[Clip]:
    """The formats users bring: every clip labelled at full rate (capture.fps >= the clip's fps)."""
    folder.mkdir(parents=True, exist_ok=True)
    corrupt = write_opencv(folder / "tail.avi", "MJPG", 320, 240, 15, 30)
    truncate(corrupt, keep=0.6)
    return [
        Clip("xvid_audio", write_ffmpeg(folder / "xvid_audio.avi", 320, 240, 15, 1.5,
                                        ["-c:v", "libxvid", "-vtag", "XVID", "-q:v", "5"], audio=True), 15),
        Clip("mjpg", write_opencv(folder / "mjpg.avi", "MJPG", 452, 256, 15, 20), 15),
        Clip("h264", write_ffmpeg(folder / "h264.mp4", 320, 240, 15, 1.5,
                                  ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]), 15),
        Clip("mkv", write_ffmpeg(folder / "clip.mkv", 320, 240, 15, 1.5,
                                 ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]), 15),
        Clip("full_hd", write_ffmpeg(folder / "full_hd.avi", 1920, 1080, 10, 1.0,
                                     ["-c:v", "mpeg4", "-q:v", "8"]), 10),
        Clip("one_second", write_opencv(folder / "one_second.avi", "MJPG", 320, 240, 15, 15), 15),
        Clip("corrupt_tail", corrupt, 15),
    ]
