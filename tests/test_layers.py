"""The packages import only downward (configs <- models <- transport <- workers/capture <- apps).

The contracts live in pyproject.toml ([tool.importlinter]); import-linter reads the real import
graph. This test fails with import-linter's own report when a module imports upward or a cycle
appears between sibling modules.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_the_contracts_catch_an_upward_import(tmp_path):
    """The same contracts, on a copy of the tree where models imports a worker, report it broken."""
    copy = tmp_path / "tree"
    for name in ("configs", "models", "streamer", "workers"):
        shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    with open(copy / "models" / "networks.py", "a") as handle:
        handle.write("\nfrom workers import loading  # noqa: E402,F401\n")
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-cache"], cwd=copy, capture_output=True, text=True, timeout=120,
                            env={"PYTHONPATH": str(copy), "PATH": "/usr/bin:/bin"})
    assert result.returncode != 0
    assert "Layers import only downward BROKEN" in result.stdout
    assert "models.networks -> workers.loading" in result.stdout
