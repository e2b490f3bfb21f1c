"""An int8 feature model for the CPU, made when the bundle is made, and kept only if the labels hold.

NNCF's post-training quantization of the very graph the OpenVINO backend runs
(models/openvino_export.py: uint8 frames in, normalisation inside), calibrated on frames of the
training split. Cosine to float32 is a proxy; what users see is labels, so the guard is on labels,
on the held-out test split, every full window of every test video (stride 1):
- the int8 features' window labels agree with the float32 features' on >= 99% of windows;
- the LSTM's window accuracy drops by no more than 0.5 points.
Attempts, until one passes: NNCF's performance preset, its mixed preset (asymmetric activations),
then the mixed preset with the first convolution and the last residual block left in float.

Stored beside the bundle, keyed by its model id (`models.bundle.int8_dir`): `model.xml`/`model.bin`
(the OpenVINO IR) and `guard.json` (every attempt's figures and whether it was admitted). The
feature worker takes it on `features.precision = "auto"` only when admitted, on "int8" always
(workers/backends.py). `run.py quantize` makes it for an existing bundle; `train-lstm` and `demo`
make it after writing the bundle when `openvino` and `nncf` are installed.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from configs.settings import ActionableError, Config, from_args
from models.stage_options import quantize as add_arguments  # noqa: F401 - the options, kept light for --help
from models import bundle
from models.files import write_json_atomically
from models.int8_report import guard_line, guard_table
from models.frames import frame_name, load_frame, load_video_frames, prepared_videos
from models.networks import FeatureExtractor
from models.openvino_export import convert
from models.sequence_inputs import checkpoint_inputs, sequence_inputs
from models.window import window_probabilities

MIN_WINDOW_AGREEMENT = 0.99  # int8 window labels equal to float32's on at least this share of test windows
MAX_ACCURACY_DROP_POINTS = 0.5  # LSTM window accuracy may drop by at most this many percentage points
CALIBRATION_FRAMES = 300  # NNCF's default subset size
BATCH = 64
GUARD_MAX_VIDEOS = 400  # a larger test split (UCF101's 3,783 videos) is guarded on this many, spread over it


@dataclass(frozen=True)
class Attempt:
    name: str
    mixed: bool  # NNCF's mixed preset (asymmetric activations) instead of the performance preset
    float_first: int = 0  # convolutions kept in float (NNCF ignored scope), counted from the input
    float_last: int = 0  # ... and from the output (ResNet-18's last block: 4 convolutions and a downsample)


ATTEMPTS = (
    Attempt("performance preset", mixed=False),
    Attempt("mixed preset", mixed=True),
    Attempt("mixed preset, first conv and last block in float", mixed=True, float_first=1, float_last=5),
)


class Int8Unavailable(ActionableError):
    """openvino or nncf is missing, or there is nothing to quantize."""


def available() -> bool:
    try:
        import nncf  # noqa: F401
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def calibration_frames(work_dir: Path, preset, count: int = CALIBRATION_FRAMES) -> np.ndarray:
    """`count` frames spread evenly over every training video (uint8 [count, crop, crop, 3])."""
    _, videos = prepared_videos(work_dir, "train")
    every = [(video, index) for video in videos for index in range(1, video.frames + 1)]
    picks = np.linspace(0, len(every) - 1, min(count, len(every))).round().astype(int)
    return np.stack([load_frame(every[i][0].directory / frame_name(every[i][1]), preset) for i in picks])


def quantize(converted, frames: np.ndarray, attempt: Attempt):
    import nncf

    logging.getLogger("nncf").setLevel(logging.WARNING)  # its INFO lines list every quantizer it leaves out

    dataset = nncf.Dataset([frames[i:i + 1] for i in range(len(frames))])
    # The converted graph's node names say nothing about the torch modules (BatchNorm is folded in), so
    # the convolutions kept in float are picked by their place in the graph.
    convolutions = [op.get_friendly_name() for op in converted.get_ordered_ops() if op.get_type_name() == "Convolution"]
    kept = convolutions[:attempt.float_first] + (convolutions[-attempt.float_last:] if attempt.float_last else [])
    scope = nncf.IgnoredScope(names=kept) if kept else None
    preset = nncf.QuantizationPreset.MIXED if attempt.mixed else nncf.QuantizationPreset.PERFORMANCE
    return nncf.quantize(converted, dataset, preset=preset, subset_size=len(frames),
                         **({"ignored_scope": scope} if scope is not None else {}))


def _infer(compiled, frames: np.ndarray) -> np.ndarray:
    request = compiled.create_infer_request()
    parts = [np.array(request.infer([frames[i:i + BATCH]])[0], dtype=np.float32) for i in range(0, len(frames), BATCH)]
    return np.concatenate(parts)


def guard_videos(work_dir: Path, limit: int = GUARD_MAX_VIDEOS) -> tuple[list[str], list]:
    """The test split's classes and its videos, at most `limit` of them spread over the list (all, usually)."""
    classes, videos = prepared_videos(work_dir, "test")
    if len(videos) > limit:
        videos = [videos[i] for i in np.linspace(0, len(videos) - 1, limit).round().astype(int)]
    return classes, videos


def video_features(videos: list, preset, compiled, what: str, console: Console, progress: bool) -> list[np.ndarray]:
    """Each video's features [T, 512] from one compiled model, with a progress bar."""
    results = []
    columns = (TextColumn(f"[bold]{what}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, disable=not progress) as bar:
        task = bar.add_task("test videos", total=len(videos))
        for video in videos:
            results.append(_infer(compiled, load_video_frames(video, preset)))
            bar.advance(task)
    return results


@torch.no_grad()
def guard(labels: list[int], reference: list[np.ndarray], candidate: list[np.ndarray],
          lstm: bundle.LstmCheckpoint) -> dict:
    """Window-label agreement, both LSTM window accuracies, and min/mean cosine of candidate to reference features."""
    model, inputs = lstm.model.eval(), checkpoint_inputs(lstm.metrics)
    agree = windows = right_reference = right_candidate = 0
    cosines = []
    for label, theirs, ours in zip(labels, reference, candidate):
        a, b = ours.astype(np.float64), theirs.astype(np.float64)
        cosines.append((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12))
        expected, got = (window_probabilities(model, sequence_inputs(torch.from_numpy(f), inputs), lstm.window)
                         .argmax(1).numpy() for f in (theirs, ours))
        agree += int((expected == got).sum())
        windows += len(expected)
        right_reference += int((expected == label).sum())
        right_candidate += int((got == label).sum())
    cosine = np.concatenate(cosines)
    agreement = agree / max(windows, 1)
    accuracy_reference, accuracy_candidate = right_reference / max(windows, 1), right_candidate / max(windows, 1)
    drop_points = 100 * (accuracy_reference - accuracy_candidate)
    return {"windows": windows, "videos": len(labels), "frames": int(len(cosine)), "window_agreement": agreement,
            "window_accuracy_fp32": accuracy_reference, "window_accuracy_int8": accuracy_candidate,
            "accuracy_drop_points": drop_points, "min_cosine": float(cosine.min()), "mean_cosine": float(cosine.mean()),
            "admitted": agreement >= MIN_WINDOW_AGREEMENT and drop_points <= MAX_ACCURACY_DROP_POINTS}


def make_int8(config: Config, bundle_path: Path, console: Console | None = None, progress: bool = True,
              attempts: tuple[Attempt, ...] = ATTEMPTS) -> dict:
    """Quantize the bundle's CNN, guard each attempt on the test split, store the first admitted (or the closest)."""
    if not available():
        raise Int8Unavailable("the int8 model needs openvino and nncf: pip install openvino nncf")
    import openvino

    console = console or Console()
    started = time.perf_counter()
    bundle_path, work_dir = Path(bundle_path), Path(config.data.work_dir)
    cnn, lstm = bundle.load_cnn(bundle_path), bundle.load_lstm(bundle_path)
    classes, videos = guard_videos(work_dir)
    if classes != lstm.classes:
        raise bundle.BundleError(f"{bundle_path} was trained on {lstm.classes}, the prepared test split of "
                                 f"{work_dir} has {classes}: quantize with the config the bundle was trained with")
    labels = [classes.index(video.class_name) for video in videos]
    converted = convert(FeatureExtractor(cnn.model).eval(), cnn.preset)
    frames = calibration_frames(work_dir, cnn.preset)
    core = openvino.Core()
    console.print(f"int8: {len(frames)} calibration frames from the training split of {work_dir}; guard on "
                  f"{len(videos)} test videos: window labels agree with float32 >= {100 * MIN_WINDOW_AGREEMENT:.0f}%, "
                  f"accuracy drop <= {MAX_ACCURACY_DROP_POINTS} points")
    fp32 = core.compile_model(converted, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    reference = video_features(videos, cnn.preset, fp32, "float32 reference", console, progress)
    del fp32
    tried, quantized_models = [], []
    for attempt in attempts:
        quantized = quantize(converted, frames, attempt)
        quantized_models.append(quantized)
        candidate = video_features(videos, cnn.preset, core.compile_model(quantized, "CPU"), f"int8, {attempt.name}",
                                   console, progress)
        tried.append({"attempt": attempt.name, **guard(labels, reference, candidate, lstm)})
        console.print(guard_line(tried[-1]))
        if tried[-1]["admitted"]:
            break
    # the admitted one; if none was, the closest, for `features.precision = "int8"` and for the record
    chosen = max(range(len(tried)), key=lambda i: (tried[i]["admitted"], tried[i]["window_agreement"],
                                                  -tried[i]["accuracy_drop_points"]))
    folder = bundle.int8_dir(bundle_path)
    folder.mkdir(parents=True, exist_ok=True)
    openvino.save_model(quantized_models[chosen], str(folder / "model.xml"), compress_to_fp16=False)
    record = {"model_id": bundle.model_id(bundle_path), **tried[chosen], "attempts": tried,
              "calibration_frames": len(frames), "min_window_agreement": MIN_WINDOW_AGREEMENT,
              "max_accuracy_drop_points": MAX_ACCURACY_DROP_POINTS, "seconds": time.perf_counter() - started}
    write_json_atomically(folder / "guard.json", record, indent=1)
    verdict = "[green]admitted: used on features.precision=auto" if record["admitted"] else \
        "[yellow]not admitted: used only on features.precision=int8"
    console.print(f"int8: {folder / 'model.xml'} ({record['attempt']}) {verdict}")
    return record


def make_int8_if_available(config: Config, bundle_path: Path, console: Console, progress: bool = True) -> dict | None:
    """After a bundle is written: its int8 model when openvino and nncf are installed, else a note."""
    if not available():
        console.print("int8: openvino and nncf are not installed, so no int8 model was made (the CPU runs bf16 or "
                      "float32); `pip install openvino nncf`, then `python run.py quantize`")
        return None
    return make_int8(config, bundle_path, console, progress)


def main(args: argparse.Namespace) -> int:
    console = Console()
    config = from_args(args)
    record = make_int8(config, Path(args.bundle or config.features.bundle), console)
    console.print(guard_table(record))
    return 0
