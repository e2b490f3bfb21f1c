"""Shutdowns that always end: children that follow a killed `up`, signals that cannot deadlock.

- `up` (the real supervisor loop, multi-threaded by ZeroMQ) is SIGKILLed 20 times in a row, at
  moments from "children still starting" to "children running"; every time, every child (a real
  `run.py` process) is gone within seconds.
- A grandchild of `up` does not inherit the variable that names `up`.
- A process hammered with bursts of SIGTERMs while its main loop waits on the stop flag always
  ends (the former flag's `threading.Event.set()` in the handler could deadlock there); a second
  signal exits at once, and a shutdown that hangs is ended by the kernel after the hard limit.
- `shutdown` of children of which some never started (a worker before them failed) stops the
  started ones and passes over the others.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from streamer.ops.supervisor import Child, shutdown
from streamer.runtime.lifetime import SUPERVISOR_PID_VARIABLE
from tests.support.pipeline import ROOT, RUN_PY, free_port

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def python(code: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=ENV, **kwargs)


def alive(pid: int) -> bool:
    """Running and not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return False


SUPERVISOR = """
    import sys
    from pathlib import Path
    from configs.settings import load_config
    from streamer.ops.supervisor import Child, supervise
    from streamer.runtime.logs import setup_logging
    from streamer.transport.sockets import StopFlag

    setup_logging("up")

    labels, log_dir = sys.argv[1], Path(sys.argv[2])
    config = load_config(None, [f"endpoints.labels={labels}", "endpoints.features=tcp://127.0.0.1:1"])
    children = [Child(f"sub{i}", [sys.executable, sys.argv[3], "subscribe", "--json", "--set",
                                  f"endpoints.labels={labels}"], log_dir / f"sub{i}.log") for i in range(3)]
    supervise(children, config, StopFlag(), 0.0)
"""


def test_children_of_a_killed_up_stop_20_times_in_a_row(tmp_path):
    labels = f"tcp://127.0.0.1:{free_port()}"
    gone_after = []
    for trial in range(20):
        log_dir = tmp_path / f"trial{trial}"
        log_dir.mkdir()
        up = subprocess.Popen([sys.executable, "-c", textwrap.dedent(SUPERVISOR), labels, str(log_dir), str(RUN_PY)],
                              cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        pids = []
        while len(pids) < 3:
            line = up.stdout.readline()
            assert line, f"the supervisor exited early (trial {trial})"
            pids += [int(pid) for pid in re.findall(r"started sub\d \(pid (\d+)", line)]
        # From "children still importing" (trial 0) to "children long running" (trial 19).
        time.sleep(0.1 * trial)
        os.kill(up.pid, signal.SIGKILL)
        up.wait()
        up.stdout.close()
        killed = time.monotonic()
        while any(alive(pid) for pid in pids) and time.monotonic() - killed < 15:
            time.sleep(0.05)
        left = [pid for pid in pids if alive(pid)]
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        assert not left, f"trial {trial}: children {left} outlived the killed supervisor"
        gone_after.append(time.monotonic() - killed)
    print(f"\n20/20 trials: every child gone at most {max(gone_after):.2f} s after the supervisor was killed")


def test_a_grandchild_of_up_does_not_inherit_the_variable_naming_up():
    child = python(f"""
        import os, subprocess, sys
        from streamer.runtime.lifetime import stop_with_supervisor
        os.environ["{SUPERVISOR_PID_VARIABLE}"] = str(os.getppid())  # as if started by up
        stop_with_supervisor()
        grandchild = subprocess.run([sys.executable, "-c", "import os; print(os.environ.get('{SUPERVISOR_PID_VARIABLE}'))"],
                                    capture_output=True, text=True)
        print(grandchild.stdout.strip())
    """, stdout=subprocess.PIPE, text=True)
    out, _ = child.communicate(timeout=60)
    assert child.returncode == 0 and out.strip() == "None"


def test_a_child_whose_parent_is_already_gone_stops_before_doing_anything():
    # The parent named in the variable is not this process's parent (up died and the child was
    # reparented): the child ends at once, by SIGTERM, before it imports anything heavy.
    child = python(f"""
        import os
        os.environ["{SUPERVISOR_PID_VARIABLE}"] = "1"
        from streamer.runtime.lifetime import stop_with_supervisor
        stop_with_supervisor()
        print("still running")
    """, stdout=subprocess.PIPE, text=True)
    out, _ = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGTERM and "still running" not in out


HAMMERED = """
    import sys
    from streamer.transport.sockets import StopFlag
    stop = StopFlag(hard_exit_s=float(sys.argv[1]))
    print("ready", flush=True)
    while not stop:
        stop.wait(0.0005)  # the main thread is inside wait() when the signals arrive
    if sys.argv[2] == "hang":
        print("stopping", flush=True)
        while True:
            pass  # a shutdown that never ends
    print("clean", flush=True)
"""


def start_hammered(hard_exit_s: float, mode: str) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", textwrap.dedent(HAMMERED), str(hard_exit_s), mode], cwd=ROOT,
                               env=ENV, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    return process


def test_bursts_of_signals_during_wait_always_end_the_process():
    # Up to 30 SIGTERMs microseconds apart, as a killed multi-threaded parent's death signal can
    # arrive more than once: one lands while the handler of another runs. The former flag (an
    # Event.set() in the handler) hung in about 1 of 40 such bursts.
    rng = random.Random(0)
    outcomes = []
    for _ in range(40):
        process = start_hammered(0.0, "clean")
        for _ in range(30):
            if process.poll() is not None:
                break
            process.send_signal(signal.SIGTERM)
            pause = time.perf_counter() + rng.uniform(0, 0.0003)
            while time.perf_counter() < pause:
                pass
        try:
            out, _ = process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            pytest.fail("a process that got a burst of SIGTERMs while waiting did not end (deadlock)")
        # A later signal exited at once (143), maybe after the clean stop; or the clean stop finished
        # (and a later signal found the interpreter exiting, its handlers gone: -15).
        assert process.returncode in (0, -signal.SIGTERM, 128 + signal.SIGTERM), (process.returncode, out)
        assert process.returncode == 128 + signal.SIGTERM or "clean" in out, (process.returncode, out)
        outcomes.append(process.returncode)
    print(f"\n40 bursts of SIGTERMs: {40 - outcomes.count(143)} clean stops, {outcomes.count(143)} immediate exits")


def test_a_shutdown_that_hangs_is_ended_after_the_hard_limit_or_by_a_second_signal():
    process = start_hammered(1.0, "hang")
    process.send_signal(signal.SIGTERM)
    assert process.stdout.readline().strip() == "stopping"
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGALRM  # the kernel ended it, 1 s after the first signal

    process = start_hammered(60.0, "hang")
    process.send_signal(signal.SIGINT)
    assert process.stdout.readline().strip() == "stopping"
    process.send_signal(signal.SIGINT)
    process.wait(timeout=30)
    assert process.returncode == 128 + signal.SIGINT


def test_shutdown_stops_the_started_children_and_passes_over_one_never_started(tmp_path):
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    started = Child("lstm", sleeper, tmp_path / "lstm.log")
    never_started = Child("features:0", sleeper, tmp_path / "features.log")
    capture = Child("capture:cam0", sleeper, tmp_path / "capture.log", is_capture=True)
    started.start()
    capture.start()
    shutdown([started, never_started, capture], grace_s=5.0)
    assert started.exit_code() is not None and capture.exit_code() is not None
    assert never_started.process is None
