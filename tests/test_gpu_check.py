"""The GPU check runs end to end wherever the suite runs: on a CPU it takes its quick fallback.

The command is run as a user runs it (`python -m streamer.bench.gpu_check`), in its own process;
its JSON must hold a figure for every section it ran and say why it left the others out. `--quick`
keeps it to seconds on a GPU too (a CPU always runs the quick sizes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from streamer.bench.gpu_check import first_capture_limited, limit_of, main

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "streamer.bench.gpu_check", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_gpu_check_runs_every_section_it_can_and_writes_json_and_a_table(tmp_path):
    done = _run("--out", str(tmp_path), "--quick")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    sections = report["sections"]
    assert report["cuda"] == torch.cuda.is_available()
    assert sections["correctness"]["min_cosine"] >= 0.999
    assert {row["batch"] for row in sections["bare_model"]["rows"]} >= {1}
    rows = sections["bare_model"]["rows"]
    assert all(row["bare_frames_per_s"] > 0 and row["backend_frames_per_s"] > 0 for row in rows)
    worker = sections["worker_over_zmq"]["rows"][0]
    assert worker["frames_per_s"] > 0 and worker["mean_batch"] >= 1 and worker["pinned"]
    assert sections["training"]["frames_per_s"] > 0
    assert "skipped" in sections["one_stream"] and "skipped" in sections["saturation"]
    if report["cuda"]:
        assert sections["host_to_device"]["pinned"]["copy_ms"]["p50"] > 0
    else:
        assert "nothing to upload" in sections["host_to_device"]["note"]
    assert "bare_model" in (tmp_path / "gpu_check.txt").read_text()


def test_an_unknown_section_is_named(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["--sections", "bare_model,warp_drive"])
    assert stopped.value.code == 2 and "warp_drive" in capsys.readouterr().err


def test_saturation_points_say_what_limits_them():
    assert limit_of(asked_per_s=480, captured_per_s=300, dropped=0, captured=3000) == "captures limit"
    assert limit_of(asked_per_s=480, captured_per_s=478, dropped=900, captured=4780) == "downstream limits (frames dropped)"
    assert limit_of(asked_per_s=480, captured_per_s=478, dropped=3, captured=4780) == "below capacity"
    points = [{"streams": 4, "limit": "downstream limits (frames dropped)"}, {"streams": 8, "limit": "captures limit"},
              {"streams": 12, "limit": "captures limit"}]
    assert first_capture_limited(points) == 8 and first_capture_limited(points[:1]) is None
