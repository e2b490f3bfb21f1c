"""What the bench received (labels, stats, memory, CPU) and the report made from it (pure: no I/O)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from streamer.apps.subscriber import is_settled
from streamer.bench.percentiles import percentiles
from streamer.transport import wire

STATS_INTERVAL_S = 0.5  # the bench asks every process for counters this often
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
# One row per label received: its stream's index in Recorder.streams, the capture time, the
# end-to-end latency (ms), one column per stage group (ms), whether it was settled and correct,
# and its sequence number. COLUMN names each column's index in the summary's array.
COLUMNS = ("stream", "t_capture", "latency_ms", *GROUPS, "settled", "correct", "seq")
COLUMN = {name: index for index, name in enumerate(COLUMNS)}


@dataclass
class Recorder:
    """Everything received, kept as plain rows so summarising is a few numpy calls."""

    streams: list[str]
    rows: list[tuple] = field(default_factory=list)  # one tuple per label, in the order of COLUMNS
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
        row = {"stream": index, "t_capture": label.t_capture, "latency_ms": latency, **dict(zip(GROUPS, groups)),
               "settled": settled, "correct": settled and label.label == label.truth, "seq": label.seq}
        self.rows.append(tuple(row[name] for name in COLUMNS))

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
FEATURE_COUNTERS = ("frames", "dropped", "batches", "cnn_ms_total")
LSTM_COUNTERS = ("labels", "dropped", "steps", "gaps")


def summarize(recorder: Recorder, t_start: float, t_end: float) -> dict:
    """The report for labels whose frame was captured in [t_start, t_end) (pure: no I/O)."""
    seconds = max(1e-9, t_end - t_start)
    t_capture, latency_ms, stream = COLUMN["t_capture"], COLUMN["latency_ms"], COLUMN["stream"]
    rows = np.array([r for r in recorder.rows if t_start <= r[t_capture] < t_end],
                    dtype=np.float64).reshape(-1, len(COLUMNS))

    def block(selected: np.ndarray) -> dict:
        latency = selected[:, latency_ms]
        mean_latency = float(latency.mean()) if latency.size else 0.0
        stages = {name: float(selected[:, COLUMN[name]].mean()) if latency.size else 0.0 for name in GROUPS}
        judged, correct = int(selected[:, COLUMN["settled"]].sum()), int(selected[:, COLUMN["correct"]].sum())
        seqs = selected[:, COLUMN["seq"]]
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
        item = block(rows[rows[:, stream] == index])
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
    by_worker = {}
    for process in feature_processes:
        counts, span, _ = _counter_delta(recorder.stats[process], FEATURE_COUNTERS, t_start, t_end)
        feature_seconds = max(feature_seconds, span)
        for k, v in counts.items():
            feature_counts[k] += v
        by_worker[process] = {"frames": int(counts["frames"]), "batches": int(counts["batches"]),
                              "mean_batch_ms": counts["cnn_ms_total"] / counts["batches"] if counts["batches"] else 0.0}
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
        # a batch's start to its features, averaged over batches (others may have run beside it)
        "mean_batch_ms": feature_counts["cnn_ms_total"] / feature_counts["batches"] if feature_counts["batches"] else 0.0,
        "by_feature_worker": by_worker,
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
    captured = rows[:, t_capture]
    first = rows[captured < t_start + tenth][:, latency_ms]
    last = rows[captured >= t_end - tenth][:, latency_ms]
    by_tenth = []
    for k in range(10):
        inside = rows[(captured >= t_start + k * tenth) & (captured < t_start + (k + 1) * tenth)][:, latency_ms]
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


def tail(recorder: Recorder, count: int) -> Recorder:
    return Recorder(recorder.streams, rows=recorder.rows[-count:], stats=recorder.stats)
