"""What the workers run: the trained bundle when there is one, else a clearly logged fallback.

Feature worker: bundle CNN -> ImageNet ResNet-18 (when its file is on this machine) -> random.
LSTM worker: bundle LSTM -> random weights over the synthetic classes.
Random weights keep the pipeline runnable for tests and first try-outs; the log says so loudly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from configs.settings import Config
from models import bundle
from models.networks import FeatureExtractor, FrameCNN, SequenceLSTM
from models.capture_preset import capture_preset
from models.presets import Preset
from models.sequence_inputs import checkpoint_inputs

log = logging.getLogger(__name__)

RANDOM_SEED = 0  # random fallbacks are seeded, so every worker and test sees the same model


@dataclass
class LoadedExtractor:
    extractor: FeatureExtractor
    preset: Preset
    weights: str  # "trained bundle <path>", "imagenet", or "random"


@dataclass
class LoadedSequenceModel:
    model: SequenceLSTM
    classes: list[str]
    window: int
    model_id: str
    weights: str
    inputs: str = "features"  # what the LSTM reads per frame: features or their differences
    metrics: dict = field(default_factory=dict)  # what training recorded (e.g. the activity thresholds it chose)


def load_extractor(config: Config) -> LoadedExtractor:
    path = Path(config.features.bundle)
    if path.exists():
        checkpoint = bundle.load_cnn(path)
        log.info("feature weights: trained bundle %s (%d classes, preset %d/%d)", path,
                 len(checkpoint.classes), checkpoint.preset.resize, checkpoint.preset.crop)
        return LoadedExtractor(FeatureExtractor(checkpoint.model).eval(), checkpoint.preset,
                               f"trained bundle {path}")
    preset = capture_preset(config)
    if config.features.imagenet_fallback:
        from models.pretrained import ImageNetWeightsMissing, imagenet_resnet18

        try:
            cnn = FrameCNN(num_classes=1000, backbone=imagenet_resnet18())
            log.warning("no bundle at %s: using ImageNet ResNet-18 features (labels need a trained LSTM)", path)
            return LoadedExtractor(FeatureExtractor(cnn).eval(), preset, "imagenet")
        except ImageNetWeightsMissing:
            pass
    torch.manual_seed(RANDOM_SEED)
    log.warning("no bundle at %s and no ImageNet weights: RANDOM CNN weights, labels are meaningless. "
                "Train one with `python run.py demo` (or train-cnn + train-lstm)", path)
    return LoadedExtractor(FeatureExtractor(FrameCNN(num_classes=8)).eval(), preset, "random")


def load_sequence_model(config: Config) -> LoadedSequenceModel:
    path = Path(config.lstm.bundle)
    if path.exists():
        checkpoint = bundle.load_lstm(path)
        try:
            model_id = bundle.model_id(path)
        except bundle.BundleError:  # an lstm.pt checkpoint, not a joined bundle: no model id of its own
            model_id = f"lstm:{path.name}"
        log.info("LSTM weights: trained bundle %s (model %s, hidden %d x %d layers, window %d)", path, model_id,
                 checkpoint.hidden, checkpoint.layers, checkpoint.window)
        return LoadedSequenceModel(checkpoint.model.eval(), checkpoint.classes, checkpoint.window, model_id,
                                   f"trained bundle {path}", checkpoint_inputs(checkpoint.metrics), checkpoint.metrics)
    from models.synthetic import ACTIVITIES

    torch.manual_seed(RANDOM_SEED)
    model = SequenceLSTM(len(ACTIVITIES), hidden=config.lstm.random_hidden, layers=config.lstm.random_layers)
    log.warning("no bundle at %s: RANDOM LSTM weights, labels are meaningless. Train one with `python run.py demo`",
                path)
    return LoadedSequenceModel(model.eval(), list(ACTIVITIES), config.lstm.random_window,
                               f"random-seed{RANDOM_SEED}", "random")

