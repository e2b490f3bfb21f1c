"""Stage 6, `run.py evaluate`: how good the trained CNN and LSTM are on the test split.

- per frame (CNN): the CNN's last layer applied to the stored features (the features are the CNN
  minus that layer, so this is the CNN's own prediction for every test frame);
- per window (LSTM): every full `window`-frame window (stride 1) of every test video, on the inputs the
  LSTM was trained on (features or their differences, models/sequence_inputs.py);
- per video: the mean of the video's window probabilities;
- per class, a confusion matrix (rich table; PNG for both CNN and LSTM), and accuracy restricted
  to the time-reversed pairs of the synthetic set (models.synthetic.REVERSED_PAIRS), where a
  single frame cannot tell the classes apart and only the order of frames can;
- streamed vs offline: test videos run as parallel streams through `StreamInputs` + the live `StaggeredWindows`
  and compared with `offline_window_probabilities` (max abs difference must be <= 1e-4, labels equal).
- the int8 feature model's label guard (models/int8.py), when one was made for this bundle: window
  labels against float32, the accuracy drop, min and mean cosine.

Everything goes to <work_dir>/evaluation.json and the confusion PNG beside it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from configs.exit_codes import ExitCode
from configs.settings import Config, from_args
from models.stage_options import DEFAULT_STREAMS, evaluate as add_arguments  # noqa: F401 - run.py reads it
from models import bundle
from models.files import write_json_atomically
from models.frames import FramesError
from models.int8_report import guard_table, read_guard
from models.sequence_inputs import StreamInputs, checkpoint_inputs, sequence_inputs
from models.train_cnn import cnn_path
from models.train_lstm import VideoFeatures, bundle_path, load_split_features, lstm_path
from models.window import StaggeredWindows, offline_window_probabilities, window_probabilities

STREAM_TOLERANCE = 1e-4


def reversed_pair_classes(classes: list[str]) -> list[str]:
    """The classes of the synthetic set's time-reversed pairs that are in `classes` (both of a pair)."""
    from models.synthetic import REVERSED_PAIRS

    return [name for pair in REVERSED_PAIRS if all(n in classes for n in pair) for name in pair]


def confusion(true: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (true, predicted), 1)
    return matrix


def accuracy(true: np.ndarray, predicted: np.ndarray, mask: np.ndarray | None = None) -> float | None:
    if mask is not None:
        true, predicted = true[mask], predicted[mask]
    return float((true == predicted).mean()) if len(true) else None


def streamed_vs_offline(model: torch.nn.Module, window: int, videos: list[VideoFeatures], inputs: str,
                        streams: int = DEFAULT_STREAMS) -> dict:
    """Run videos' features as parallel live streams (StreamInputs -> StaggeredWindows), one frame per stream
    per tick, and compare with the offline recomputation on the same inputs (`sequence_inputs`).

    Stream k joins at tick 3k, so streams start and end at different ticks, as cameras do."""
    if not videos:
        return {"streams": 0, "frames": 0, "max_abs_difference": 0.0, "labels_equal": True, "within_tolerance": True}
    chosen = [videos[i] for i in np.linspace(0, len(videos) - 1, min(streams, len(videos))).round().astype(int)]
    chosen = list({video.key: video for video in chosen}.values())
    model.eval()
    live, live_inputs = StaggeredWindows(model, window), StreamInputs(inputs)
    streamed = {video.key: [] for video in chosen}
    starts = {video.key: 3 * k for k, video in enumerate(chosen)}
    for t in range(max(starts[video.key] + len(video.features) for video in chosen)):
        tick = [(video.key, live_inputs.next(video.key, video.features[t - starts[video.key]].numpy()))
                for video in chosen if 0 <= t - starts[video.key] < len(video.features)]
        for output in live.step(tick):
            streamed[output.stream].append(output.probabilities)
    difference, labels_equal, frames = 0.0, True, 0
    for video in chosen:
        online = np.stack(streamed[video.key])
        offline = offline_window_probabilities(model, sequence_inputs(video.features, inputs).numpy(), window)
        difference = max(difference, float(np.abs(online - offline).max()))
        labels_equal &= bool((online.argmax(1) == offline.argmax(1)).all())
        frames += len(online)
    return {"streams": len(chosen), "frames": frames, "max_abs_difference": difference,
            "labels_equal": labels_equal, "within_tolerance": difference <= STREAM_TOLERANCE and labels_equal}


def evaluate(config: Config, console: Console | None = None, streams: int = DEFAULT_STREAMS) -> dict:
    console = console or Console()
    started = time.perf_counter()
    work_dir = Path(config.data.work_dir)
    cnn, lstm = bundle.load_cnn(cnn_path(work_dir)), bundle.load_lstm(lstm_path(work_dir))
    classes, videos = load_split_features(work_dir, "test")
    if not classes == cnn.classes == lstm.classes:
        raise FramesError(f"classes differ: prepared {classes}, cnn.pt {cnn.classes}, lstm.pt {lstm.classes}; "
                          f"run the stages again in order")
    head, model, window = cnn.model.backbone.fc.eval(), lstm.model.eval(), lstm.window
    inputs = checkpoint_inputs(lstm.metrics)

    frame_true, frame_predicted, window_true, window_predicted, video_true, video_predicted = [], [], [], [], [], []
    with torch.no_grad():
        for video in videos:
            frame_predicted.append(head(video.features).argmax(1).numpy())
            frame_true.append(np.full(len(video.features), video.label))
            probabilities = window_probabilities(model, sequence_inputs(video.features, inputs), window)
            window_predicted.append(probabilities.argmax(1).numpy())
            window_true.append(np.full(len(probabilities), video.label))
            video_predicted.append(int(probabilities.mean(0).argmax()))
            video_true.append(video.label)
    frame_true, frame_predicted = np.concatenate(frame_true), np.concatenate(frame_predicted)
    window_true, window_predicted = np.concatenate(window_true), np.concatenate(window_predicted)
    video_true, video_predicted = np.array(video_true), np.array(video_predicted)

    pairs = reversed_pair_classes(classes)
    pair_labels = [classes.index(name) for name in pairs]
    stream_check = streamed_vs_offline(model, window, videos, inputs, streams)
    frame_confusion = confusion(frame_true, frame_predicted, len(classes))
    window_confusion = confusion(window_true, window_predicted, len(classes))
    per_class = {
        name: {"frame_accuracy": accuracy(frame_true, frame_predicted, frame_true == label),
               "window_accuracy": accuracy(window_true, window_predicted, window_true == label),
               "video_accuracy": accuracy(video_true, video_predicted, video_true == label),
               "videos": int((video_true == label).sum())}
        for label, name in enumerate(classes)}
    results = {
        "classes": classes,
        "window": window,
        "test_videos": len(videos),
        "cnn": {"frame_accuracy": accuracy(frame_true, frame_predicted), "frames": len(frame_true),
                "reversed_pairs_frame_accuracy": accuracy(frame_true, frame_predicted,
                                                          np.isin(frame_true, pair_labels)) if pairs else None,
                "confusion": frame_confusion.tolist()},
        "lstm": {"window_accuracy": accuracy(window_true, window_predicted), "windows": len(window_true),
                 "reversed_pairs_window_accuracy": accuracy(window_true, window_predicted,
                                                            np.isin(window_true, pair_labels)) if pairs else None,
                 "video_accuracy": accuracy(video_true, video_predicted),
                 "reversed_pairs_video_accuracy": accuracy(video_true, video_predicted,
                                                           np.isin(video_true, pair_labels)) if pairs else None,
                 "hidden": lstm.hidden, "layers": lstm.layers, "inputs": inputs,
                 "confusion": window_confusion.tolist()},
        "reversed_pairs": pairs,
        "per_class": per_class,
        "streamed_vs_offline": stream_check,
        "int8": int8_guard(config),
    }
    png = save_confusion_png(work_dir / "confusion.png", classes, frame_confusion, window_confusion)
    results["confusion_png"] = str(png)
    results["seconds"] = time.perf_counter() - started
    path = write_json_atomically(work_dir / "evaluation.json", results, indent=1)

    console.print(summary_table(results))
    console.print(per_class_table(results))
    console.print(confusion_table(classes, window_confusion, "LSTM window confusion: counts of test windows "
                                                             "(rows: true class, columns: predicted)"))
    console.print(live_check_sentence(stream_check), soft_wrap=True)
    if results["int8"] is not None:
        console.print(guard_table(results["int8"]))
    else:
        console.print("int8: no int8 feature model for this bundle (`python run.py quantize` makes one)")
    console.print(f"evaluate: {path}, and {png} (the same matrices as percentages of each true class's row, "
                  f"CNN per frame beside LSTM per window) ({results['seconds']:.1f} s)", soft_wrap=True)
    return results


def live_check_sentence(check: dict) -> str:
    """What the check of the live window code against the offline model found, in words."""
    found = (f"the live rolling-window code, run on {check['streams']} test videos as parallel streams "
             f"({check['frames']} frames), gives the offline model's probabilities to within "
             f"{check['max_abs_difference']:.1e}")
    labels = "and the same label for every window" if check["labels_equal"] else "but a different label for some windows"
    if check["within_tolerance"]:
        return f"[green]live == offline:[/] {found}, {labels}"
    return f"[red]live != offline:[/] {found} (more than the {STREAM_TOLERANCE:g} allowed), {labels}"


def int8_guard(config: Config) -> dict | None:
    """The label guard of the int8 model made for the bundle of these checkpoints (models/int8.py), if any."""
    trained = bundle_path(Path(config.data.work_dir))
    record = read_guard(Path(config.features.bundle))
    if record is None or not trained.exists() or record["model_id"] != bundle.model_id(trained):
        return None
    return record


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def summary_table(results: dict) -> Table:
    table = Table(title="test split", title_justify="left")
    for column in ("", "all classes", "reversed pairs", "count"):
        table.add_column(column, justify="right" if column else "left")
    cnn, lstm = results["cnn"], results["lstm"]
    table.add_row("CNN per frame", _percent(cnn["frame_accuracy"]), _percent(cnn["reversed_pairs_frame_accuracy"]),
                  f"{cnn['frames']} frames")
    table.add_row(f"LSTM per {results['window']}-frame window", _percent(lstm["window_accuracy"]),
                  _percent(lstm["reversed_pairs_window_accuracy"]), f"{lstm['windows']} windows")
    table.add_row("LSTM per video (mean of windows)", _percent(lstm["video_accuracy"]),
                  _percent(lstm["reversed_pairs_video_accuracy"]), f"{results['test_videos']} videos")
    return table


def per_class_table(results: dict) -> Table:
    table = Table(title="per class", title_justify="left")
    for column in ("class", "CNN frames", "LSTM windows", "videos", "test videos"):
        table.add_column(column, justify="left" if column == "class" else "right")
    pairs = set(results["reversed_pairs"])
    for name, figures in results["per_class"].items():
        table.add_row(name + (" (reversed pair)" if name in pairs else ""), _percent(figures["frame_accuracy"]),
                      _percent(figures["window_accuracy"]), _percent(figures["video_accuracy"]), str(figures["videos"]))
    return table


def confusion_table(classes: list[str], matrix: np.ndarray, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("true \\ predicted")
    for index in range(len(classes)):
        table.add_column(str(index + 1), justify="right")
    for index, (name, row) in enumerate(zip(classes, matrix)):
        table.add_row(f"{index + 1} {name}", *[f"[bold]{v}[/bold]" if i == index else (str(v) if v else ".")
                                               for i, v in enumerate(row)])
    return table


def save_confusion_png(path: Path, classes: list[str], frames: np.ndarray, windows: np.ndarray) -> Path:
    """Row-normalised confusion matrices of the CNN (frames) and the LSTM (windows), side by side."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    size = max(5.0, 0.6 * len(classes) + 2)
    figure = Figure(figsize=(2 * size, size), dpi=100)
    FigureCanvasAgg(figure)
    for axes, matrix, title in zip(figure.subplots(1, 2), (frames, windows), ("CNN per frame", "LSTM per window")):
        rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
        axes.imshow(rates, vmin=0, vmax=1, cmap="Blues")
        for (row, column), value in np.ndenumerate(rates):
            if matrix[row, column]:
                axes.text(column, row, f"{100 * value:.0f}", ha="center", va="center", fontsize=7,
                          color="white" if value > 0.5 else "black")
        axes.set_xticks(range(len(classes)), classes, rotation=60, ha="right", fontsize=7)
        axes.set_yticks(range(len(classes)), classes, fontsize=7)
        axes.set(xlabel="predicted", ylabel="true", title=title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path


def main(args: argparse.Namespace) -> int:
    console = Console()
    results = evaluate(from_args(args), console, args.streams)
    return ExitCode.OK if results["streamed_vs_offline"]["within_tolerance"] else ExitCode.FAILED
