"""`run.py bench --dashboard`: one run, phases without and with a dashboard and a real browser.

Checks the report's shape and that both sides were measured, never how fast anything is.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import endpoint_overrides, loopback_endpoints
from tests.test_bench import ROOT, SMALL


def test_bench_dashboard_measures_phases_without_and_with_a_dashboard_and_browser(tmp_path: Path) -> None:
    report_path = tmp_path / "cost.json"
    overrides = endpoint_overrides(loopback_endpoints()) + SMALL + [f"supervisor.log_dir={tmp_path / 'logs'}"]
    argv = [sys.executable, str(ROOT / "run.py"), "bench", "--dashboard", "--streams", "1", "--fps", "8",
            "--phase-seconds", "2", "--rounds", "1", "--warmup", "0.5", "--json", str(report_path)]
    for item in overrides:
        argv += ["--set", item]
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "dashboard cost at saturation" in done.stdout and "with / without" in done.stdout

    report = json.loads(report_path.read_text())
    without, with_dashboard = report["phases"]
    assert not without["dashboard"] and with_dashboard["dashboard"]
    assert without["labels_per_s"] > 0 and with_dashboard["labels_per_s"] > 0
    assert report["ratio_with_over_without"] == with_dashboard["labels_per_s"] / without["labels_per_s"]
    assert with_dashboard["dashboard_cpu_share"] >= 0 and with_dashboard["browser_cpu_share"] >= 0
    assert "dashboard_cpu_share" not in without
    assert (tmp_path / "logs" / "dashboard.log").exists()
