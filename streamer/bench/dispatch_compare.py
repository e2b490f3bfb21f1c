"""`run.py bench --dispatch` and `--slow-worker K`: how frames are dispatched to feature workers, measured.

`--dispatch`: the same streams with credit dispatch and with push dispatch (`capture.dispatch`),
phases alternating push, credit, push, ... (`--rounds` credit phases, each between two push ones);
`--push-cameras-per-process 1` gives push a capture process per camera, as before they were shared.
`--slow-worker K`: with credit dispatch, one feature worker alone against two, the second slowed
K times (`features.slowdown`), alternating the same way.

Dispatch is fixed when the processes start, so each phase is a fresh pipeline measured the way
`bench` measures one (streamer/bench/pipeline.py: start, every stream's first label, warm-up,
`--phase-seconds` measured, drain). Per phase: latency p50/p99, labels/s, frames per CPU-second
of the feature workers (steadier than labels/s when other jobs share the machine), the mean batch time
(a batch's start to its features) and the mean batch, p50 over the mean batch time, the
transport share of the latency, stale frames dropped at the captures, frames per feature worker
and the load average (and, in the JSON, each process's CPU). Each phase of the second kind is
compared with the mean of its two neighbours (streamer/bench/phases.py), so a load that drifts
steadily cancels out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table

from configs.settings import Config, replace
from streamer.bench.phases import bracketed, median_or_none
from streamer.bench.pipeline import bench_config, run_pipeline
from streamer.bench.record import summarize
from streamer.transport.sockets import StopFlag


@dataclass
class Variant:
    name: str
    config: Config  # before bench_config: each phase takes fresh ports
    child_sets: dict[str, list[str]] = field(default_factory=dict)


def dispatch_variants(config: Config, push_cameras_per_process: int = 0) -> tuple[Variant, Variant]:
    """(the reference, the one compared with it): push, then credit. `push_cameras_per_process`: push's
    `capture.cameras_per_process` when not credit's (1: the pipeline before capture processes were shared)."""
    shared = config.capture.cameras_per_process
    if not push_cameras_per_process or push_cameras_per_process == shared:
        return (Variant("push", replace(config, "capture", dispatch="push")),
                Variant("credit", replace(config, "capture", dispatch="credit")))
    return (Variant(f"push, {push_cameras_per_process}/process",
                    replace(config, "capture", dispatch="push", cameras_per_process=push_cameras_per_process)),
            Variant(f"credit, {shared}/process", replace(config, "capture", dispatch="credit")))


def slow_worker_variants(config: Config, slowdown: float) -> tuple[Variant, Variant]:
    credit = replace(config, "capture", dispatch="credit")
    return (Variant("fast worker alone", replace(credit, "supervisor", feature_workers=1)),
            Variant(f"fast + {slowdown:g}x slow worker", replace(credit, "supervisor", feature_workers=2),
                    {"features:1": [f"features.slowdown={slowdown}"]}))


def measure(variants: tuple[Variant, Variant], sources: list[str], fps: float, *, phase_s: float, rounds: int,
            warmup_s: float, console: Console) -> dict:
    reference, compared = variants
    phases = []
    for index in range(2 * rounds + 1):
        variant = compared if index % 2 else reference
        console.print(f"phase {index + 1}/{2 * rounds + 1}: {variant.name} (a fresh pipeline) ...")
        config = bench_config(variant.config, fps)
        # a flag per phase: the pipeline sets it to stop; Ctrl-C sets it too (and ends the comparison)
        recorder, t_start, t_end, meta = run_pipeline(config, sources, phase_s, warmup_s, console=console,
                                                      stop=StopFlag(), live=False, child_sets=variant.child_sets)
        phases.append(_phase(variant.name, bool(index % 2), summarize(recorder, t_start, t_end)))
        phase = phases[-1]
        console.print(f"  p50 {phase['p50_ms']:.1f} ms, p99 {phase['p99_ms']:.1f} ms, "
                      f"{phase['labels_per_s']:.1f} labels/s, batch {phase['mean_batch_ms']:.1f} ms, "
                      f"load {phase['loadavg']:.2f}")
        if meta["interrupted"]:
            break
    flagged = [p["compared"] for p in phases]
    ratios = {key: median_or_none(bracketed([p[key] for p in phases], flagged))
              for key in ("labels_per_s", "frames_per_feature_cpu_s", "p50_ms", "p99_ms")}
    return {"reference": reference.name, "compared": compared.name, "phases": phases, "ratios": ratios,
            "streams": len(sources), "fps": fps}


def _phase(name: str, compared: bool, report: dict) -> dict:
    overall, counts = report["overall"], report["counts"]
    batch_ms = counts["mean_batch_ms"]
    p50 = overall["latency_ms"]["p50"]
    return {"variant": name, "compared": compared, "p50_ms": p50, "p99_ms": overall["latency_ms"]["p99"],
            "labels_per_s": overall["throughput_labels_per_s"], "mean_batch_ms": batch_ms,
            "frames_per_feature_cpu_s": counts["frames_per_feature_cpu_s"],
            "mean_batch": counts["mean_batch"], "p50_over_batch": p50 / batch_ms if batch_ms else None,
            "transport_share": overall["stage_share"]["transport"],
            "dropped_stale": counts["dropped"]["capture_stale"],
            "frames_by_worker": {name: item["frames"] for name, item in counts["by_feature_worker"].items()},
            "captures_cpu_percent": sum(value for name, value in report["cpu_percent"].items()
                                        if name.startswith("capture:")),
            "cpu_percent": report["cpu_percent"], "loadavg": os.getloadavg()[0]}


def render(result: dict) -> Table:
    table = Table(title=f"{result['compared']} against {result['reference']}: {result['streams']} streams at "
                        f"{result['fps']:g} fps, one fresh pipeline per phase")
    columns = ("phase", "dispatch", "p50 ms", "p99 ms", "labels/s", "frames / feature CPU-s", "batch ms", "mean batch", "p50 / batch",
               "transport", "stale dropped", "captures CPU", "frames per worker", "load (1 min)")
    for column in columns:
        table.add_column(column, justify="left" if column in ("dispatch", "frames per worker") else "right")
    for index, p in enumerate(result["phases"], 1):
        table.add_row(str(index), p["variant"], f"{p['p50_ms']:.1f}", f"{p['p99_ms']:.1f}", f"{p['labels_per_s']:.1f}",
                      f"{p['frames_per_feature_cpu_s']:.0f}", f"{p['mean_batch_ms']:.1f}", f"{p['mean_batch']:.2f}",
                      f"{p['p50_over_batch']:.2f}" if p["p50_over_batch"] is not None else "-",
                      f"{100 * p['transport_share']:.1f}%", str(p["dropped_stale"]),
                      f"{p['captures_cpu_percent']:.0f}%",
                      ", ".join(f"{k.split(':', 1)[1]}: {v}" for k, v in p["frames_by_worker"].items()),
                      f"{p['loadavg']:.2f}")
    ratios = result["ratios"]
    table.caption = (f"{result['compared']} / {result['reference']}, each phase against its two neighbours, median: "
                     + "; ".join(f"{key} {value:.2f}" for key, value in ratios.items() if value is not None)
                     + "; on a shared machine the load average moves the figures")
    return table
