"""Processes that die, sources that hang: `run.py up` restarts, the capture's watchdog reconnects.

The first test kills (SIGKILL) the feature worker, then the LSTM worker, then the capture process (both cameras) of a real
pipeline, and checks each is restarted within 5 s, labels resume, the restart is logged and
counted on `stats/supervisor/`, and nothing queued up while it was down. The others test the
supervisor's crash-loop backoff and the capture's watchdog with real subprocesses and threads.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from configs.exit_codes import ExitCode
from configs.settings import load_config
from streamer.capture.process import LatestSlot, Reader
from streamer.transport.sockets import StopFlag, bind_problem
from streamer.capture.sources import SourceFrame
from streamer.ops.supervisor import Child, supervise
from tests.support.pipeline import Listener, Pipeline, is_label, is_stats

FEATURE_SEND_HWM = 64  # the feature worker's PUSH high-water mark: max(64, 4 * features.max_batch)


def wait_for_new_pid(pipeline: Pipeline, child: str, old: int, timeout_s: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if pipeline.pid(child) != old:
            return time.monotonic()
        time.sleep(0.05)
    pytest.fail(f"{child} was not restarted within {timeout_s} s:\n{pipeline.log()[-3000:]}")


def test_killed_processes_are_restarted_labels_resume_and_nothing_piles_up(tmp_path):
    streams = ("cam0", "cam1")
    figures = {}
    with Pipeline(tmp_path, ["synthetic", "synthetic"]) as pipeline, \
            Listener(pipeline.endpoints["labels"]) as listener:
        for stream in streams:
            listener.wait_for(is_label(stream, warming=False), 120, f"first warm label of {stream}", since=0,
                              pipeline=pipeline)
        # the capture process: both cameras share it (capture.cameras_per_process)
        for number, child in enumerate(("features:0", "lstm", "capture:cam0+cam1"), start=1):
            old = pipeline.pid(child)
            t_kill, wall_kill = time.monotonic(), time.time()
            os.kill(old, signal.SIGKILL)
            t_restarted = wait_for_new_pid(pipeline, child, old, timeout_s=5.0)
            # Labels resume on both streams, of frames captured after the kill.
            resumed = [listener.wait_for(lambda m, s=stream: is_label(s)(m) and m.t_capture > wall_kill, 90,
                                         f"{stream} label after {child} was killed", since=t_restarted,
                                         pipeline=pipeline) for stream in streams]
            figures[child] = (t_restarted - t_kill, max(item.at for item in resumed) - t_kill)
            assert f"{child} died (killed by SIGKILL)" in pipeline.log()
            stats = listener.wait_for(is_stats("supervisor", lambda c, n=number: c["restarts"] == n), 10,
                                      f"supervisor stats counting {number} restart(s)")
            # a capture's restarts are counted under each of its cameras' process names
            names = [f"capture:{stream}" for stream in streams] if child.startswith("capture:") else [child]
            assert [stats.message.counters[f"restarts_{name}"] for name in names] == [1] * len(names)
            check_nothing_piled_up(listener, child, wall_kill, t_restarted)
        # Both cameras of the killed capture came back as new sessions: their windows started again.
        # (labels of frames the old session captured before the kill may still arrive after it)
        for stream in streams:
            after = [item for item in listener.labels(stream, since=t_restarted) if item.message.t_capture > wall_kill]
            assert after and after[0].message.warming and after[0].message.frames_in_window == 1, stream
    for child, (restart_s, resume_s) in figures.items():
        print(f"\n{child}: restarted {restart_s:.2f} s after SIGKILL, labels on every stream {resume_s:.1f} s after")


def test_when_up_itself_is_killed_its_children_stop_and_free_the_ports(tmp_path):
    with Pipeline(tmp_path, ["synthetic"]) as pipeline, Listener(pipeline.endpoints["labels"]) as listener:
        listener.wait_for(is_label("cam0"), 120, "first label", since=0, pipeline=pipeline)
        children = {name: pipeline.pid(name) for name in ("lstm", "features:0", "capture:cam0")}
        os.kill(pipeline.process.pid, signal.SIGKILL)  # no shutdown path runs in up
        pipeline.process.wait()
        killed = time.monotonic()
        deadline = killed + 20
        while time.monotonic() < deadline and any(is_running(pid) for pid in children.values()):
            time.sleep(0.1)
        left = [name for name, pid in children.items() if is_running(pid)]
        for pid in children.values():
            if is_running(pid):
                os.kill(pid, signal.SIGKILL)
        assert not left, f"{left} outlived run.py up"
        print(f"\nevery child of up gone {time.monotonic() - killed:.2f} s after up was killed")
        for endpoint in pipeline.endpoints.values():  # a new `up` could start on the same ports
            port = int(endpoint.rsplit(":", 1)[1])
            assert bind_problem(endpoint) is None, f"{endpoint} still taken: {port_users(port)}"


def port_users(port: int) -> str:
    """Who holds a local TCP port: socket states, and the processes with those sockets open."""
    states, inodes = [], set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                states.append(f"{fields[1]}->{fields[2]} state {fields[3]}")
                inodes.add(fields[9])
    holders = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            links = {os.readlink(fd) for fd in (proc / "fd").iterdir()}
            if any(f"socket:[{inode}]" in links for inode in inodes):
                holders.append(f"{proc.name} {(proc / 'cmdline').read_bytes().replace(bytes(1), b' ')[:120]!r}")
        except OSError:
            continue
    return f"sockets {states}, processes {holders}"


def is_running(pid: int) -> bool:
    """Any of its threads alive and not a zombie (an orphan's exit is reaped by init, maybe later).

    Every thread counts: the main thread turns zombie first while ZeroMQ's threads are still
    exiting, and the process's sockets (its ports) close only when the last thread has gone."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except (FileNotFoundError, ProcessLookupError):
        return False
    for task in tasks:
        try:
            if (task / "stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
                return True
        except (FileNotFoundError, ProcessLookupError):
            continue  # that thread has just gone
    return False


def check_nothing_piled_up(listener: Listener, child: str, wall_kill: float, t_restarted: float) -> None:
    """While `child` was down, frames were dropped and counted, not queued to arrive stale later."""
    stale = [item for stream in ("cam0", "cam1") for item in listener.labels(stream, since=t_restarted)
             if item.message.t_capture < wall_kill]
    if child == "lstm":
        # At most what the feature worker's send queue may hold; the rest was dropped and counted.
        assert len(stale) <= FEATURE_SEND_HWM, f"{len(stale)} stale labels after the LSTM worker came back"
        features = listener.wait_for(is_stats("features:0", lambda c: c.get("dropped_downstream_full", 0) > 0), 10,
                                     "feature worker stats counting features dropped while the LSTM was down",
                                     since=0)
        assert features.message.counters["dropped_downstream_full"] > 0
    else:
        assert len(stale) <= 4, f"{len(stale)} labels of frames captured before {child} was killed"
    lstm = listener.wait_for(is_stats("lstm"), 10, "LSTM stats")
    # Bounded by design: at most one window of features held per stream, the ready queue drained each tick.
    assert lstm.message.counters["held_for_order"] <= 2 * 8 and lstm.message.counters["ready_queue"] <= 2
    for stream in ("cam0", "cam1"):
        capture = listener.wait_for(is_stats(f"capture:{stream}"), 10, f"capture:{stream} stats")
        counters = capture.message.counters
        # Every frame read was sent or counted as dropped; at most one is in hand.
        assert 0 <= counters["frames_read"] - counters["frames_sent"] - counters["dropped_stale"] <= 2, counters
        latest = listener.labels(stream)[-1]
        assert latest.wall - latest.message.t_capture < 2.0, "labels lag behind: a queue is growing"


# ------------------------------------------------------------------------------ supervisor


def python_child(name: str, code: str, tmp_path, is_capture: bool = False) -> Child:
    return Child(name, [sys.executable, "-c", code], tmp_path / f"{name}.log", is_capture=is_capture)


def test_a_process_that_keeps_dying_young_is_restarted_with_doubling_delays(tmp_path):
    config = load_config(None, ["supervisor.restart_delay_s=0.2", "supervisor.restart_max_delay_s=0.8",
                                "endpoints.features=tcp://127.0.0.1:1"])
    child = python_child("lstm", "import sys; print('boom', flush=True); sys.exit(1)", tmp_path)
    stop = StopFlag()
    starts = []
    original = child.start

    def start() -> None:
        starts.append(time.monotonic())
        original()

    child.start = start
    supervise([child], config, stop, seconds=6.0)
    gaps = np.diff(starts)
    assert len(starts) >= 5, starts
    # 0.2, 0.4, 0.8, 0.8 ... (plus the time to notice the exit); never faster than the schedule
    expected = [0.2, 0.4, 0.8, 0.8]
    assert all(gap >= want for gap, want in zip(gaps, expected)), gaps
    assert all(gap < want + 1.0 for gap, want in zip(gaps, expected)), gaps
    assert child.restarts == len(starts) - 1


def test_a_worker_whose_configuration_cannot_work_stops_everything(tmp_path):
    config = load_config(None, ["endpoints.features=tcp://127.0.0.1:1"])
    broken = python_child("lstm", "import sys; sys.exit(2)", tmp_path)
    healthy = python_child("features:0", "import time; time.sleep(60)", tmp_path)
    started = time.monotonic()
    code = supervise([broken, healthy], config, StopFlag(), seconds=30.0)
    assert code == ExitCode.USER_ERROR
    assert time.monotonic() - started < 10
    assert broken.restarts == 0 and healthy.exit_code() is not None, "everything is stopped, nothing restarted"


# --------------------------------------------------------------------------- capture watchdog


class HangingSource:
    """Delivers `frames` frames, then blocks in read() until released, like FFmpeg on a dead link."""

    live, finite, fps, description = True, False, 0.0, "hanging camera"

    def __init__(self, frames: int, release: threading.Event):
        self.frames, self.release, self.closed = frames, release, False

    def read(self) -> SourceFrame:
        if self.frames == 0:
            self.release.wait()
            return SourceFrame(np.zeros((8, 8, 3), np.uint8))
        self.frames -= 1
        time.sleep(0.01)
        return SourceFrame(np.zeros((8, 8, 3), np.uint8))

    def close(self) -> None:
        self.closed = True


def run_reader(monkeypatch, sources: list, sets: list[str]) -> tuple[Reader, LatestSlot, StopFlag]:
    opened = iter(sources)
    monkeypatch.setattr("streamer.capture.process.open_source", lambda *args, **kwargs: next(opened))
    config = load_config(None, ["capture.stall_timeout_s=0.3", "capture.retry_initial_s=0.05", "capture.fps=0"]
                         + sets)
    slot, stop = LatestSlot(), StopFlag()
    reader = Reader("rtsp://camera/stream", config, slot, stop)
    reader.start()
    return reader, slot, stop


def test_a_reader_stuck_inside_the_driver_is_abandoned_and_a_new_session_starts(monkeypatch):
    release = threading.Event()
    stuck, healthy = HangingSource(5, release), HangingSource(10_000, threading.Event())
    reader, slot, stop = run_reader(monkeypatch, [stuck, healthy], [])
    try:
        deadline = time.monotonic() + 5
        while reader.stalls == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert reader.stalls == 1 and reader.outages == 1
        lost_session, message = reader.outage_queue.get(timeout=1)
        assert "no frame for 0.3 s" in message
        item = None
        while time.monotonic() < deadline and (item is None or item.session == lost_session):
            item = slot.take(timeout=0.1)
        assert item is not None and item.session > lost_session, "frames of a new session flow"
        assert not stuck.closed, "the abandoned read is still blocked"
        release.set()  # the driver finally returns: the abandoned connection closes its source
        while not stuck.closed and time.monotonic() < deadline:
            time.sleep(0.02)
        assert stuck.closed
    finally:
        release.set()
        stop.set()
        reader.join(2)


def test_too_many_stuck_readers_make_the_capture_exit_to_be_restarted(monkeypatch):
    release = threading.Event()
    reader, _, stop = run_reader(monkeypatch, [HangingSource(2, release) for _ in range(5)],
                                 ["capture.max_stuck_readers=1"])
    try:
        reader.join(10)
        assert not reader.is_alive() and reader.stuck_exit and "stuck inside the video driver" in reader.fatal_error
        assert reader.stalls == 2
    finally:
        release.set()
        stop.set()
