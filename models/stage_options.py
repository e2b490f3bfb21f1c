"""The command-line options of the training stages that import torch, kept apart from them so
`run.py STAGE --help` answers before torch is loaded. Each stage module takes its function here
as its `add_arguments`; run.py reads them from here (see run.py's OPTIONS)."""

from __future__ import annotations

import argparse
import typing
from pathlib import Path

from configs.settings import DEFAULT_BUNDLE, WeightsChoice, add_config_arguments

WEIGHT_CHOICES = typing.get_args(WeightsChoice)
DEFAULT_STREAMS = 8  # test videos `evaluate` runs as parallel live streams


def train_cnn(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--weights", choices=WEIGHT_CHOICES, default=None,
                        help="start from ImageNet weights or from scratch (default: cnn.weights from the config)")


def extract(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)


def train_lstm(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--bundle-out", type=Path, default=Path(DEFAULT_BUNDLE),
                        help="also write the bundle here (what the live workers load)")


def evaluate(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--streams", type=int, default=DEFAULT_STREAMS,
                        help="test videos run as parallel live streams for the streamed-vs-offline check")


def quantize(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--bundle", default=None, help="the bundle to quantize (default: features.bundle)")
