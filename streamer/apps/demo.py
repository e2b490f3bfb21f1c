"""`run.py demo`: from nothing to live labels on one machine.

1. writes the synthetic action set (real .avi files in UCF101's layout) to `data.ucf_root`;
2. trains both stages with the quick recipe in configs/demo.toml: prepare -> train-cnn ->
   extract -> train-lstm, which writes the bundle the live workers load by default;
3. runs the live pipeline (`run.py up`) on synthetic cameras that change activity, and shows
   live labels, end-to-end latency and live accuracy against the cameras' ground truth.
A second run finds the bundle and is streaming within seconds (`--retrain` trains again).
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from configs.exit_codes import ExitCode
from configs.settings import CONFIG_DIR, Config, load_config
from streamer.transport.sockets import StopFlag
from streamer.apps.subscriber import View, subscribe

DEMO_CONFIG = CONFIG_DIR / "demo.toml"


def train_everything(config: Config, console: Console) -> None:
    """Every training stage, each skipping the work already done."""
    from models.extract import extract
    from models.int8 import make_int8_if_available
    from models.prepare import prepare
    from models.synthetic_set import write_synthetic_set
    from models.train_cnn import train_cnn
    from models.train_lstm import train_lstm

    synthetic = config.synthetic
    started = time.perf_counter()
    console.rule("1/5 synthetic action set")
    write_synthetic_set(Path(config.data.ucf_root), clips_per_class=synthetic.clips_per_class,
                        frames_per_clip=synthetic.frames_per_clip, seed=synthetic.seed, groups=synthetic.groups)
    console.rule("2/5 prepare: videos -> frames")
    prepare(config, console=console)
    console.rule("3/5 train the per-frame CNN")
    train_cnn(config, console=console)
    console.rule("4/5 extract 512-d features")
    extract(config, console=console)
    console.rule("5/5 train the LSTM on 32-frame windows")
    train_lstm(config, bundle_out=Path(config.lstm.bundle), console=console)
    make_int8_if_available(config, Path(config.lstm.bundle), console)
    console.print(f"[bold]training finished in {time.perf_counter() - started:.0f} s[/bold]")


def summary(view: View) -> Table:
    table = Table(title="demo summary")
    for column in ("stream", "labels", "settled labels", "live accuracy"):
        table.add_column(column, justify="right")
    for name, item in sorted(view.streams.items()):
        accuracy = f"{100 * item.correct / item.judged:.1f}%" if item.judged else "-"
        table.add_row(name, str(item.messages), str(item.judged), accuracy)
    judged = sum(item.judged for item in view.streams.values())
    correct = sum(item.correct for item in view.streams.values())
    if view.latencies_ms:
        p50, p99 = np.percentile(view.latencies_ms, [50, 99])
        table.caption = (f"overall live accuracy {100 * correct / max(judged, 1):.1f}% over {judged} settled labels; "
                         f"end-to-end latency p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    return table


def run_demo(config: Config, *, seconds: float, streams: int, retrain: bool, console: Console) -> View:
    bundle = Path(config.lstm.bundle)
    if retrain or not bundle.exists():
        train_everything(config, console)
    else:
        console.print(f"reusing the trained bundle {bundle} (--retrain trains again)")
    from streamer.ops.supervisor import run_up

    console.rule(f"live: {streams} synthetic camera(s) for {seconds:.0f} s")
    stop = StopFlag()
    pipeline = threading.Thread(target=run_up, args=(config, ["synthetic"] * streams), kwargs={"stop": stop, "console": console},
                                name="pipeline")
    pipeline.start()
    try:
        view = subscribe(config, [], as_json=False, count=0, seconds=seconds, console=console, stop=stop)
    finally:
        stop.set()
        pipeline.join()
    console.print()
    console.print(summary(view))
    return view


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=str(DEMO_CONFIG), help="recipe and pipeline settings (TOML)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one value (repeatable)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to run live (default 60)")
    parser.add_argument("--streams", type=int, default=2, help="synthetic cameras to run live (default 2)")
    parser.add_argument("--retrain", action="store_true", help="train again even if the bundle exists")


def main(args: argparse.Namespace) -> int:
    console = Console()
    logging.basicConfig(level="INFO", format="%(message)s", force=True,
                        handlers=[RichHandler(console=console, show_path=False)])
    config = load_config(args.config, args.overrides)
    view = run_demo(config, seconds=args.seconds, streams=args.streams, retrain=args.retrain, console=console)
    return ExitCode.OK if view.labels else ExitCode.FAILED
