"""A real RTSP camera for the tests, and servers that misbehave the way cameras do.

`RtspCamera` runs tests/support/rtsp_server.py under the system Python (GStreamer's RTSP server
and python3-gi are Debian packages; `.ci/install-system-deps.sh` installs them). It serves a clip
the project renders with its synthetic camera, and can be killed, restarted on the same port,
frozen (SIGSTOP: sockets stay open, nothing is sent, like a hung camera) and thawed.
`SilentServer` accepts TCP connections and never says a word.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import cv2
import pytest

from models.synthetic import SyntheticCamera

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER_SCRIPT = Path(__file__).with_name("rtsp_server.py")
INSTALL_HINT = "run `bash .ci/install-system-deps.sh` (as root) to install GStreamer's RTSP server"
ELEMENTS = ("multifilesrc", "jpegdec", "videoconvert", "x264enc", "rtph264pay")


def require_gstreamer() -> None:
    """Fail (never skip) when the RTSP server cannot run here, saying how to install it."""
    if not Path(SYSTEM_PYTHON).exists():
        pytest.fail(f"{SYSTEM_PYTHON} is missing; {INSTALL_HINT}")
    probe = ("import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); "
             "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
             f"missing = [e for e in {ELEMENTS!r} if Gst.ElementFactory.find(e) is None]; "
             "print(' '.join(missing))")
    result = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        pytest.fail(f"GStreamer's RTSP server is not usable from {SYSTEM_PYTHON} "
                    f"({result.stderr.strip().splitlines()[-1:]}); {INSTALL_HINT}")
    if result.stdout.strip():
        pytest.fail(f"GStreamer elements missing: {result.stdout.strip()}; {INSTALL_HINT}")


def write_clip(folder: Path, frames: int = 120, seed: int = 3, width: int = 320, height: int = 240) -> str:
    """Render `frames` synthetic-camera frames as numbered JPEGs; returns the printf pattern."""
    folder.mkdir(parents=True, exist_ok=True)
    camera = SyntheticCamera(seed=seed, width=width, height=height, segment_frames=40)
    for index in range(frames):
        image, _, _ = camera.next_frame()
        cv2.imwrite(str(folder / f"f{index:05d}.jpg"), image)
    return str(folder / "f%05d.jpg")


class RtspCamera:
    def __init__(self, frames_pattern: str, port: int, log_path: Path, mount: str = "/cam", fps: int = 10):
        self.pattern, self.port, self.mount, self.fps, self.log_path = frames_pattern, port, mount, fps, log_path
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}{self.mount}"

    def start(self, timeout_s: float = 20.0) -> float:
        """Start serving; returns time.monotonic() when the port listens."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--port", str(self.port), "--mount", self.mount,
                 "--frames", self.pattern, "--fps", str(self.fps)],
                stdout=subprocess.PIPE, stderr=log, text=True)
        ready: list[str] = []
        reader = threading.Thread(target=lambda: ready.append(self.process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout_s)
        if not ready or ready[0].strip() != "ready":
            self.kill()
            pytest.fail(f"the RTSP server did not start on port {self.port}: {self.log_path.read_text()[-2000:]}")
        return time.monotonic()

    def kill(self) -> None:
        """SIGKILL: the camera vanishes mid-stream, its connections reset."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)  # a frozen process must be able to die
            self.process.kill()
            self.process.wait()

    def freeze(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)


class SilentServer:
    """Accepts TCP connections and then says nothing (a hung camera, or the wrong device)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.accepted.append(connection)

    def close(self) -> None:
        self.listener.close()
        for connection in self.accepted:
            connection.close()
