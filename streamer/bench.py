"""`run.py bench`: latency and throughput of the real multi-process pipeline, measured end to end.

It starts what `run.py up` starts (the LSTM worker, the feature worker(s), one capture per
stream; the same `plan()` and `supervise()`), on N synthetic streams at F frames per second or on
the `--source`s given, subscribes to `label/` and `stats/` like any dashboard, and reports per
stream and overall:
- end-to-end latency, camera frame to label received here (p50, p90, p99, max), and how it splits
  into stages (the `stages` each label carries; publish = received here - t_publish);
- frames captured, sent, processed, dropped (from the `stats/` counters), labels, throughput;
- live accuracy on settled labels (`is_settled`) against the synthetic camera's ground truth;
- whether latency grew: p99 of the first tenth of the measured time against the last tenth;
- the resident memory (VmRSS) of every pipeline process, sampled from /proc, first/last/max.

Warm-up is excluded: measuring starts `--warmup` seconds after every stream's first label
(model loading, first inferences and the windows' first frames fall before it); labels whose
frame was captured before that are not counted, and counters are taken as differences.

`--baseline` then measures, in this process with the pipeline stopped: the lecture's loop, the
bare-model ceiling of the feature worker's backend (streamer/baselines.py) and the LSTM step
alone, and prints the ratios. `--soak` runs 10 minutes (unless `--seconds` says otherwise).
`--json PATH` writes every figure shown.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zmq
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from configs.settings import Config, Endpoints, add_config_arguments, from_args, replace
from streamer import wire
from streamer.logs import setup_logging
from streamer.percentiles import percentiles
from streamer.sockets import StopFlag, free_port, make_socket
from streamer.subscriber import is_settled, received_messages

log = logging.getLogger("bench")

# The stage groups a label's latency is split into, in pipeline order. Built from the label's
# `stages` (ms): capture_wait includes preprocess, so the capture's own wait is the difference.
GROUPS = ("capture", "preprocess", "transport", "queue", "cnn", "lstm", "publish", "other")
GROUP_HELP = {
    "capture": "frame waiting in the capture's slot until the sender takes it",
    "preprocess": "resize + center crop in the capture",
    "transport": "ZeroMQ frames (capture->features) + features (features->LSTM)",
    "queue": "waiting for a batch in the feature worker + for a step in the LSTM worker",
    "cnn": "ResNet-18 batch in the feature worker",
    "lstm": "staggered-window step in the LSTM worker",
    "publish": "label PUB -> this subscriber",
    "other": "what no stage covers (packing, bookkeeping between stages)",
}
MIN_LABELS_PER_TENTH = 100  # fewer, and "p99 of a tenth" is one unlucky frame
STATS_INTERVAL_S = 0.5  # the bench asks every process for counters this often
DRAIN_S = 1.0  # after the measured time, labels of frames captured inside it are collected at least this long
DRAIN_MAX_S = 30.0  # ... and until every stream has a label of a later frame, or this long at most
MiB = 1024 * 1024


# ----------------------------------------------------------------------------------- records


@dataclass
class Recorder:
    """Everything received, kept as plain rows so summarising is a few numpy calls."""

    streams: list[str]
    rows: list[tuple] = field(default_factory=list)  # (stream index, t_capture, latency ms, *group ms, settled, correct, seq)
    first_label: dict[str, float] = field(default_factory=dict)
    last_capture: dict[str, float] = field(default_factory=dict)  # newest t_capture labelled, per stream
    stats: dict[str, list[tuple[float, dict]]] = field(default_factory=lambda: defaultdict(list))
    memory: dict[str, list[tuple[float, int]]] = field(default_factory=lambda: defaultdict(list))
    cpu: dict[str, list[tuple[float, float]]] = field(default_factory=lambda: defaultdict(list))  # (t, CPU seconds)
    events: list[str] = field(default_factory=list)
    malformed: int = 0
    unknown_streams: int = 0

    def add_label(self, label: wire.Label, received: float) -> None:
        try:
            index = self.streams.index(label.stream)
        except ValueError:
            self.unknown_streams += 1
            return
        self.first_label.setdefault(label.stream, received)
        self.last_capture[label.stream] = max(label.t_capture, self.last_capture.get(label.stream, 0.0))
        stages = label.stages
        latency = (received - label.t_capture) * 1000
        preprocess = stages.get("preprocess", 0.0)
        groups = [
            max(0.0, stages.get("capture_wait", 0.0) - preprocess),
            preprocess,
            stages.get("transport_frames", 0.0) + stages.get("transport_features", 0.0),
            stages.get("queue_features", 0.0) + stages.get("queue_lstm", 0.0),
            stages.get("cnn", 0.0),
            stages.get("lstm", 0.0),
            max(0.0, (received - label.t_publish) * 1000),
        ]
        groups.append(latency - sum(groups))
        settled = is_settled(label)
        self.rows.append((index, label.t_capture, latency, *groups, settled, settled and label.label == label.truth,
                          label.seq))

    def add_stats(self, stats: wire.Stats) -> None:
        self.stats[stats.process].append((stats.t, stats.counters))


def _counter_delta(history: list[tuple[float, dict]], names: tuple[str, ...], t_start: float,
                   t_end: float) -> tuple[dict[str, float], float, dict[str, float]]:
    """Counter increases between the last snapshot at or before t_start and the last at or before t_end.

    Returns (increases, seconds between the two snapshots, the latest totals)."""
    if not history:
        return {n: 0.0 for n in names}, 0.0, {n: 0.0 for n in names}
    before = [item for item in history if item[0] <= t_start]
    start = before[-1] if before else history[0]
    upto = [item for item in history if item[0] <= t_end]
    end = upto[-1] if upto else history[-1]
    if end[0] < start[0]:
        end = start
    latest = history[-1][1]
    return ({n: float(end[1].get(n, 0.0)) - float(start[1].get(n, 0.0)) for n in names}, end[0] - start[0],
            {n: float(latest.get(n, 0.0)) for n in names})


CAPTURE_COUNTERS = ("frames_read", "frames_sent", "dropped_stale")
FEATURE_COUNTERS = ("frames", "dropped", "batches")
LSTM_COUNTERS = ("labels", "dropped", "steps", "gaps")


def summarize(recorder: Recorder, t_start: float, t_end: float) -> dict:
    """The report for labels whose frame was captured in [t_start, t_end) (pure: no I/O)."""
    seconds = max(1e-9, t_end - t_start)
    rows = np.array([r for r in recorder.rows if t_start <= r[1] < t_end], dtype=np.float64).reshape(-1, 14)
    group_columns = {name: 3 + i for i, name in enumerate(GROUPS)}

    def block(selected: np.ndarray) -> dict:
        latency = selected[:, 2]
        mean_latency = float(latency.mean()) if latency.size else 0.0
        stages = {name: float(selected[:, column].mean()) if latency.size else 0.0
                  for name, column in group_columns.items()}
        judged, correct = int(selected[:, 11].sum()), int(selected[:, 12].sum())
        seqs = selected[:, 13]
        return {
            "labels": int(latency.size),
            "throughput_labels_per_s": latency.size / seconds,
            "latency_ms": percentiles(latency),
            "stages_ms": stages,
            "stage_share": {name: (value / mean_latency if mean_latency > 0 else 0.0) for name, value in stages.items()},
            "accuracy": {"judged": judged, "correct": correct,
                         "accuracy": (correct / judged) if judged else None},
            # the capture numbers the frames it sends 0, 1, 2, ...: a hole in the labelled numbers is a
            # frame sent but never labelled (lost after the capture); per stream only
            "seq_span": int(seqs.max() - seqs.min() + 1) if seqs.size else 0,
        }

    streams = {}
    for index, name in enumerate(recorder.streams):
        item = block(rows[rows[:, 0] == index])
        counts, _, totals = _counter_delta(recorder.stats.get(f"capture:{name}", []), CAPTURE_COUNTERS, t_start, t_end)
        item["capture"] = {k: int(v) for k, v in counts.items()}
        item["capture_total"] = {k: int(v) for k, v in totals.items()}
        item["unlabelled"] = max(0, item["seq_span"] - item["labels"])
        streams[name] = item
    overall = block(rows)
    overall["seq_span"] = sum(item["seq_span"] for item in streams.values())
    overall["unlabelled"] = sum(item["unlabelled"] for item in streams.values())

    captures = [streams[name]["capture"] for name in recorder.streams]
    feature_processes = sorted(p for p in recorder.stats if p.startswith("features:"))
    feature_counts = {n: 0.0 for n in FEATURE_COUNTERS}
    feature_seconds = 0.0
    for process in feature_processes:
        counts, span, _ = _counter_delta(recorder.stats[process], FEATURE_COUNTERS, t_start, t_end)
        feature_seconds = max(feature_seconds, span)
        for k, v in counts.items():
            feature_counts[k] += v
    lstm_counts, lstm_seconds, _ = _counter_delta(recorder.stats.get("lstm", []), LSTM_COUNTERS, t_start, t_end)
    dropped = {
        "capture_stale": int(sum(c["dropped_stale"] for c in captures)),
        "features": int(feature_counts["dropped"]),
        "lstm": int(lstm_counts["dropped"]),
    }
    dropped["total"] = sum(dropped.values())
    counts = {
        "frames_captured": int(sum(c["frames_read"] for c in captures)),
        "frames_sent": int(sum(c["frames_sent"] for c in captures)),
        "frames_processed": int(feature_counts["frames"]),
        "batches": int(feature_counts["batches"]),
        "mean_batch": feature_counts["frames"] / feature_counts["batches"] if feature_counts["batches"] else 0.0,
        "labels_published": int(lstm_counts["labels"]),
        "dropped": dropped,
        "processed_per_s": feature_counts["frames"] / feature_seconds if feature_seconds else 0.0,
        "labels_published_per_s": lstm_counts["labels"] / lstm_seconds if lstm_seconds else 0.0,
        "counter_window_s": feature_seconds,
        "stats_messages": {process: len(history) for process, history in sorted(recorder.stats.items())},
        "note": "counter increases between stats snapshots around the measured window (every "
                f"{STATS_INTERVAL_S} s), so they can differ from the label count by a snapshot's worth",
    }

    tenth = seconds / 10
    first = rows[rows[:, 1] < t_start + tenth][:, 2]
    last = rows[rows[:, 1] >= t_end - tenth][:, 2]
    by_tenth = []
    for k in range(10):
        inside = rows[(rows[:, 1] >= t_start + k * tenth) & (rows[:, 1] < t_start + (k + 1) * tenth)][:, 2]
        spread = percentiles(inside)
        by_tenth.append({"p50": spread["p50"], "p99": spread["p99"], "labels": int(inside.size)})
    first_p99 = percentiles(first)["p99"]
    last_p99 = percentiles(last)["p99"]
    growth = {"first_tenth_p99_ms": first_p99, "last_tenth_p99_ms": last_p99,
              "ratio": (last_p99 / first_p99) if first_p99 > 0 and last.size else None,
              "first_tenth_labels": int(first.size), "last_tenth_labels": int(last.size)}
    # p99 of a few dozen labels is their maximum: growth is judged only on tenths of 100 labels or more
    growth["judged"] = bool(growth["ratio"] is not None and min(first.size, last.size) >= MIN_LABELS_PER_TENTH)
    growth["grew"] = bool(growth["judged"] and growth["ratio"] > 1.2)
    growth["by_tenth"] = by_tenth  # latency over the run, tenth by tenth (flat is the point)

    memory = {}
    for process, samples in sorted(recorder.memory.items()):
        inside = [kb for t, kb in samples if t_start <= t <= t_end] or [kb for _, kb in samples]
        if inside:
            memory[process] = {"first_mb": inside[0] / 1024, "last_mb": inside[-1] / 1024,
                               "max_mb": max(inside) / 1024, "samples": len(inside)}
    memory_series = {process: [[round(t - t_start, 1), round(kb / 1024, 1)] for t, kb in samples]
                     for process, samples in sorted(recorder.memory.items())}
    cpu = {}
    for process, samples in sorted(recorder.cpu.items()):
        inside = [(t, used) for t, used in samples if t_start <= t <= t_end]
        if len(inside) >= 2 and inside[-1][0] > inside[0][0]:
            cpu[process] = 100.0 * (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])
    features_cpu = sum(v for k, v in cpu.items() if k.startswith("features:"))
    counts["frames_per_feature_cpu_s"] = (100 * counts["processed_per_s"] / features_cpu) if features_cpu else 0.0
    if "machine" in cpu:
        # what the rest of the machine (other users' jobs) took while we measured, in % of one core
        cpu["others"] = max(0.0, cpu["machine"] - sum(v for k, v in cpu.items() if k != "machine"))
    return {"seconds": seconds, "overall": overall, "streams": streams, "counts": counts,
            "latency_growth": growth, "memory_mb": memory, "memory_series_mb": memory_series, "cpu_percent": cpu}


# ------------------------------------------------------------------------------------ views


def _ms(value: float) -> str:
    return f"{value:.1f}"


def render(report: dict) -> Table:
    """The report as one table: a row per stream and one for all (pure: tested with a string console)."""
    table = Table(title=report.get("title", "pipeline benchmark"), caption=report.get("caption"))
    for column in ("stream", "labels", "labels/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "read", "sent",
                   "dropped", "sent, no label", "settled acc. (n)"):
        table.add_column(column, justify="left" if column == "stream" else "right")

    def row(name: str, item: dict, read: int, sent: int, dropped: int, style: str | None = None) -> None:
        latency, accuracy = item["latency_ms"], item["accuracy"]
        acc = f"{100 * accuracy['accuracy']:.1f}% ({accuracy['judged']})" if accuracy["accuracy"] is not None else "-"
        table.add_row(name, str(item["labels"]), f"{item['throughput_labels_per_s']:.1f}", _ms(latency["p50"]),
                      _ms(latency["p90"]), _ms(latency["p99"]), _ms(latency["max"]), str(read), str(sent),
                      str(dropped), str(item["unlabelled"]), acc, style=style)

    for name, item in report["streams"].items():
        capture = item["capture"]
        row(name, item, capture["frames_read"], capture["frames_sent"], capture["dropped_stale"])
    counts = report["counts"]
    row("all", report["overall"], counts["frames_captured"], counts["frames_sent"], counts["dropped"]["total"],
        style="bold")
    return table


def render_stages(report: dict) -> Table:
    table = Table(title="where the time goes (mean per label, all streams)")
    for column in ("stage", "ms", "share", "what"):
        table.add_column(column, justify="right" if column in ("ms", "share") else "left")
    overall = report["overall"]
    for name in GROUPS:
        table.add_row(name, f"{overall['stages_ms'][name]:.2f}", f"{100 * overall['stage_share'][name]:.1f}%",
                      GROUP_HELP[name])
    table.add_row("end to end", f"{overall['latency_ms']['mean']:.2f}", "100%", "camera frame -> label here",
                  style="bold")
    return table


def render_summary(report: dict) -> Table:
    table = Table(title="counts, growth, memory, baselines", show_header=False)
    table.add_column("what")
    table.add_column("value")
    counts, growth = report["counts"], report["latency_growth"]
    table.add_row("processed frames/s (feature worker)", f"{counts['processed_per_s']:.1f} "
                  f"(mean batch {counts['mean_batch']:.2f}; "
                  f"{counts.get('frames_per_feature_cpu_s', 0.0):.1f} frames per CPU-second it used)")
    dropped = counts["dropped"]
    table.add_row("dropped", f"{dropped['total']} (capture stale {dropped['capture_stale']}, feature worker "
                  f"{dropped['features']}, LSTM worker {dropped['lstm']})")
    ratio = f"{growth['ratio']:.2f}x" if growth["ratio"] is not None else "-"
    table.add_row("latency growth (p99 last tenth / first tenth)",
                  f"{_ms(growth['last_tenth_p99_ms'])} / {_ms(growth['first_tenth_p99_ms'])} ms = {ratio}"
                  + (" GREW" if growth["grew"] else " flat" if growth["judged"] else
                     f" (not judged: fewer than {MIN_LABELS_PER_TENTH} labels in a tenth)"))
    cpu = report.get("cpu_percent", {})
    for process, memory in report.get("memory_mb", {}).items():
        used = f"; CPU {cpu[process]:.0f}% of a core" if process in cpu else ""
        table.add_row(f"RSS {process}", f"first {memory['first_mb']:.0f} MiB, last {memory['last_mb']:.0f}, "
                      f"max {memory['max_mb']:.0f}{used}")
    if "bench" in cpu:
        table.add_row("CPU of this bench (subscriber, tables)", f"{cpu['bench']:.0f}% of a core")
    if "machine" in cpu:
        table.add_row("CPU of the whole machine / of other jobs", f"{cpu['machine']:.0f}% / {cpu['others']:.0f}% of a "
                      f"core ({report['machine']['cores']} cores)")
    baselines = report.get("baselines") or {}
    if "lecture_loop" in baselines:
        lecture = baselines["lecture_loop"]
        table.add_row("lecture loop (1 process, fp32, batch 1)",
                      f"{lecture['frames_per_s']:.1f} frames/s, p50 {lecture['latency_ms']['p50']:.1f} ms")
    if "model_ceiling" in baselines:
        ceiling = baselines["model_ceiling"]
        table.add_row(f"bare model ({ceiling['backend']})",
                      f"{ceiling['frames_per_s']:.1f} frames/s at batch {ceiling['best_batch']}, "
                      f"batch-1 latency {ceiling['batch1_latency_ms']:.2f} ms")
    if "lstm_advance" in baselines:
        lstm = baselines["lstm_advance"]
        table.add_row(f"LSTM step alone, {lstm['streams']} streams, hidden {lstm['hidden']} x {lstm['layers']}",
                      f"staggered {lstm['staggered']['stream_frames_per_s']:.0f} stream-frames/s, "
                      f"recompute per stream {lstm['recompute_per_stream']['stream_frames_per_s']:.0f}, "
                      f"recompute batched {lstm['recompute_batched']['stream_frames_per_s']:.0f}")
    for name, value in (report.get("ratios") or {}).items():
        table.add_row(name, f"{value:.2f}x" if value is not None else "-")
    for name, check in (report.get("checks") or {}).items():
        table.add_row(f"target: {name}", f"{'MET' if check['met'] else 'NOT MET'} ({check['detail']})")
    table.add_row("load average", " ".join(f"{v:.2f}" for v in report["machine"]["loadavg_end"]))
    return table


# ----------------------------------------------------------------------------------- running


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def rss_kb(pid: int) -> int | None:
    """Resident memory of a process from /proc/<pid>/status, in kB (None when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (all its threads), from /proc/<pid>/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def machine_busy_seconds() -> float | None:
    """CPU seconds every core of the machine has spent busy (not idle or waiting on I/O), from /proc/stat."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def bench_config(config: Config, fps: float) -> Config:
    """The config the pipeline runs with: the capture rate asked for, counters twice a second.

    The bench runs a pipeline of its own: unless the endpoints were set, it takes free loopback
    ports, so it never collides with a `run.py up` already running. When a trained bundle is
    there, the captures crop as that model was trained (what `run.py up` would ask you to set).
    """
    if config.endpoints == Endpoints():
        workers = config.supervisor.feature_workers
        config = replace(config, "endpoints", frames=",".join(f"tcp://127.0.0.1:{free_port()}" for _ in range(workers)),
                         features=f"tcp://127.0.0.1:{free_port()}", labels=f"tcp://127.0.0.1:{free_port()}")
    from models.presets import with_capture_preset

    config = with_capture_preset(config)
    config = replace(config, "capture", fps=float(fps), stats_interval_s=STATS_INTERVAL_S)
    config = replace(config, "features", stats_interval_s=STATS_INTERVAL_S)
    return replace(config, "lstm", stats_interval_s=STATS_INTERVAL_S)


def _backend_from_log(path: Path, offset: int) -> str | None:
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            text = handle.read().decode(errors="replace")
    except OSError:
        return None
    found = [line.split("feature backend:", 1)[1].split(" (asked", 1)[0].strip()
             for line in text.splitlines() if "feature backend:" in line]
    return found[-1] if found else None


class PipelineFailed(RuntimeError):
    pass


def run_pipeline(config: Config, sources: list[str], seconds: float, warmup: float, *, console: Console,
                 stop: StopFlag, startup_timeout: float = 180.0, memory_interval: float = 1.0,
                 live: bool = True) -> tuple[Recorder, float, float, dict]:
    """Start the pipeline, wait for it to warm up, measure `seconds`, stop it. Returns the records."""
    from streamer.supervisor import parse_source, prepare, supervise

    # ports taken, bad sources, unusable bundles: one clear error before starting
    children = prepare(config, sources, config_name="bench-config.toml")
    log_dir = Path(config.supervisor.log_dir)
    streams = [parse_source(source, index)[0] for index, source in enumerate(sources)]
    recorder = Recorder(streams)
    log_offsets = {c.name: (c.log_path.stat().st_size if c.log_path.exists() else 0) for c in children}

    context = zmq.Context()
    subscriber = make_socket(context, zmq.SUB, config.endpoints.labels, bind=False, security=config.security,
                             server_curve=False, hwm=100000)
    for topic in (b"label/", b"stats/", b"event/"):
        subscriber.setsockopt(zmq.SUBSCRIBE, topic)
    failure: list[BaseException] = []

    def supervise_quietly() -> None:
        try:
            supervise(children, config, stop, 0.0)
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            failure.append(error)
            stop.set()

    supervisor = threading.Thread(target=supervise_quietly, name="supervisor", daemon=True)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                        TimeRemainingColumn(), console=console, transient=False)
    task = progress.add_task("starting the pipeline (loading models)", total=None)
    t_launch = time.time()
    t_warm = t_start = t_end = None
    phase = "starting"
    last_memory = last_view = 0.0
    view = Live(Group(progress), console=console, refresh_per_second=2, transient=True) if live else None
    try:
        supervisor.start()
        if view:
            view.start()
        while True:
            now = time.time()
            if stop and phase != "draining":
                break
            if not supervisor.is_alive() and phase != "draining":
                break
            if phase == "starting":
                if all(s in recorder.first_label for s in streams):
                    phase, t_warm = "warming", now
                    progress.update(task, description=f"warm-up {warmup:.0f} s (excluded)", total=warmup + seconds,
                                    completed=0)
                elif now - t_launch > startup_timeout:
                    missing = [s for s in streams if s not in recorder.first_label]
                    raise PipelineFailed(f"no label from {', '.join(missing)} within {startup_timeout:.0f} s of "
                                         f"starting; see the logs in {log_dir}")
            elif phase == "warming" and now - t_warm >= warmup:
                phase, t_start = "measuring", now
                t_end = t_start + seconds
                progress.update(task, description=f"measuring {seconds:.0f} s")
            elif phase == "measuring":
                progress.update(task, completed=warmup + (now - t_start))
                if now >= t_end:
                    phase = "draining"
                    progress.update(task, description="collecting the last labels", completed=warmup + seconds)
            elif phase == "draining" and now >= t_end + DRAIN_S:
                # Labels come in order per stream: once each stream has one for a frame captured after
                # the end, every label of a frame inside the measured time is here (or was dropped).
                if all(recorder.last_capture.get(s, 0.0) >= t_end for s in streams) or now >= t_end + DRAIN_MAX_S:
                    break
            if now - last_memory >= memory_interval:
                last_memory = now
                for child in children:
                    if child.process is not None and child.exit_code() is None:
                        kb = rss_kb(child.process.pid)
                        if kb is not None:
                            recorder.memory[child.name].append((now, kb))
                        used = cpu_seconds(child.process.pid)
                        if used is not None:
                            recorder.cpu[child.name].append((now, used))
                recorder.cpu["bench"].append((now, time.process_time()))
                busy = machine_busy_seconds()
                if busy is not None:
                    recorder.cpu["machine"].append((now, busy))
            if view and phase in ("warming", "measuring") and now - last_view >= 1.0:
                last_view = now
                since = t_start if t_start else t_warm
                partial = summarize(_tail(recorder, 4000), since, now)
                partial["title"] = "live (last labels)"
                view.update(Group(progress, render(partial)))
            if not subscriber.poll(50):
                continue
            for message, received in received_messages(subscriber, limit=1000):
                if message is None:
                    recorder.malformed += 1
                elif isinstance(message, wire.Label):
                    recorder.add_label(message, received)
                elif isinstance(message, wire.Stats):
                    recorder.add_stats(message)
                elif isinstance(message, (wire.StreamStart, wire.StreamEnd)):
                    recorder.events.append(f"{time.strftime('%H:%M:%S')} {message.stream}: "
                                           f"{'started' if isinstance(message, wire.StreamStart) else 'ended'}")
    finally:
        interrupted = bool(stop)  # Ctrl-C or SIGTERM, as opposed to the stop we give below
        if view:
            view.stop()
        stop.set()
        supervisor.join(timeout=30)
        subscriber.close()
        context.term()
    if failure:
        raise PipelineFailed(f"the supervisor failed: {failure[0]!r}")
    if t_start is None:
        raise PipelineFailed("stopped before the measurement began"
                             + ("" if all(s in recorder.first_label for s in streams) else
                                f" (no labels yet from {', '.join(s for s in streams if s not in recorder.first_label)}"
                                f"; see the logs in {log_dir})"))
    t_end = min(t_end, time.time())
    features = next(c for c in children if c.name.startswith("features"))
    meta = {
        "startup_s": (min(recorder.first_label.values()) if recorder.first_label else t_warm) - t_launch,
        "all_streams_labelled_after_s": t_warm - t_launch,
        "backend": _backend_from_log(features.log_path, log_offsets[features.name]),
        "restarts": {c.name: c.restarts for c in children if c.restarts},
        "events": recorder.events[-20:],
        "malformed": recorder.malformed,
        "interrupted": interrupted,
    }
    return recorder, t_start, t_end, meta


def _tail(recorder: Recorder, count: int) -> Recorder:
    return Recorder(recorder.streams, rows=recorder.rows[-count:], stats=recorder.stats)


def run_baselines(config: Config, with_backends: bool, console: Console) -> dict:
    from streamer import baselines

    results = {}
    console.print("[bold]baselines[/] (pipeline stopped): lecture loop ...")
    results["lecture_loop"] = baselines.lecture_loop(config)
    console.print("bare-model ceiling ...")
    results["model_ceiling"] = baselines.model_ceiling(config)
    console.print("LSTM step alone ...")
    results["lstm_advance"] = baselines.lstm_advance()
    if with_backends:
        console.print("every backend ...")
        results["backends"] = baselines.backend_table(config)
    return results


def checks(report: dict) -> dict:
    """The issue's targets that this run can judge, each with its figures.

    A run whose captures dropped frames (more than 1% of those read) ran the pipeline at its
    capacity: its throughput is judged against the baselines. A run without drops was below
    capacity: its latency is judged against the bare model's batch-1 latency.
    """
    found = {}
    overall, baselines, counts = report["overall"], report.get("baselines") or {}, report["counts"]
    throughput = overall["throughput_labels_per_s"]
    growth = report["latency_growth"]
    saturated = counts["dropped"]["total"] > 0.01 * max(1, counts["frames_captured"])
    if growth["judged"]:
        found["latency flat (last-tenth p99 <= 1.2x first-tenth)"] = {
            "met": not growth["grew"], "detail": f"ratio {growth['ratio']:.2f}"}
    if saturated and "lecture_loop" in baselines:
        ratio = throughput / baselines["lecture_loop"]["frames_per_s"]
        found["saturated throughput >= 10x lecture loop"] = {"met": ratio >= 10, "detail": f"{ratio:.2f}x"}
    if saturated and "model_ceiling" in baselines:
        ceiling = baselines["model_ceiling"]
        ratio = throughput / ceiling["frames_per_s"]
        found["saturated throughput >= 0.75x bare-model ceiling"] = {
            "met": ratio >= 0.75, "detail": f"{ratio:.2f}x of {ceiling['frames_per_s']:.0f} frames/s"}
    if not saturated and "model_ceiling" in baselines:
        limit = 2 * baselines["model_ceiling"]["batch1_latency_ms"] + 10
        p99 = overall["latency_ms"]["p99"]
        dropped = counts["dropped"]["total"]
        found["below capacity: no drops, p99 <= 2x batch-1 latency + 10 ms"] = {
            "met": p99 <= limit and dropped == 0, "detail": f"p99 {p99:.1f} ms vs {limit:.1f} ms, {dropped} dropped"}
    if "lstm_advance" in baselines:
        lstm = baselines["lstm_advance"]
        found[f"LSTM step >= 2x recomputing ({lstm['streams']} streams, hidden {lstm['hidden']} x {lstm['layers']})"] = {
            "met": lstm["staggered_over_batched"] >= 2 and lstm["staggered_over_per_stream"] >= 2,
            "detail": f"{lstm['staggered_over_per_stream']:.2f}x recomputing per stream, "
                      f"{lstm['staggered_over_batched']:.2f}x recomputing batched"}
    return found


def run_bench(args: argparse.Namespace, console: Console | None = None, stop: StopFlag | None = None) -> dict:
    console = console or Console()
    stop = StopFlag() if stop is None else stop  # (an unset flag is falsy: `or` would replace it)
    seconds = args.seconds if args.seconds is not None else (600.0 if args.soak else 20.0)
    config = bench_config(from_args(args), args.fps)
    sources = list(args.source) or ["synthetic"] * args.streams
    memory_interval = args.memory_interval or (5.0 if seconds >= 120 else 1.0)
    loadavg_start = list(os.getloadavg())
    recorder, t_start, t_end, meta = run_pipeline(
        config, sources, seconds, args.warmup, console=console, stop=stop, startup_timeout=args.startup_timeout,
        memory_interval=memory_interval, live=not args.no_live)
    report = summarize(recorder, t_start, t_end)
    report["run"] = {
        "streams": len(sources), "sources": sources, "fps": args.fps, "seconds": seconds,
        "measured_seconds": t_end - t_start, "warmup_s": args.warmup,
        "warmup_note": (f"excluded: the {meta['all_streams_labelled_after_s']:.1f} s until every stream had its "
                        f"first label (model loading, first inferences), then {args.warmup:.1f} s more; "
                        f"only labels of frames captured after that count"),
        "crop": config.capture.crop, "resize": config.capture.resize,
        "weights": "trained bundle" if Path(config.features.bundle).exists() else "random (no bundle)",
        "max_batch": config.features.max_batch, "max_wait_ms": config.features.max_wait_ms,
        "feature_workers": config.supervisor.feature_workers, "threads": config.features.threads,
        "backend": meta["backend"], **{k: v for k, v in meta.items() if k != "backend"},
    }
    report["machine"] = {"cpu": cpu_model(), "cores": os.cpu_count(), "loadavg_start": loadavg_start,
                         "python": platform.python_version()}
    if args.baseline and not meta["interrupted"]:
        report["baselines"] = run_baselines(config, args.backends, console)
        throughput = report["overall"]["throughput_labels_per_s"]
        baselines = report["baselines"]
        report["ratios"] = {
            "pipeline / lecture loop": throughput / baselines["lecture_loop"]["frames_per_s"],
            "pipeline / bare-model ceiling": throughput / baselines["model_ceiling"]["frames_per_s"],
            # the same per CPU-second each got, which other jobs on the machine disturb far less
            "per CPU-second: feature worker / bare model": (
                report["counts"]["frames_per_feature_cpu_s"] / baselines["model_ceiling"]["frames_per_cpu_s"]
                if baselines["model_ceiling"]["frames_per_cpu_s"] else None),
        }
    report["checks"] = checks(report)
    report["machine"]["loadavg_end"] = list(os.getloadavg())
    report["title"] = (f"pipeline benchmark: {len(sources)} stream(s) at {args.fps:g} frames/s, "
                       f"{report['run']['measured_seconds']:.0f} s measured ({report['run']['backend'] or '?'})")
    report["caption"] = (f"latency = camera frame -> label received here; {report['run']['warmup_note']}; "
                         f"load average {' '.join(f'{v:.2f}' for v in report['machine']['loadavg_end'])}")
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--streams", type=int, default=1, help="synthetic streams to run (ignored with --source)")
    parser.add_argument("--fps", type=float, default=15.0, help="frames per second each capture samples")
    parser.add_argument("--seconds", type=float, default=None,
                        help="seconds measured after the warm-up (default 20; 600 with --soak)")
    parser.add_argument("--source", action="append", default=[],
                        help="a source instead of synthetic streams: file, folder, rtsp://..., NAME=SOURCE (repeatable)")
    parser.add_argument("--warmup", type=float, default=3.0,
                        help="seconds excluded after every stream's first label (default 3)")
    parser.add_argument("--baseline", action="store_true",
                        help="also measure the lecture loop, the bare-model ceiling and the LSTM step alone")
    parser.add_argument("--backends", action="store_true", help="with --baseline: time every backend too")
    parser.add_argument("--soak", action="store_true",
                        help="a long run (600 s unless --seconds) sampling every process's memory")
    parser.add_argument("--memory-interval", type=float, default=0.0,
                        help="seconds between memory samples (default 1, or 5 for runs of 2 minutes or more)")
    parser.add_argument("--startup-timeout", type=float, default=180.0,
                        help="give up when a stream has no label this long after starting")
    parser.add_argument("--json", dest="json_path", default=None, metavar="PATH", help="write the report here")
    parser.add_argument("--no-live", action="store_true", help="no progress bar or live table while running")


def main(args: argparse.Namespace) -> int:
    setup_logging("bench")
    logging.getLogger("up").setLevel(logging.WARNING)  # child start lines would break the live view
    # Piped to a file or a CI log, rich would wrap the tables at 80 columns.
    console = Console() if sys.stdout.isatty() else Console(width=160)
    try:
        report = run_bench(args, console=console)
    except PipelineFailed as error:
        console.print(f"[red]bench failed:[/] {error}")
        return 1
    console.print(render(report))
    console.print(render_stages(report))
    console.print(render_summary(report))
    if args.json_path:
        path = Path(args.json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2, default=float))
        console.print(f"report written to {path}")
    return 0
