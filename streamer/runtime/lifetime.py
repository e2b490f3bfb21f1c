"""A child of `run.py up` stops when `up` itself dies, even by SIGKILL.

`up` starts each child in its own session (so Ctrl-C reaches `up` alone, which then stops the
children in order). The price is that a killed `up` would leave its children running headless,
still holding their ports. So `up` names itself in SUPERVISOR_PID_VARIABLE, and a child that finds
it asks Linux to send it SIGTERM when its parent dies: the child's usual shutdown path.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys

log = logging.getLogger(__name__)

SUPERVISOR_PID_VARIABLE = "STREAMER_SUPERVISOR_PID"
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def supervised_environment() -> dict[str, str]:
    """The environment `up` gives its children."""
    return {**os.environ, SUPERVISOR_PID_VARIABLE: str(os.getpid())}


def stop_with_supervisor() -> None:
    """In a child of `up`: SIGTERM to this process when `up` dies. Elsewhere: nothing."""
    supervisor = os.environ.get(SUPERVISOR_PID_VARIABLE, "")
    if not supervisor.isdigit() or not sys.platform.startswith("linux"):
        return
    pid = int(supervisor)
    if os.getppid() != pid:
        if not _running(pid):  # up died before this child got here
            os.kill(os.getpid(), signal.SIGTERM)
        return  # else a grandchild that inherited the variable: up is not its parent to follow
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        log.warning("cannot ask to be stopped with run.py up (prctl: %s); stop this process yourself if up is "
                    "killed", os.strerror(ctypes.get_errno()))
        return
    if os.getppid() != pid:  # up died between the check and the request
        os.kill(os.getpid(), signal.SIGTERM)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by another user
    return True
