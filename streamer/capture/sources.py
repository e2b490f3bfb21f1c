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

import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

import cv2
import numpy as np

from configs.settings import ActionableError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".avi", ".mp4", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v", ".ts"}
NETWORK_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://")
DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443, "rtmp": 1935}
# `run.py up` hands a capture its source in this variable, not on the command line (which `ps` shows)
SOURCE_VARIABLE = "STREAMER_SOURCE"


class SourceError(ActionableError, RuntimeError):
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
    finite = False  # runs until stopped, like a camera

    def __init__(self, seed: int, segment_frames: int):
        from models.synthetic import SyntheticCamera

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
        self.finite = not live  # a file: every sampled frame is wanted, not just the newest
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
            self._capture.release()
            raise SourceError(_open_failure(description, target, timeout_s), retry=live)
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
    finite = True  # every sampled image is wanted, not just the newest

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


@dataclass(frozen=True)
class Spec:
    """A source spec read but not opened: what kind of source, and what to hand the opener."""

    kind: str  # "synthetic", "network", "webcam", "folder" or "file"
    target: str | int
    description: str  # what logs and errors call it (passwords redacted)


def parse_spec(spec: str, *, seed: int = 0) -> Spec:
    """Read a spec without opening anything. Raises SourceError (never retryable) for a spec that
    cannot work: a bad seed or index, an unsupported scheme, a path that does not exist."""
    if spec == "synthetic" or spec.startswith("synthetic:"):
        _, _, seed_text = spec.partition(":")
        if seed_text and not seed_text.isdigit():
            raise SourceError(f"{spec!r}: the synthetic camera takes an integer seed, e.g. synthetic:3", retry=False)
        return Spec("synthetic", int(seed_text) if seed_text else seed, f"synthetic:{seed_text or seed}")
    if spec.startswith(NETWORK_SCHEMES):
        try:
            host, _ = urlparse(spec).hostname, urlparse(spec).port
        except ValueError:
            host = None
        if not host:
            raise SourceError(f"{_redact(spec)!r}: the URL needs a host and, optionally, a port from 1 to 65535: "
                              f"rtsp://HOST[:PORT]/PATH", retry=False)
        return Spec("network", spec, _redact(spec))
    if spec.isdigit() or spec.startswith("webcam:"):
        index = spec.removeprefix("webcam:")
        if not index.isdigit():
            raise SourceError(f"{spec!r}: a webcam is given by index, e.g. webcam:0", retry=False)
        return Spec("webcam", int(index), f"webcam {index}")
    if "://" in spec:
        scheme = spec.split("://", 1)[0]
        raise SourceError(f"{_redact(spec)!r}: unsupported scheme {scheme!r}; use rtsp://, rtsps://, http(s)://, "
                          f"rtmp://, a video file, a folder of images, webcam:N or synthetic", retry=False)
    path = Path(spec)
    if path.is_dir():
        return Spec("folder", spec, spec)
    if not path.exists():
        raise SourceError(f"{spec!r}: no such file or folder; check the path (relative paths start at "
                          f"{Path.cwd()})", retry=False)
    if path.suffix.lower() not in VIDEO_SUFFIXES | IMAGE_SUFFIXES:
        raise SourceError(f"{spec!r}: not a video file this reader knows ({', '.join(sorted(VIDEO_SUFFIXES))})",
                          retry=False)
    return Spec("file", spec, spec)


def open_source(spec: str, *, loop: bool = False, seed: int = 0, segment_frames: int = 160,
                timeout_s: float = 5.0) -> Source:
    """Open a source from its spec (see the module doc). Raises SourceError naming what is wrong."""
    parsed = parse_spec(spec, seed=seed)
    if parsed.kind == "synthetic":
        return SyntheticSource(seed=int(parsed.target), segment_frames=segment_frames)
    if parsed.kind in ("network", "webcam"):
        return VideoSource(parsed.target, description=parsed.description, live=True, timeout_s=timeout_s)
    if parsed.kind == "folder":
        return FolderSource(Path(spec), loop=loop)
    return VideoSource(spec, description=spec, live=False, loop=loop)


def check_source(spec: str) -> Spec:
    """What `run.py up` checks before starting anything: the spec parses, and a file or folder
    really yields a frame (a corrupt video fails here, once, not in a capture restarted forever).
    Network cameras and webcams are not contacted: they may come up later, and the capture retries."""
    parsed = parse_spec(spec)
    if parsed.kind in ("file", "folder"):
        source = open_source(spec)
        try:
            if source.read() is None:
                raise SourceError(f"{spec!r}: holds no frames", retry=False)
        finally:
            source.close()
    return parsed


def _open_failure(description: str, target: str | int, timeout_s: float) -> str:
    if isinstance(target, int):
        return f"{description}: cannot open the webcam; is it connected and not used by another program?"
    if isinstance(target, str) and target.startswith(NETWORK_SCHEMES):
        return f"{description}: cannot open the stream: {diagnose_network(target, timeout_s)}; will retry"
    return (f"{description}: OpenCV cannot open this file; it may be corrupt or not a video. "
            f"Check it plays (e.g. ffprobe) or re-encode it (e.g. to H.264 MP4)")


def diagnose_network(url: str, timeout_s: float) -> str:
    """Why a network stream would not open, in words that say what to check.

    OpenCV only says "not opened"; one TCP connection (and for RTSP one DESCRIBE request) tells
    a closed port from a wrong path, refused credentials, or a server that accepts and then hangs.
    """
    parsed = urlparse(url)
    host, port = parsed.hostname, parsed.port or DEFAULT_PORTS.get(parsed.scheme)
    if not host or not port:
        return "the URL has no host; write it as rtsp://HOST[:PORT]/PATH"
    where = f"{host}:{port}"
    try:
        connection = socket.create_connection((host, port), timeout=min(timeout_s, 3.0))
    except socket.gaierror:
        return f"the host name {host!r} does not resolve; check the host in the URL"
    except ConnectionRefusedError:
        return f"nothing listens on {where} (connection refused); is the camera on, and is the port right?"
    except TimeoutError:
        return f"no answer from {where} within {min(timeout_s, 3.0):.0f} s; is the host up and reachable?"
    except OSError as error:
        return f"cannot reach {where} ({error.strerror or error}); check the network"
    with connection:
        if parsed.scheme != "rtsp":
            return f"{where} accepts connections but the stream did not open; check the path in the URL"
        return _describe(connection, url, where, timeout_s)


def _describe(connection: socket.socket, url: str, where: str, timeout_s: float) -> str:
    parsed = urlparse(url)
    plain = f"rtsp://{where}{parsed.path or '/'}" + (f"?{parsed.query}" if parsed.query else "")  # no credentials
    request = f"DESCRIBE {plain} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n"
    try:
        connection.settimeout(min(timeout_s, 3.0))
        connection.sendall(request.encode())
        status_line = connection.recv(1024).split(b"\r\n", 1)[0].decode("latin-1")
    except TimeoutError:
        return (f"{where} accepts connections but answers nothing (camera hung, or not an RTSP server on this "
                f"port); check the port, or power-cycle the camera")
    except OSError as error:
        return f"{where} closed the connection ({error.strerror or error}); is this an RTSP server?"
    if not status_line:
        return f"{where} closed the connection without answering; is this an RTSP server?"
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("RTSP/"):
        return f"{where} does not speak RTSP (it answered {status_line[:60]!r}); check the port and scheme"
    code, text = parts[1], parts[2] if len(parts) > 2 else ""
    if code == "404":
        return f"the server at {where} has no stream at {urlparse(url).path or '/'!r} (404 {text}); check the path"
    if code in ("401", "403"):
        return f"the server at {where} refused access ({code} {text}); check the user and password in the URL"
    if code == "200":
        return (f"the server at {where} describes the stream but it could not be played; the codec may be "
                f"unsupported, or the camera allows too few clients")
    return f"the server at {where} answered {code} {text}"


def _redact(url: str) -> str:
    """What logs, errors and messages may say about a URL: scheme, host, port and path only.

    User info (`user:p@ss@`, split at the LAST '@') and the query string (`?token=...`) go, as
    does anything that does not parse as a URL with a host.
    """
    scheme, sep, _ = url.partition("://")
    if not sep:
        return url
    try:
        parsed = urlparse(url)
        host, port = parsed.hostname, parsed.port
    except ValueError:
        host = port = None
    if not host:
        return f"{scheme}://(unreadable URL)"
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}{f':{port}' if port else ''}{parsed.path}"


def scrub(text: str, spec: str) -> str:
    """`text` (an error message from a driver) with the spec's secrets replaced by its redacted form."""
    redacted = _redact(spec)
    text = text.replace(spec, redacted)
    try:
        parsed = urlparse(spec)
        secrets = [parsed.password, parsed.username, parsed.query]
    except ValueError:
        secrets = []
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, "***")
    return text


def sampled_frames(source: Source, fps: float) -> Iterator[SourceFrame]:
    """The frames of a paced source (file, folder, synthetic) at `fps`: source frames are skipped
    to keep the rate when the source runs faster; a slower source gives every frame it has.
    `run.py label` draws its annotated frames through this too, so they match the labels' seq."""
    stride = source.fps / fps if (source.fps and fps) else 1.0
    position = 0.0
    while True:
        frame = source.read()
        if frame is None:
            return
        yield frame
        position += stride
        while position >= 2.0:  # skip source frames to keep the configured rate
            if source.read() is None:
                return
            position -= 1.0
        position -= 1.0


def live_frames(source: Source, fps: float) -> Iterator[SourceFrame]:
    """The frames of a live source at most `fps` a second, by the clock: a faster camera's extra frames
    are skipped. A broken source raises SourceError from its read."""
    next_due = 0.0
    while True:
        frame = source.read()
        if frame is None:
            return
        now = time.monotonic()
        if fps and now < next_due:
            continue  # faster camera than the configured rate: skip this frame
        next_due = max(next_due + 1.0 / fps, now) if fps else now
        yield frame


def effective_fps(source_fps: float, fps: float) -> float:
    """Frames per second of video that `sampled_frames` yields (the source's own rate when slower)."""
    if source_fps and fps:
        return min(source_fps, fps)
    return fps or source_fps


def monotonic_pacer(fps: float):
    """Yields the time to sleep before each next frame so frames come at `fps` without drift."""
    interval = 1.0 / fps if fps > 0 else 0.0
    next_due = time.monotonic()
    while True:
        now = time.monotonic()
        yield max(0.0, next_due - now)
        next_due = max(next_due + interval, now - interval)  # never burst to catch up after a stall
