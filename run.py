#!/usr/bin/env python3
"""One command line for the recognizer: the live pipeline, its processes, training and benchmarks.

Each subcommand is a module with `add_arguments(parser)` and `main(args) -> int`, so tests call
`main` directly without a shell. `python run.py SUBCOMMAND --help` lists each one's options.
An `ActionableError` raised anywhere below becomes its message and exit code 2 here, and only
here (the codes: configs/exit_codes.py).
"""

from __future__ import annotations

import sys

from streamer.runtime.lifetime import stop_with_supervisor

if __name__ == "__main__":
    stop_with_supervisor()  # first: a child of `run.py up` must not outlive it, even while importing torch

import argparse  # noqa: E402 - after the parent-death request on purpose
import importlib  # noqa: E402

from configs.exit_codes import ExitCode  # noqa: E402
from configs.settings import ActionableError  # noqa: E402

# subcommand -> (module, one-line help). Modules are imported only when their subcommand runs,
# so `run.py subscribe` never pays for importing torch.
SUBCOMMANDS = {
    "demo": ("streamer.apps.demo", "make the synthetic set, train both stages, then run live (first run ~5 min)"),
    "up": ("streamer.ops.supervisor", "start capture(s), feature worker(s) and the LSTM worker; restart any that die"),
    "capture": ("streamer.capture.process", "one capture process: a source -> frames on ZeroMQ"),
    "features": ("workers.feature_worker", "one feature worker: frames -> ResNet-18 512-d features"),
    "lstm": ("workers.lstm_worker", "the LSTM worker: features -> labels on the label topic"),
    "subscribe": ("streamer.apps.subscriber", "live table (or JSON lines) of the latest label per stream"),
    "dashboard": ("streamer.apps.dashboard.cli", "web dashboard of every stream, and Prometheus /metrics"),
    "label": ("streamer.apps.label", "label every sampled frame of video files; timelines, segments, annotated MP4"),
    "bench": ("streamer.bench.cli", "latency and throughput benchmark of the real pipeline"),
    "keys": ("streamer.transport.security", "make CURVE key pairs for encrypted, authenticated sockets"),
    "make-synthetic": ("models.synthetic_set", "write the synthetic action set in UCF101's layout"),
    "prepare": ("models.prepare", "UCF101-layout videos -> frames per split, with a manifest"),
    "train-cnn": ("models.train_cnn", "fine-tune the per-frame ResNet-18"),
    "extract": ("models.extract", "512-d features for every frame, one file per video"),
    "train-lstm": ("models.train_lstm", "train the LSTM on 32-frame feature sequences; writes the bundle"),
    "evaluate": ("models.evaluate", "frame, window and video accuracy, per class, confusion matrix"),
    "quantize": ("models.int8", "int8 feature model for the bundle (NNCF), kept only if its labels match float32"),
}

# Subcommands whose module imports torch (or cv2) take their options from a light module, so that
# `--help` answers at once: subcommand -> "module:function".
OPTIONS = {
    "prepare": "configs.settings:add_config_arguments",
    "train-cnn": "models.stage_options:train_cnn",
    "extract": "models.stage_options:extract",
    "train-lstm": "models.stage_options:train_lstm",
    "evaluate": "models.stage_options:evaluate",
    "quantize": "models.stage_options:quantize",
}


def add_arguments(name: str, module_name: str, parser: argparse.ArgumentParser) -> None:
    """The subcommand's options, read without importing what only running it needs."""
    options_module, _, function = OPTIONS.get(name, f"{module_name}:add_arguments").partition(":")
    getattr(importlib.import_module(options_module), function)(parser)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="run.py", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")
    chosen = argv[0] if argv else None
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text,
                                  formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        sub.set_defaults(module=module_name)
        if name == chosen:
            add_arguments(name, module_name, sub)
    args = parser.parse_args(argv)
    try:
        return int(importlib.import_module(args.module).main(args) or 0)
    except ActionableError as error:
        print(f"run.py {args.command}: error: {error}", file=sys.stderr)
        return ExitCode.USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
