"""Real pipelines for the fault tests: `run.py` processes on free loopback ports, and a listener.

- `free_endpoints()`: frames/features/labels endpoints on ports nobody uses right now.
- `Pipeline`: `run.py up` as a subprocess with its own log folder and `--set` overrides; stopped
  (SIGTERM, then SIGKILL) by the context manager whatever happens in the test.
- `Listener`: a SUB socket on the labels endpoint that keeps every message with the time it
  arrived; `wait_for` fails the test after a timeout instead of hanging.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
import zmq

from configs.settings import Security, load_config
from streamer.ops.supervisor import pipeline_log_dir
from streamer.transport import wire
from streamer.transport.sockets import free_port, free_ports, make_socket

ROOT = Path(__file__).resolve().parents[2]
RUN_PY = ROOT / "run.py"

# Cheap settings for a 2-core test machine: tiny frames, few of them, an 8-frame window, the plain
# torch backend (no conversion at start), frequent stats. The processes and sockets are the real ones.
FAST = ["capture.crop=64", "capture.resize=72", "capture.fps=8", "features.backend=torch", "features.threads=1",
        "lstm.random_window=8", "capture.stats_interval_s=0.5", "features.stats_interval_s=0.5",
        "lstm.stats_interval_s=0.5", "supervisor.stats_interval_s=0.5", "features.bundle=absent.pt",
        "lstm.bundle=absent.pt"]


def free_endpoints() -> dict[str, str]:
    return {name: f"tcp://127.0.0.1:{port}" for name, port in zip(("frames", "features", "labels", "previews"),
                                                                   free_ports(4))}


def run_py(args: list[str], sets: list[str], log_path: Path, cwd: Path | None = None) -> subprocess.Popen:
    """`python run.py ARGS --set ...` with stdout and stderr in `log_path`."""
    argv = [sys.executable, str(RUN_PY), *args]
    for item in sets:
        argv += ["--set", item]
    log_file = open(log_path, "ab")
    try:
        return subprocess.Popen(argv, cwd=cwd or ROOT, stdout=log_file, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True)
    finally:
        log_file.close()


def stop_process(process: subprocess.Popen, timeout_s: float = 20.0) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # its own session: the children go too
            process.wait()
    return process.returncode


@dataclass
class Pipeline:
    """`run.py up` with the given sources, on fresh loopback ports, logging under `folder`."""

    folder: Path
    sources: list[str]
    sets: list[str] = field(default_factory=list)
    endpoints: dict[str, str] = field(default_factory=free_endpoints)
    process: subprocess.Popen | None = None

    @property
    def log_root(self) -> Path:
        return self.folder / "logs"

    @property
    def log_dir(self) -> Path:
        """This pipeline's own folder under supervisor.log_dir (named after its labels endpoint)."""
        return pipeline_log_dir(load_config(None, [f"endpoints.labels={self.endpoints['labels']}",
                                                   f"supervisor.log_dir={self.log_root}"]))

    @property
    def up_log(self) -> Path:
        return self.folder / "up.log"

    def all_sets(self) -> list[str]:
        return ([f"endpoints.{name}={value}" for name, value in self.endpoints.items()]
                + FAST + [f"supervisor.log_dir={self.log_root}"] + self.sets)

    def __enter__(self) -> "Pipeline":
        self.folder.mkdir(parents=True, exist_ok=True)
        args = ["up"]
        for source in self.sources:
            args += ["--source", source]
        self.process = run_py(args, self.all_sets(), self.up_log, cwd=self.folder)
        return self

    def __exit__(self, *exc) -> None:
        stop_process(self.process)

    def log(self, name: str = "up") -> str:
        path = self.up_log if name == "up" else self.log_dir / name
        return path.read_text(errors="replace") if path.exists() else ""

    def capture_log(self, stream: str) -> str:
        """The log of the capture process that runs `stream` (live cameras share one: capture-cam0+cam1.log)."""
        for path in self.log_dir.glob("capture-*.log"):
            if stream in path.stem.removeprefix("capture-").split("+"):
                return path.read_text(errors="replace")
        return ""

    def pid(self, child: str) -> int:
        """The current pid of a child (e.g. "features:0"), read from the supervisor's log."""
        found = re.findall(rf"(?:started|restarted) {re.escape(child)} \(pid (\d+)", self.log())
        if not found:
            pytest.fail(f"{child} never started; up log:\n{self.log()}")
        return int(found[-1])

    def assert_running(self) -> None:
        if self.process.poll() is not None:
            pytest.fail(f"run.py up exited with {self.process.returncode}:\n{self.log()}")

    def listen_until_it_stops(self, listener: "Listener", seconds: float = 240) -> None:
        """Keep what `listener` receives until `run.py up` stops by itself (as it does after its files)."""
        deadline = time.monotonic() + seconds
        while self.process.poll() is None:
            if time.monotonic() > deadline:
                pytest.fail(f"run.py up did not stop by itself within {seconds:.0f} s:\n{self.log_tails()}")
            listener.pump(0.5)
        listener.pump(1.0)  # what was published before it stopped is still queued in the listener's socket

    def log_tails(self, lines: int = 20) -> str:
        """The end of `run.py up`'s log and of every child's, for a failure message."""
        paths = [self.up_log] + sorted(self.log_dir.glob("*.log"))
        return "\n".join(f"--- {path.name}:\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
                         for path in paths if path.exists())


@dataclass
class Received:
    at: float  # time.monotonic() when it arrived
    message: wire.Message
    wall: float = 0.0  # time.time() when it arrived, to compare with the message's own timestamps


class Listener:
    """Everything published on the labels endpoint, kept in arrival order."""

    def __init__(self, endpoint: str, topics: tuple[bytes, ...] = (b"label/", b"event/", b"stats/"),
                 security: Security | None = None):
        self.context = zmq.Context()
        self.socket = make_socket(self.context, zmq.SUB, endpoint, bind=False, security=security or Security(),
                                  server_curve=False, hwm=100000)
        for topic in topics:
            self.socket.setsockopt(zmq.SUBSCRIBE, topic)
        self.history: list[Received] = []
        self.malformed = 0
        self.stats: dict[str, dict[str, float]] = {}

    def close(self) -> None:
        self.socket.close()
        self.context.term()

    def __enter__(self) -> "Listener":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def pump(self, seconds: float) -> None:
        """Receive for `seconds` (at least one poll), keeping what arrives."""
        deadline = time.monotonic() + seconds
        while True:
            remaining = deadline - time.monotonic()
            if self.socket.poll(max(0, int(remaining * 1000))):
                self._receive_waiting()
            if time.monotonic() >= deadline:
                return

    def _receive_waiting(self) -> None:
        for message, received in wire.received_messages(self.socket):
            if message is None:
                self.malformed += 1
                continue
            self.history.append(Received(time.monotonic(), message, received))
            if isinstance(message, wire.Stats):
                self.stats[message.process] = message.counters

    def wait_for(self, predicate: Callable[[wire.Message], bool], timeout_s: float, what: str,
                 since: float | None = None, pipeline: Pipeline | None = None) -> Received:
        """The first message after `since` (monotonic; default: now) that satisfies `predicate`,
        or a test failure after `timeout_s` naming `what`. With `pipeline`, the test also fails as
        soon as `run.py up` exits, and a timeout shows the end of its logs."""
        since = time.monotonic() if since is None else since
        deadline = time.monotonic() + timeout_s
        while True:
            for item in self.history:
                if item.at >= since and predicate(item.message):
                    return item
            if time.monotonic() >= deadline:
                logs = f"\n{pipeline.log_tails()}" if pipeline is not None else ""
                pytest.fail(f"no {what} within {timeout_s:.0f} s; last stats: {self.stats}{logs}")
            if pipeline is not None:
                pipeline.assert_running()
            self.pump(0.2)

    def labels(self, stream: str, since: float = 0.0, until: float = float("inf")) -> list[Received]:
        return [item for item in self.history if since <= item.at <= until
                and isinstance(item.message, wire.Label) and item.message.stream == stream]


def is_label(stream: str, warming: bool | None = None) -> Callable[[wire.Message], bool]:
    def check(message: wire.Message) -> bool:
        return (isinstance(message, wire.Label) and message.stream == stream
                and (warming is None or message.warming == warming))
    return check


def is_stats(process: str, condition: Callable[[dict], bool] = lambda counters: True):
    def check(message: wire.Message) -> bool:
        return isinstance(message, wire.Stats) and message.process == process and condition(message.counters)
    return check


def is_event(stream: str, kind: type, reason: str | None = None):
    def check(message: wire.Message) -> bool:
        return (isinstance(message, kind) and message.stream == stream
                and (reason is None or getattr(message, "reason", None) == reason))
    return check
