"""The bench report as rich tables (pure: tested with a string console)."""

from __future__ import annotations

from rich import box
from rich.markup import escape
from rich.table import Table

from streamer.bench.record import GROUP_HELP, GROUPS, MIN_LABELS_PER_TENTH


def _ms(value: float) -> str:
    return f"{value:.1f}"


COLUMN_NOTES = (
    "latency ms: camera frame -> label received here; p50/p90/p99: that share of labels arrived faster",
    "read: frames the capture took from its source; sent: frames it passed to the feature workers",
    "dropped: frames replaced by a newer one before they could be sent (stale: the pipeline was busy)",
    "no label: sent, but no label arrived for it (dropped in a worker, or still in flight at the end)",
    "accuracy (n): labels equal to the synthetic camera's truth, among the n settled ones (whose whole "
    "window lies inside one activity)",
)


def verdict(report: dict) -> str:
    """The run in one line: labels/s, latency, drops, accuracy, ratios against the baselines, targets."""
    overall, dropped = report["overall"], report["counts"]["dropped"]["total"]
    latency, accuracy = overall["latency_ms"], overall["accuracy"]
    parts = [f"{overall['throughput_labels_per_s']:.1f} labels/s", f"latency p50 {_ms(latency['p50'])} ms, "
             f"p99 {_ms(latency['p99'])} ms", f"{dropped} frames dropped"]
    if accuracy["accuracy"] is not None:
        parts.append(f"settled accuracy {100 * accuracy['accuracy']:.1f}% of {accuracy['judged']}")
    for name, value in (report.get("ratios") or {}).items():
        if value is not None and not name.startswith("per CPU"):
            parts.append(f"{value:.2f}x {name.split(' / ')[1]}")
    checks = report.get("checks") or {}
    if checks:
        parts.append(f"targets met {sum(c['met'] for c in checks.values())} of {len(checks)}")
    return "verdict: " + "; ".join(parts)


NARROW_BELOW = 100  # narrower terminals get the table without labels, p90 and max (all in --json)


def render(report: dict, width: int | None = None) -> Table:
    """The report as one table: a row per stream and one for all (pure: tested with a string console).
    Fits 100 columns, and 80 without three columns; the caption explains every column."""
    narrow = width is not None and width < NARROW_BELOW
    notes = COLUMN_NOTES + (("labels, p90 and max: on a terminal of 100 columns, and in --json",) if narrow else ())
    table = Table(title=report.get("title", "pipeline benchmark"), box=box.SIMPLE_HEAD, show_edge=False,
                  pad_edge=False, collapse_padding=True, caption_justify="left",
                  caption="\n".join((*notes, report.get("caption") or "")).strip())
    columns = ("stream", "labels", "labels/s", "p50 ms", "p90", "p99", "max", "read", "sent", "dropped", "no label",
               "accuracy (n)")
    shown = [column not in ("labels", "p90", "max") or not narrow for column in columns]
    for column in (c for c, show in zip(columns, shown) if show):
        # the last two give way (wrap) on narrow terminals; names and figures are never cut
        table.add_column(column, justify="left" if column == "stream" else "right",
                         no_wrap=column not in ("no label", "accuracy (n)"))

    def row(name: str, item: dict, read: int, sent: int, dropped: int, style: str | None = None) -> None:
        latency, accuracy = item["latency_ms"], item["accuracy"]
        acc = f"{100 * accuracy['accuracy']:.1f}% ({accuracy['judged']})" if accuracy["accuracy"] is not None else "-"
        cells = (escape(name), str(item["labels"]), f"{item['throughput_labels_per_s']:.1f}", _ms(latency["p50"]),
                 _ms(latency["p90"]), _ms(latency["p99"]), _ms(latency["max"]), str(read), str(sent), str(dropped),
                 str(item["unlabelled"]), acc)
        table.add_row(*(cell for cell, show in zip(cells, shown) if show), style=style)

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
                     f" (not judged: a tenth of the run had fewer than {MIN_LABELS_PER_TENTH} labels, too few "
                     f"for its p99)"))
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
