"""`run.py bench --dashboard`: one run, phases without, with and without a dashboard and a real browser.

Checks the report's shape and that both sides were measured, never how fast anything is.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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
    before, with_dashboard, after = report["phases"]  # without, with, without
    assert [p["dashboard"] for p in report["phases"]] == [False, True, False]
    assert all(p["labels_per_s"] > 0 for p in report["phases"])
    rates = [p["labels_per_s"] for p in report["phases"]]
    assert report["ratio_median"] == pytest.approx(rates[1] / ((rates[0] + rates[2]) / 2))
    assert report["ratio_of_means"] == pytest.approx(rates[1] / ((rates[0] + rates[2]) / 2))
    assert with_dashboard["dashboard_cpu_share"] >= 0 and with_dashboard["browser_cpu_share"] >= 0
    assert "dashboard_cpu_share" not in before and "dashboard_cpu_share" not in after
    assert list((tmp_path / "logs").glob("*/dashboard.log"))  # in the pipeline's own log folder


def test_each_phase_with_the_dashboard_is_compared_with_its_neighbours():
    from streamer.bench.dashboard_cost import ratios

    phases = [{"dashboard": index % 2 == 1, "labels_per_s": rate} for index, rate in enumerate([40, 30, 20, 19, 20])]
    result = ratios(phases)
    assert result["ratio_bracketed"] == [1.0, 0.95]  # 30 against (40+20)/2, 19 against (20+20)/2
    assert result["ratio_median"] == pytest.approx(0.975)
    assert result["ratio_of_means"] == pytest.approx(24.5 / (80 / 3))
