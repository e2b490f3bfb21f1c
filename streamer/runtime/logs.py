"""One log format for every process: time, process name, level, message, on stderr."""

from __future__ import annotations

import logging
import os


def setup_logging(process: str) -> None:
    level = os.environ.get("STREAMER_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=level, force=True,
                        format=f"%(asctime)s {process} %(levelname)s %(message)s", datefmt="%H:%M:%S")
