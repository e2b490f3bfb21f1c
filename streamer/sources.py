"""Where frames come from: RTSP cameras, video files, webcams, image folders, the synthetic camera.

`open_source(spec)` reads a source spec as a person writes it:
  rtsp://host:554/path   an RTSP camera (read through OpenCV's FFmpeg backend, with timeouts)
  webcam:0  or  0        a local webcam by index
  path/to/video.avi      a video file (`capture.loop` plays it again at the end)
  path/to/folder/        a folder of images, in name order
  synthetic[:SEED]       the built-in camera: moving patterns that know their ground truth

Every source gives `read() -> SourceFrame | None` (None: the source ended for good). A source
that fails raises `SourceError` naming the source and what to do; the capture decides whether
to retry (live sources) or stop (files).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".avi", ".mp4", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v", ".ts"}
NETWORK_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://")


class SourceError(RuntimeError):
    """A source that cannot be opened or read. `retry` says whether trying again may help."""

    def __init__(self, message: str, retry: bool):
        super().__init__(message)
        self.retry = retry


@dataclass
class SourceFrame:
    image_bgr: np.ndarray
    truth: str | None = None  # ground-truth activity, when the source knows it
    truth_started: int = -1  # the source frame index at which that activity began


class SyntheticSource:
    """The built-in camera: a scripted sequence of activities with their ground truth."""

    live = False

    def __init__(self, seed: int, segment_frames: int):
        from streamer.synthetic import SyntheticCamera

        self.description = f"synthetic:{seed}"
        self._camera = SyntheticCamera(seed=seed, segment_frames=segment_frames)
        self.fps = 0.0  # as fast as asked: the capture paces it

    def read(self) -> SourceFrame:
        image, activity, started = self._camera.next_frame()
        return SourceFrame(image, activity, started)

    def close(self) -> None:
        pass


class VideoSource:
    """A video file, an RTSP/HTTP stream or a webcam, through OpenCV."""

    def __init__(self, target: str | int, description: str, live: bool, loop: bool = False,
                 timeout_s: float = 5.0):
        self.description = description
        self.live = live
        self._target, self._loop = target, loop
        params = []
        if isinstance(target, str) and target.startswith(NETWORK_SCHEMES):
            # Without these, a dead camera can block a read forever.
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(timeout_s * 1000),
                      cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(timeout_s * 1000)]
            self._capture = cv2.VideoCapture(target, cv2.CAP_FFMPEG, params)
        else:
            self._capture = cv2.VideoCapture(target)
        if not self._capture.isOpened():
            raise SourceError(_open_failure(description, target), retry=live)
        self.fps = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0)
        if not 0 < self.fps < 1000:
            self.fps = 0.0
        self._frames_read = 0

    def read(self) -> SourceFrame | None:
        ok, image = self._capture.read()
        if not ok and self._loop and not self.live and self._frames_read:
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = self._capture.read()
        if not ok:
            if self.live:
                raise SourceError(f"{self.description}: the stream stopped delivering frames "
                                  f"(camera down, network lost or stream closed); reconnecting", retry=True)
            if self._frames_read == 0:
                raise SourceError(f"{self.description}: opened but no frame could be decoded; the file may be "
                                  f"corrupt or in a codec this OpenCV lacks. Re-encode it (e.g. to H.264 MP4)",
                                  retry=False)
            return None
        self._frames_read += 1
        return SourceFrame(image)

    def close(self) -> None:
        self._capture.release()


class FolderSource:
    """A folder of still images, read in name order, as a camera would deliver them."""

    live = False

    def __init__(self, folder: Path, loop: bool = False):
        self.description = str(folder)
        self._paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self._paths:
            raise SourceError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder",
                              retry=False)
        self._loop, self._next, self.fps = loop, 0, 0.0

    def read(self) -> SourceFrame | None:
        while True:
            if self._next >= len(self._paths):
                if not self._loop:
                    return None
                self._next = 0
            path = self._paths[self._next]
            self._next += 1
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is not None:
                return SourceFrame(image)
            # An unreadable image is skipped, not fatal; the capture's counters show it.

    def close(self) -> None:
        pass


Source = SyntheticSource | VideoSource | FolderSource


def open_source(spec: str, *, loop: bool = False, seed: int = 0, segment_frames: int = 160,
                timeout_s: float = 5.0) -> Source:
    """Open a source from its spec (see the module doc). Raises SourceError naming what is wrong."""
    if spec == "synthetic" or spec.startswith("synthetic:"):
        _, _, seed_text = spec.partition(":")
        if seed_text and not seed_text.isdigit():
            raise SourceError(f"{spec!r}: the synthetic camera takes an integer seed, e.g. synthetic:3", retry=False)
        return SyntheticSource(seed=int(seed_text) if seed_text else seed, segment_frames=segment_frames)
    if spec.startswith(NETWORK_SCHEMES):
        return VideoSource(spec, description=_redact(spec), live=True, timeout_s=timeout_s)
    if spec.isdigit() or spec.startswith("webcam:"):
        index = spec.removeprefix("webcam:")
        if not index.isdigit():
            raise SourceError(f"{spec!r}: a webcam is given by index, e.g. webcam:0", retry=False)
        return VideoSource(int(index), description=f"webcam {index}", live=True, timeout_s=timeout_s)
    if "://" in spec:
        scheme = spec.split("://", 1)[0]
        raise SourceError(f"{spec!r}: unsupported scheme {scheme!r}; use rtsp://, http(s)://, a file, a folder, "
                          f"webcam:N or synthetic", retry=False)
    path = Path(spec)
    if path.is_dir():
        return FolderSource(path, loop=loop)
    if not path.exists():
        raise SourceError(f"{spec!r}: no such file or folder; check the path (relative paths start at "
                          f"{Path.cwd()})", retry=False)
    if path.suffix.lower() not in VIDEO_SUFFIXES | IMAGE_SUFFIXES:
        raise SourceError(f"{spec!r}: not a video file this reader knows ({', '.join(sorted(VIDEO_SUFFIXES))})",
                          retry=False)
    return VideoSource(str(path), description=str(path), live=False, loop=loop)


def _open_failure(description: str, target: str | int) -> str:
    if isinstance(target, int):
        return f"{description}: cannot open the webcam; is it connected and not used by another program?"
    if isinstance(target, str) and target.startswith(NETWORK_SCHEMES):
        return (f"{description}: cannot open the stream (wrong URL or path, camera down, port closed, or "
                f"credentials refused); will retry")
    return f"{description}: OpenCV cannot open this file; it may be corrupt or not a video"


def _redact(url: str) -> str:
    """rtsp://user:secret@host/... -> rtsp://user:***@host/...: passwords never reach the logs."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.partition("@")
    if at and ":" in credentials:
        user = credentials.split(":", 1)[0]
        return f"{scheme}{sep}{user}:***@{host}"
    return url


def monotonic_pacer(fps: float):
    """Yields the time to sleep before each next frame so frames come at `fps` without drift."""
    interval = 1.0 / fps if fps > 0 else 0.0
    next_due = time.monotonic()
    while True:
        now = time.monotonic()
        yield max(0.0, next_due - now)
        next_due = max(next_due + interval, now - interval)  # never burst to catch up after a stall
