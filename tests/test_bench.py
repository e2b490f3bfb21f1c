"""`run.py bench`: the report's shape and consistency, never how fast anything is.

One real run (processes, sockets, small frames, random ports) checks the JSON report end to end;
the pure parts (summarising recorded labels, the tables) are checked on made-up records.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from streamer.bench import checks, procfs, record, views
from streamer.transport import wire
from streamer.bench.baselines import lstm_advance
from tests.conftest import endpoint_overrides, loopback_endpoints

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["capture.crop=64", "capture.resize=72", "features.bundle=none.pt", "lstm.bundle=none.pt",
         "features.imagenet_fallback=false"]
LATENCY_KEYS = {"p50", "p90", "p99", "max", "mean"}


def _check_block(block: dict) -> None:
    """What a real run's labels must show; orderings the summary gets by construction are not re-checked."""
    assert isinstance(block["labels"], int) and block["labels"] > 0
    latency = block["latency_ms"]
    assert set(latency) == LATENCY_KEYS
    assert latency["p50"] > 0  # a label cannot arrive before its frame was captured
    # the stages measured in the processes (not derived here) are real durations
    assert block["stages_ms"]["cnn"] > 0 and block["stages_ms"]["preprocess"] > 0


def test_bench_writes_a_well_formed_report(tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    overrides = endpoint_overrides(loopback_endpoints()) + SMALL + [f"supervisor.log_dir={tmp_path / 'logs'}"]
    argv = [sys.executable, str(ROOT / "run.py"), "bench", "--streams", "2", "--fps", "10", "--seconds", "5",
            "--warmup", "1", "--no-live", "--json", str(report_path)]
    for item in overrides:
        argv += ["--set", item]
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "where the time goes" in done.stdout

    report = json.loads(report_path.read_text())
    for key in ("overall", "streams", "counts", "latency_growth", "memory_mb", "memory_series_mb", "cpu_percent", "run",
                "machine", "checks"):
        assert key in report, key
    assert report["run"]["streams"] == 2 and report["run"]["fps"] == 10
    assert 4.0 <= report["run"]["measured_seconds"] <= 6.0
    assert report["run"]["warmup_s"] == 1 and "excluded" in report["run"]["warmup_note"]
    assert isinstance(report["run"]["backend"], str) and report["run"]["backend"]
    assert len(report["machine"]["loadavg_end"]) == 3 and report["machine"]["cores"] >= 1

    _check_block(report["overall"])
    assert report["overall"]["labels"] > 0
    assert set(report["streams"]) == {"cam0", "cam1"}
    for block in report["streams"].values():
        _check_block(block)
        assert set(block["capture"]) == set(record.CAPTURE_COUNTERS)
        assert all(isinstance(v, int) and v >= 0 for v in block["capture"].values())
        totals = block["capture_total"]
        assert totals["frames_sent"] <= totals["frames_read"]
    assert sum(b["labels"] for b in report["streams"].values()) == report["overall"]["labels"]

    counts = report["counts"]
    for key in ("frames_captured", "frames_sent", "frames_processed", "labels_published"):
        assert isinstance(counts[key], int) and counts[key] >= 0, key
    assert counts["frames_sent"] <= counts["frames_captured"]
    dropped = counts["dropped"]
    assert dropped["total"] == dropped["capture_stale"] + dropped["features"] + dropped["lstm"]
    assert all(v >= 0 for v in dropped.values())
    # Counters are differences of snapshots taken twice a second in each process, so they agree
    # with each other to within a snapshot's worth of frames (2 streams x 10 frames/s x 0.5 s).
    slack = 2 * 10 * record.STATS_INTERVAL_S * 2 + 2
    assert counts["frames_processed"] <= counts["frames_sent"] + slack
    assert counts["labels_published"] <= counts["frames_processed"] + slack
    assert report["overall"]["labels"] <= counts["labels_published"] + slack

    growth = report["latency_growth"]
    assert growth["first_tenth_p99_ms"] >= 0 and growth["last_tenth_p99_ms"] >= 0
    assert isinstance(growth["grew"], bool)
    assert len(growth["by_tenth"]) == 10 and sum(t["labels"] for t in growth["by_tenth"]) <= report["overall"]["labels"]
    assert all(v >= 0 for v in report["cpu_percent"].values())
    assert {"lstm", "features:0", "capture:cam0+cam1"} <= set(report["memory_mb"])  # one process, both cameras
    for memory in report["memory_mb"].values():
        assert memory["first_mb"] > 0 and memory["samples"] >= 1


def _label(stream: str, seq: int, t_capture: float, truth: str = "FadeIn", label: str = "FadeIn") -> wire.Label:
    stages = {"preprocess": 0.5, "capture_wait": 1.5, "transport_frames": 0.3, "queue_features": 1.0, "cnn": 3.0,
              "transport_features": 0.2, "queue_lstm": 0.1, "lstm": 0.4}
    return wire.Label(stream=stream, seq=seq, t_capture=t_capture, t_publish=t_capture + 0.0075, label=label,
                      score=0.9, top_k=[(label, 0.9)], warming=seq < 31, frames_in_window=min(seq + 1, 32),
                      model_id="test", stages=stages, truth=truth, truth_since=0)


def test_summary_of_made_up_labels_and_counters() -> None:
    recorder = record.Recorder(["a", "b"])
    t0 = 1000.0
    for seq in range(100):
        recorder.add_label(_label("a", seq, t0 + seq * 0.1), received=t0 + seq * 0.1 + 0.008)
        recorder.add_label(_label("b", seq, t0 + seq * 0.1, label="FadeOut"), received=t0 + seq * 0.1 + 0.010)
    recorder.add_label(_label("stranger", 0, t0), received=t0)
    for t, read in ((t0 - 1, 0), (t0 + 0.5, 5), (t0 + 9.5, 95), (t0 + 20, 200)):
        recorder.add_stats(wire.Stats("capture:a", t, {"frames_read": read, "frames_sent": read - 1,
                                                       "dropped_stale": 1}))
        recorder.add_stats(wire.Stats("features:0", t, {"frames": 2 * read, "dropped": 0, "batches": read}))
        recorder.add_stats(wire.Stats("lstm", t, {"labels": 2 * read, "dropped": 0}))
    recorder.memory["lstm"] = [(t0 + 1, 1000), (t0 + 5, 3000), (t0 + 9, 2048)]

    report = record.summarize(recorder, t0, t0 + 10)
    assert recorder.unknown_streams == 1
    assert report["overall"]["labels"] == 200
    assert report["streams"]["a"]["latency_ms"]["p50"] == pytest.approx(8.0, abs=0.01)
    assert report["streams"]["b"]["latency_ms"]["max"] == pytest.approx(10.0, abs=0.01)
    stages = report["streams"]["a"]["stages_ms"]
    assert stages["capture"] == pytest.approx(1.0) and stages["preprocess"] == pytest.approx(0.5)
    assert stages["transport"] == pytest.approx(0.5) and stages["queue"] == pytest.approx(1.1)
    assert stages["publish"] == pytest.approx(0.5, abs=0.01)
    assert stages["cnn"] == pytest.approx(3.0) and stages["lstm"] == pytest.approx(0.4)
    assert stages["other"] == pytest.approx(1.0, abs=0.01)  # 8 ms latency, 7 ms in the stages above
    assert report["streams"]["a"]["seq_span"] == 100 and report["streams"]["a"]["unlabelled"] == 0
    # seq >= 31 are warm and settled (truth since 0): 69 judged per stream; b is always wrong
    assert report["streams"]["a"]["accuracy"] == {"judged": 69, "correct": 69, "accuracy": 1.0}
    assert report["streams"]["b"]["accuracy"]["correct"] == 0
    assert report["overall"]["accuracy"]["accuracy"] == pytest.approx(0.5)
    assert report["streams"]["a"]["capture"] == {"frames_read": 95, "frames_sent": 95, "dropped_stale": 0}
    assert report["counts"]["frames_processed"] == 190 and report["counts"]["mean_batch"] == pytest.approx(2.0)
    assert report["counts"]["processed_per_s"] == pytest.approx(190 / 10.5)
    assert report["latency_growth"]["grew"] is False and report["latency_growth"]["judged"] is False  # 20 a tenth
    assert report["latency_growth"]["ratio"] == pytest.approx(1.0, abs=0.01)
    assert report["memory_mb"]["lstm"] == {"first_mb": 1000 / 1024, "last_mb": 2.0, "max_mb": 3000 / 1024,
                                           "samples": 3}

    report["machine"] = {"loadavg_end": [0.1, 0.2, 0.3]}
    console = Console(file=io.StringIO(), width=200)
    for table in (views.render(report), views.render_stages(report), views.render_summary(report)):
        console.print(table)
    text = console.file.getvalue()
    assert "all" in text and "where the time goes" in text and "not judged" in text
    for column in ("read", "sent", "dropped", "no label", "accuracy (n)", "p50/p90/p99"):  # each one explained
        assert f"{column}: " in text, column
    for width in (80, 100):  # the main table fits, nothing cut (three columns left out at 80)
        narrow = Console(file=io.StringIO(), width=width)
        narrow.print(views.render(report, width=width))
        lines = narrow.file.getvalue().splitlines()
        assert all(len(line) <= width for line in lines) and "…" not in narrow.file.getvalue()
        assert any("50.0% (138)" in line for line in lines)
    report["ratios"] = {"pipeline / lecture loop": 4.4, "pipeline / bare-model ceiling": 0.76}
    report["checks"] = {"one": {"met": True, "detail": ""}, "two": {"met": False, "detail": ""}}
    assert views.verdict(report) == ("verdict: 20.0 labels/s; latency p50 9.0 ms, p99 10.0 ms; 0 frames dropped; "
                                     "settled accuracy 50.0% of 138; 4.40x lecture loop; 0.76x bare-model ceiling; "
                                     "targets met 1 of 2")


def test_growth_is_flagged_when_latency_climbs() -> None:
    recorder = record.Recorder(["a"])
    for seq in range(2000):
        t = 50.0 + seq * 0.005
        recorder.add_label(_label("a", seq, t), received=t + 0.005 + seq * 0.0001)
    growth = record.summarize(recorder, 50.0, 60.0)["latency_growth"]
    assert growth["judged"] is True and growth["grew"] is True and growth["ratio"] > 1.2
    assert [tenth["labels"] for tenth in growth["by_tenth"]] == [200] * 10


def test_growth_is_not_judged_on_a_few_labels() -> None:
    recorder = record.Recorder(["a"])
    for seq in range(200):  # 20 labels a tenth: their p99 is one frame's luck
        t = 50.0 + seq * 0.05
        recorder.add_label(_label("a", seq, t), received=t + 0.005 + seq * 0.001)
    growth = record.summarize(recorder, 50.0, 60.0)["latency_growth"]
    assert growth["ratio"] > 1.2 and growth["judged"] is False and growth["grew"] is False


def test_rss_of_this_process_and_of_a_missing_one() -> None:
    import os

    assert procfs.rss_kb(os.getpid()) > 0
    assert procfs.rss_kb(2**22 + 12345) is None


def test_lstm_advance_reports_all_three_ways() -> None:
    result = lstm_advance(streams=4, seconds=0.05, hidden=8, layers=2, window=8)
    for way in ("staggered", "recompute_per_stream", "recompute_batched"):
        assert result[way]["stream_frames_per_s"] > 0
    assert result["hidden"] == 8 and result["streams"] == 4
    assert np.isfinite(result["staggered_over_batched"])


def _report(dropped: int, captured: int, p99: float, throughput: float) -> dict:
    return {
        "overall": {"throughput_labels_per_s": throughput, "latency_ms": {"p99": p99}},
        "counts": {"dropped": {"total": dropped}, "frames_captured": captured},
        "latency_growth": {"ratio": 1.1, "grew": False, "judged": True},
        "baselines": {
            "lecture_loop": {"frames_per_s": 10.0},
            "model_ceiling": {"frames_per_s": 100.0, "batch1_latency_ms": 10.0},
            "lstm_advance": {"streams": 64, "hidden": 8, "layers": 2, "staggered_over_batched": 2.5,
                             "staggered_over_per_stream": 5.0},
        },
    }


def test_targets_judged_by_what_the_run_was() -> None:
    below = checks.checks(_report(dropped=0, captured=300, p99=25.0, throughput=15.0))
    assert below["below capacity: no drops, p99 <= 2x batch-1 latency + 10 ms"]["met"] is True
    assert not any(name.startswith("saturated") for name in below)
    assert below["latency flat (last-tenth p99 <= 1.2x first-tenth)"]["met"] is True
    assert next(v for k, v in below.items() if k.startswith("LSTM step"))["met"] is True

    saturated = checks.checks(_report(dropped=500, captured=1000, p99=900.0, throughput=80.0))
    assert saturated["saturated throughput >= 8x lecture loop"]["met"] is True  # 8x
    ceiling = "saturated throughput >= 0.8x the fastest admissible backend's bare ceiling"
    assert saturated[ceiling]["met"] is True  # 0.8x of the worker's own backend

    # a faster backend that passed its guard raises the bar; one that failed it does not
    report = _report(dropped=500, captured=1000, p99=900.0, throughput=70.0)
    report["baselines"]["backends"] = [
        {"backend": "openvino-cpu-int8", "admissible": True, "batch_1": {"frames_per_s": 40.0},
         "batch_16": {"frames_per_s": 120.0}},
        {"backend": "too-coarse", "admissible": False, "batch_16": {"frames_per_s": 500.0}}]
    judged = checks.checks(report)
    assert judged[ceiling]["met"] is False and "openvino-cpu-int8" in judged[ceiling]["detail"]
    assert judged["saturated throughput >= 8x lecture loop"]["met"] is False  # 7x
    assert not any(name.startswith("below capacity") for name in saturated)
