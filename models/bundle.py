"""Self-describing checkpoints: everything needed to rebuild a model is saved beside its weights.

A checkpoint is a plain dict of tensors, numbers, strings and lists (loaded with
`weights_only=True`, never unpickled code). The live workers rebuild their models from it alone.
- `cnn.pt` (train-cnn): classes, preset, feature size, the FrameCNN state_dict.
- `lstm.pt` (train-lstm): classes, hidden size, layers, window, the SequenceLSTM state_dict.
- `bundle.pt`: both, plus `model_id`; this is what the workers load.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from configs.settings import ActionableError
from models.files import write_atomically
from models.networks import FEATURE_DIM, FrameCNN, SequenceLSTM
from models.presets import Preset

FORMAT = "cnn-lstm-bundle/1"


class BundleError(ActionableError, ValueError):
    """A checkpoint that is missing, unreadable, or does not fit what it is loaded into."""


@dataclass
class CnnCheckpoint:
    classes: list[str]
    preset: Preset
    model: FrameCNN
    weights_source: str  # "trained", "imagenet" or "random": what the log reports
    metrics: dict


@dataclass
class LstmCheckpoint:
    classes: list[str]
    hidden: int
    layers: int
    window: int
    model: SequenceLSTM
    weights_source: str
    metrics: dict


def save_cnn(path: Path, model: FrameCNN, classes: list[str], preset: Preset, metrics: dict) -> None:
    _save(path, {"format": FORMAT, "part": "cnn", "classes": list(classes), "preset": preset.to_dict(),
                 "feature_dim": FEATURE_DIM, "state_dict": model.state_dict(), "metrics": metrics})


def save_lstm(path: Path, model: SequenceLSTM, classes: list[str], window: int, metrics: dict) -> None:
    _save(path, {"format": FORMAT, "part": "lstm", "classes": list(classes),
                 "feature_dim": model.lstm.input_size, "hidden": model.lstm.hidden_size,
                 "layers": model.lstm.num_layers, "window": window,
                 "state_dict": model.state_dict(), "metrics": metrics})


def save_bundle(path: Path, cnn_path: Path, lstm_path: Path) -> str:
    """Join a CNN and an LSTM checkpoint into the bundle the workers load; returns its model id."""
    cnn, lstm = _read(cnn_path, "cnn"), _read(lstm_path, "lstm")
    if cnn["classes"] != lstm["classes"]:
        raise BundleError(f"{cnn_path} and {lstm_path} were trained on different class lists")
    if cnn["feature_dim"] != lstm["feature_dim"]:
        raise BundleError(f"{lstm_path} expects {lstm['feature_dim']}-d features, the CNN makes {cnn['feature_dim']}")
    digest = hashlib.sha256()
    for part in (cnn, lstm):
        for name, tensor in sorted(part["state_dict"].items()):
            digest.update(name.encode())
            digest.update(tensor.detach().float().cpu().numpy().tobytes())
    model_id = f"cnnlstm-{time.strftime('%Y%m%d')}-{digest.hexdigest()[:10]}"
    _save(path, {"format": FORMAT, "part": "bundle", "model_id": model_id, "cnn": cnn, "lstm": lstm})
    return model_id


def load_cnn(path: Path) -> CnnCheckpoint:
    """The CNN of a bundle or of a cnn.pt checkpoint."""
    data = _read(path, "bundle", "cnn")
    part = data["cnn"] if data["part"] == "bundle" else data
    if part["feature_dim"] != FEATURE_DIM:
        raise BundleError(f"{path}: CNN feature size {part['feature_dim']}, ResNet-18 makes {FEATURE_DIM}")
    model = FrameCNN(num_classes=len(part["classes"]))
    _load_state(model, part["state_dict"], path)
    return CnnCheckpoint(classes=list(part["classes"]), preset=Preset.from_dict(part["preset"]),
                         model=model, weights_source="trained", metrics=dict(part.get("metrics", {})))


def load_lstm(path: Path) -> LstmCheckpoint:
    """The LSTM of a bundle or of an lstm.pt checkpoint."""
    data = _read(path, "bundle", "lstm")
    part = data["lstm"] if data["part"] == "bundle" else data
    model = SequenceLSTM(num_classes=len(part["classes"]), hidden=int(part["hidden"]),
                         layers=int(part["layers"]), input_size=int(part["feature_dim"]))
    _load_state(model, part["state_dict"], path)
    return LstmCheckpoint(classes=list(part["classes"]), hidden=int(part["hidden"]),
                          layers=int(part["layers"]), window=int(part["window"]), model=model,
                          weights_source="trained", metrics=dict(part.get("metrics", {})))


def model_id(path: Path) -> str:
    data = _read(path, "bundle")
    return str(data["model_id"])


def _save(path: Path, payload: dict) -> None:
    write_atomically(path, lambda temporary: torch.save(payload, temporary))  # never half a checkpoint


def _read(path: Path, *parts: str) -> dict:
    path = Path(path)
    if not path.exists():
        raise BundleError(f"checkpoint {path} does not exist; train one (run.py demo or run.py train-cnn/train-lstm) "
                          f"or point the config at an existing file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise BundleError(f"checkpoint {path} cannot be read ({type(error).__name__}: {error}); "
                          f"it may be truncated or not a checkpoint of this project") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BundleError(f"{path} is not a {FORMAT} checkpoint")
    if data.get("part") not in parts:
        raise BundleError(f"{path} holds a {data.get('part')!r} checkpoint, expected one of {parts}")
    return data


def _load_state(model: torch.nn.Module, state_dict: dict, path: Path) -> None:
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as error:
        first_line = str(error).splitlines()[0]
        raise BundleError(f"{path}: weights do not fit the model described beside them ({first_line})") from None


def int8_dir(path: Path) -> Path:
    """Where the int8 feature model made for this bundle lives (models/int8.py): beside it, keyed by its model id."""
    return Path(path).parent / "int8" / model_id(path)
