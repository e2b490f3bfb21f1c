#!/usr/bin/env python3
"""One command line for the recognizer: the live pipeline, its processes, training and benchmarks.

Each subcommand is a module with `add_arguments(parser)` and `main(args) -> int`, so tests call
`main` directly without a shell. `python run.py SUBCOMMAND --help` lists each one's options.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from configs.settings import ActionableError
from streamer.runtime.lifetime import stop_with_supervisor

# subcommand -> (module, one-line help). Modules are imported only when their subcommand runs,
# so `run.py subscribe` never pays for importing torch.
SUBCOMMANDS = {
    "demo": ("streamer.apps.demo", "make the synthetic set, train both stages, then run live (first run ~5 min)"),
    "up": ("streamer.ops.supervisor", "start capture(s), feature worker(s) and the LSTM worker; restart any that die"),
    "capture": ("streamer.capture.process", "one capture process: a source -> frames on ZeroMQ"),
    "features": ("workers.feature_worker", "one feature worker: frames -> ResNet-18 512-d features"),
    "lstm": ("workers.lstm_worker", "the LSTM worker: features -> labels on the label topic"),
    "subscribe": ("streamer.apps.subscriber", "live table (or JSON lines) of the latest label per stream"),
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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="run.py", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")
    chosen = argv[0] if argv else None
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(module=module_name)
        if name == chosen:
            importlib.import_module(module_name).add_arguments(sub)
    args = parser.parse_args(argv)
    stop_with_supervisor()  # a child of `run.py up` must not outlive it
    try:
        return int(importlib.import_module(args.module).main(args) or 0)
    except ActionableError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
