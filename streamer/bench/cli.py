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
bare-model ceiling of the feature worker's backend (streamer/bench/baselines.py) and the LSTM step
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
from pathlib import Path

from rich.console import Console
from rich.text import Text

from configs.exit_codes import ExitCode
from configs.settings import Config, add_config_arguments, from_args
from models.int8_report import guard_line, read_guard
from streamer.bench.checks import checks
from streamer.bench.pipeline import PipelineFailed, bench_config, run_pipeline
from streamer.bench.procfs import cpu_model
from streamer.bench.record import summarize
from streamer.bench.views import render, render_stages, render_summary, verdict
from streamer.runtime.logs import setup_logging
from streamer.transport.sockets import StopFlag

log = logging.getLogger("bench")


def run_baselines(config: Config, with_backends: bool, console: Console) -> dict:
    from streamer.bench import baselines

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
    report["int8"] = read_guard(Path(config.features.bundle))  # the label guard of the bundle's int8 model
    report["checks"] = checks(report)
    report["verdict"] = verdict(report)
    report["machine"]["loadavg_end"] = list(os.getloadavg())
    report["title"] = (f"pipeline benchmark: {len(sources)} stream(s) at {args.fps:g} frames/s, "
                       f"{report['run']['measured_seconds']:.0f} s measured ({report['run']['backend'] or '?'})")
    report["caption"] = (f"warm-up {report['run']['warmup_note']}; "
                         f"load average {' '.join(f'{v:.2f}' for v in report['machine']['loadavg_end'])}")
    return report


def dashboard_cost(args: argparse.Namespace, console: Console) -> int:
    from streamer.bench import dashboard_cost

    config = bench_config(from_args(args), args.fps)
    result = dashboard_cost.measure(config, list(args.source) or ["synthetic"] * args.streams,
                                    phase_s=args.phase_seconds, rounds=args.rounds, warmup_s=args.warmup,
                                    browser_path=args.browser, console=console, stop=StopFlag())
    console.print(dashboard_cost.render(result))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(result, indent=2))
    return 0


def dispatch_comparison(args: argparse.Namespace, console: Console) -> int:
    from streamer.bench import dispatch_compare

    config = from_args(args)
    variants = (dispatch_compare.slow_worker_variants(config, args.slow_worker) if args.slow_worker
                else dispatch_compare.dispatch_variants(config, args.push_cameras_per_process))
    result = dispatch_compare.measure(variants, list(args.source) or ["synthetic"] * args.streams, args.fps,
                                      phase_s=args.phase_seconds, rounds=args.rounds, warmup_s=args.warmup,
                                      console=console)
    console.print(dispatch_compare.render(result))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(result, indent=2))
    return 0


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
    parser.add_argument("--dashboard", action="store_true",
                        help="instead: throughput with and without one dashboard and one browser, alternating "
                             "phases of --phase-seconds in one run (streamer/bench/dashboard_cost.py)")
    parser.add_argument("--dispatch", action="store_true",
                        help="instead: credit dispatch against push dispatch, alternating phases of --phase-seconds, "
                             "each a fresh pipeline (streamer/bench/dispatch_compare.py)")
    parser.add_argument("--push-cameras-per-process", type=int, default=0, metavar="N",
                        help="with --dispatch: push's capture.cameras_per_process (default: credit's; 1: a capture "
                             "process per camera, the pipeline before they were shared)")
    parser.add_argument("--slow-worker", type=float, default=0.0, metavar="K",
                        help="instead: one feature worker alone against two, the second K times slower "
                             "(features.slowdown), credit dispatch, alternating phases")
    parser.add_argument("--phase-seconds", type=float, default=15.0,
                        help="with --dashboard, --dispatch, --slow-worker: seconds per phase")
    parser.add_argument("--rounds", type=int, default=2,
                        help="with --dashboard, --dispatch, --slow-worker: pairs of phases (reference, compared)")
    parser.add_argument("--browser", default="/usr/bin/chromium", help="with --dashboard: the Chromium to drive")


def main(args: argparse.Namespace) -> int:
    setup_logging("bench")
    logging.getLogger("up").setLevel(logging.WARNING)  # child start lines would break the live view
    # Piped to a file or a CI log, rich would wrap the tables at 80 columns.
    console = Console() if sys.stdout.isatty() else Console(width=160)
    if args.dashboard:
        return dashboard_cost(args, console)
    if args.dispatch or args.slow_worker:
        return dispatch_comparison(args, console)
    try:
        report = run_bench(args, console=console)
    except PipelineFailed as error:
        console.print(f"[red]bench failed:[/] {error}")
        return ExitCode.FAILED
    console.print(Text(report["verdict"], style="bold"))
    console.print(render(report, width=console.width))
    console.print(render_stages(report))
    console.print(render_summary(report))
    if report["int8"] is not None:
        console.print(guard_line(report["int8"]))
    if args.json_path:
        path = Path(args.json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2, default=float))
        console.print(f"report written to {path}")
    return ExitCode.OK
