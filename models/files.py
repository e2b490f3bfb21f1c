"""Files written whole or not at all: write beside the target, then rename over it.

A live worker reloading a bundle, or a stage resuming from a manifest, never reads half a file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable


def write_atomically(path: Path, write: Callable[[Path], object]) -> Path:
    """`write(temporary)` fills a file next to `path`, which then replaces `path` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    write(temporary)
    os.replace(temporary, path)
    return path


def write_json_atomically(path: Path, payload: object, **dumps_options) -> Path:
    return write_atomically(path, lambda temporary: temporary.write_text(json.dumps(payload, **dumps_options) + "\n"))
