"""The exit codes of every `run.py` subcommand and child process, named in one place.

`run.py` turns an `ActionableError` into its message and `USER_ERROR`; `run.py up` reads its
children's codes to decide whether a restart can help. The README's "Exit codes" table lists them.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    # done; for a capture, its source ended
    OK = 0
    # the work ran, its result failed a check (evaluate, prepare, bench); from a child of `up`: a crash, restarted
    FAILED = 1
    # a problem the user can fix, named in the message (config, source, files, keys); `up` restarts no child after it
    USER_ERROR = 2
    # a capture asks `up` for a fresh process (reader threads stuck in the camera driver, or a crash)
    RESTART_ME = 3
