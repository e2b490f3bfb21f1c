"""A child of `run.py up` stops when `up` itself dies, even by SIGKILL.

`up` starts each child in its own session (so Ctrl-C reaches `up` alone, which then stops the
children in order). The price is that a killed `up` would leave its children running headless,
still holding their ports. So `up` names itself in SUPERVISOR_PID_VARIABLE, and a child that finds
it asks Linux to send it SIGTERM when its parent dies: the child's usual shutdown path.

The request is the first thing `run.py` does, before any heavy import: `up` can die while a child
is still importing torch. Whether `up` is still there is read from getppid(), which cannot be
fooled by a zombie or a reused pid. The variable is removed at once, so a process this child
starts (a grandchild of `up`) does not follow `up`'s pid.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

SUPERVISOR_PID_VARIABLE = "STREAMER_SUPERVISOR_PID"
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def supervised_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment `up` gives its children (plus `extra`, e.g. a capture's source)."""
    return {**os.environ, SUPERVISOR_PID_VARIABLE: str(os.getpid()), **(extra or {})}


def stop_with_supervisor() -> None:
    """In a child of `up`: SIGTERM to this process when `up` dies. Elsewhere: nothing.

    Call it before anything else: no signal handler is installed yet, so a SIGTERM sent here
    (up already gone) ends the process at once.
    """
    supervisor = os.environ.pop(SUPERVISOR_PID_VARIABLE, "")
    if not supervisor.isdigit() or not sys.platform.startswith("linux"):
        return
    if os.getppid() != int(supervisor):  # up died before this child got here (it was reparented)
        os.kill(os.getpid(), signal.SIGTERM)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        print(f"warning: cannot ask to be stopped with run.py up (prctl: {os.strerror(ctypes.get_errno())}); "
              f"stop this process yourself if up is killed", file=sys.stderr)
        return
    if os.getppid() != int(supervisor):  # up died between the check and the request
        os.kill(os.getpid(), signal.SIGTERM)
