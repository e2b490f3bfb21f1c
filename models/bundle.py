"""Self-describing checkpoints: everything needed to rebuild a model is saved beside its weights.

A checkpoint is a plain dict of tensors, numbers, strings and lists (loaded with
`weights_only=True`, never unpickled code). The live workers rebuild their models from it alone.
- `cnn.pt` (train-cnn): classes, preset, feature size, the FrameCNN state_dict.
- `lstm.pt` (train-lstm): classes, hidden size, layers, window, the SequenceLSTM state_dict.
- `bundle.pt`: both, plus `model_id` and `capture` (the capture it was trained for: crop, frame
  rate, synthetic segment length; absent in bundles written before it existed); this is what the
  workers load.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
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


@dataclass(frozen=True)
class TrainedCapture:
    """The capture a bundle was trained for: what `up` and the bench use unless told otherwise."""

    crop: int
    resize: int
    fps: float | None = None  # frames per second the training frames were taken at (None: not recorded)
    synthetic_segment_frames: int | None = None  # clip length of the synthetic set (None: other data)

    def to_dict(self) -> dict:
        return {"crop": self.crop, "resize": self.resize, "fps": self.fps,
                "synthetic_segment_frames": self.synthetic_segment_frames}

    @property
    def synthetic_classes(self) -> bool:
        """True when the model's classes are the synthetic set's shapes, not actions of real footage."""
        return self.synthetic_segment_frames is not None


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


def save_bundle(path: Path, cnn_path: Path, lstm_path: Path, capture: TrainedCapture | None = None) -> str:
    """Join a CNN and an LSTM checkpoint into the bundle the workers load; returns its model id.
    `capture` records what the capture should do for this model (default: the CNN's crop only)."""
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
    preset = Preset.from_dict(cnn["preset"])
    capture = capture or TrainedCapture(crop=preset.crop, resize=preset.resize)
    _save(path, {"format": FORMAT, "part": "bundle", "model_id": model_id, "cnn": cnn, "lstm": lstm,
                 "capture": capture.to_dict()})
    return model_id


def load_cnn(path: Path) -> CnnCheckpoint:
    """The CNN of a bundle or of a cnn.pt checkpoint."""
    data = _read(path, "bundle", "cnn")
    with _complete(path):
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
    with _complete(path):
        part = data["lstm"] if data["part"] == "bundle" else data
        model = SequenceLSTM(num_classes=len(part["classes"]), hidden=int(part["hidden"]),
                             layers=int(part["layers"]), input_size=int(part["feature_dim"]))
        _load_state(model, part["state_dict"], path)
        return LstmCheckpoint(classes=list(part["classes"]), hidden=int(part["hidden"]),
                              layers=int(part["layers"]), window=int(part["window"]), model=model,
                              weights_source="trained", metrics=dict(part.get("metrics", {})))


def trained_capture(path: Path) -> TrainedCapture:
    """The capture a bundle (or cnn.pt) was trained for; older bundles know only their crop."""
    data = _read(path, "bundle", "cnn")
    with _complete(path):
        preset = Preset.from_dict((data["cnn"] if data["part"] == "bundle" else data)["preset"])
    recorded = data.get("capture") or {}
    fps, segment = recorded.get("fps"), recorded.get("synthetic_segment_frames")
    return TrainedCapture(crop=preset.crop, resize=preset.resize, fps=float(fps) if fps else None,
                          synthetic_segment_frames=int(segment) if segment else None)


def model_id(path: Path) -> str:
    data = _read(path, "bundle")
    with _complete(path):
        return str(data["model_id"])


@contextmanager
def _complete(path: Path):
    """A checkpoint with a key missing or of the wrong type is a BundleError naming it, not a traceback."""
    try:
        yield
    except KeyError as error:
        raise BundleError(f"{path} lacks {error.args[0]!r}; it was written by another version or damaged: "
                          f"train it again (run.py demo, or run.py train-cnn/train-lstm)") from None
    except (TypeError, ValueError, AttributeError) as error:
        if isinstance(error, BundleError):
            raise
        raise BundleError(f"{path} holds a value of the wrong kind ({type(error).__name__}: {error}); "
                          f"train it again (run.py demo, or run.py train-cnn/train-lstm)") from None


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
