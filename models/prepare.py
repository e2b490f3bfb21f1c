"""Stage 2, `run.py prepare`: UCF101-layout videos -> JPEG frames per split, with a manifest.

    <work_dir>/frames/<split>/<Class>/<video_stem>/000001.jpg ...
    <work_dir>/frames/manifest.json   per video: class, split, frame count, source path, fps

Frames are taken at cnn.frames_per_second (every frame when the video is slower) and stored at
source size; the preset is applied when they are loaded. Each video is written to a temporary
folder and renamed when complete, so running again skips finished videos and redoes half-written
ones. A video that cannot be opened or decoded is reported by name and skipped, never fatal.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from configs.exit_codes import ExitCode
from configs.settings import Config, add_config_arguments, from_args
from models import ucf101
from models.files import write_json_atomically
from models.frames import MANIFEST_FORMAT, frame_name, frames_dir, manifest_path

JPEG_QUALITY = 95
MANIFEST_EVERY_S = 5.0  # how often a long run saves the manifest


class VideoUnreadable(RuntimeError):
    """A video OpenCV cannot open or decode."""


@dataclass
class PrepareResult:
    classes: list[str]
    written: list[str] = field(default_factory=list)  # keys extracted this run
    skipped: list[str] = field(default_factory=list)  # keys already finished
    failed: dict[str, str] = field(default_factory=dict)  # source path -> reason
    seconds: float = 0.0


class FrameSampler:
    """Keeps frame i when its time i/source_fps reaches the next slot k/wanted_fps."""

    def __init__(self, source_fps: float, wanted_fps: float):
        self.every_frame = not source_fps or source_fps <= 0 or wanted_fps <= 0 or source_fps <= wanted_fps
        self.source_fps, self.wanted_fps, self.taken = source_fps, wanted_fps, 0

    def keep(self, index: int) -> bool:
        if self.every_frame:
            return True
        if index * self.wanted_fps + 1e-6 >= self.taken * self.source_fps:
            self.taken += 1
            return True
        return False


def extract_video(source: Path, target: Path, wanted_fps: float) -> tuple[int, float]:
    """Write the sampled frames of one video into `target` (replaced atomically); (frames, source fps)."""
    capture = cv2.VideoCapture(str(source))
    partial = target.with_name(target.name + ".partial")
    try:
        if not capture.isOpened():
            raise VideoUnreadable("OpenCV cannot open it (missing, corrupt or an unsupported codec)")
        source_fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        sampler = FrameSampler(source_fps, wanted_fps)
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        written, index = 0, 0
        while True:
            ok, frame = capture.read()
            if not ok or frame is None:
                break
            if sampler.keep(index):
                written += 1
                if not cv2.imwrite(str(partial / frame_name(written)), frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
                    raise OSError(f"cannot write {partial / frame_name(written)}")
            index += 1
        if written == 0:
            raise VideoUnreadable("no frame could be decoded")
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
        return written, source_fps
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    finally:
        capture.release()


def prepare(config: Config, console: Console | None = None, progress: bool = True) -> PrepareResult:
    console = console or Console()
    started = time.perf_counter()
    data, fps = config.data, config.cnn.frames_per_second
    split = ucf101.read_split(Path(data.ucf_root), data.split, data.classes)
    root = frames_dir(Path(data.work_dir))
    old = _read_old_manifest(manifest_path(Path(data.work_dir)))
    manifest = {"format": MANIFEST_FORMAT, "ucf_root": str(data.ucf_root), "split": split.number,
                "classes": split.classes, "frames_per_second": fps, "videos": {}, "failed": {}}
    result = PrepareResult(classes=split.classes)
    for video in split.videos():
        entry = old.get(video.key)
        if _finished(entry, video, root / video.key, fps):
            manifest["videos"][video.key] = entry
            result.skipped.append(video.key)
    todo = [video for video in split.videos() if video.key not in manifest["videos"]]
    console.print(f"prepare: {len(split.train)} train and {len(split.test)} test videos of {len(split.classes)} "
                  f"classes ({', '.join(split.classes)}) from {data.ucf_root}, split {split.number}, "
                  f"{fps:g} frames/s -> {root}; {len(result.skipped)} already done")
    columns = (TextColumn("[bold]prepare"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[video]}"))
    saved = time.monotonic()
    with Progress(*columns, console=console, disable=not progress) as bar:
        task = bar.add_task("videos", total=len(todo), video="")
        for video in todo:
            bar.update(task, video=video.stem)
            try:
                manifest["videos"][video.key] = _extract_entry(video, root / video.key, fps)
                result.written.append(video.key)
            except (VideoUnreadable, OSError, cv2.error) as error:
                reason = str(error) if isinstance(error, VideoUnreadable) else f"{type(error).__name__}: {error}"
                manifest["failed"][str(video.path)] = result.failed[str(video.path)] = reason
                bar.console.print(f"[yellow]skipped {video.path}: {reason}", soft_wrap=True)
            if time.monotonic() - saved > MANIFEST_EVERY_S:  # an interrupted run keeps most of its work
                _write_manifest(manifest_path(Path(data.work_dir)), manifest)
                saved = time.monotonic()
            bar.advance(task)
    _write_manifest(manifest_path(Path(data.work_dir)), manifest)
    result.seconds = time.perf_counter() - started
    console.print(f"prepare: {len(result.written)} videos extracted, {len(result.skipped)} already done, "
                  f"{len(result.failed)} skipped as unreadable, in {result.seconds:.1f} s; manifest "
                  f"{manifest_path(Path(data.work_dir))}")
    return result


def _extract_entry(video: ucf101.Video, target: Path, fps: float) -> dict:
    count, source_fps = extract_video(video.path, target, fps)
    return {"class": video.class_name, "split": video.split, "frames": count, "source": str(video.path),
            "source_fps": source_fps, "frames_per_second": fps, "group": video.group}


def _finished(entry: dict | None, video: ucf101.Video, target: Path, fps: float) -> bool:
    return (entry is not None and entry.get("source") == str(video.path) and entry.get("frames_per_second") == fps
            and int(entry.get("frames", 0)) > 0 and (target / frame_name(int(entry["frames"]))).is_file())


def _read_old_manifest(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}  # unreadable: everything is simply extracted again
    return manifest.get("videos", {}) if manifest.get("format") == MANIFEST_FORMAT else {}


def _write_manifest(path: Path, manifest: dict) -> None:
    write_json_atomically(path, manifest, indent=1, sort_keys=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)


def main(args: argparse.Namespace) -> int:
    console = Console()
    result = prepare(from_args(args), console)
    return ExitCode.OK if result.written or result.skipped else ExitCode.FAILED
