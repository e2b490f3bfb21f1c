"""`run.py label VIDEO... [--out DIR] [--annotate]`: every sampled frame of each video labelled.

The same processes and window code as `run.py up` (planned by `supervisor.prepare`): the LSTM
worker and the feature worker start once and load their models; then each video gets its own
capture, which sends every sampled frame (a file's frames are never dropped: the capture waits
for the pipeline), and this command collects the video's labels, activity segments and end from
the labels endpoint. Per video, in `--out`:

  NAME.labels.jsonl    one line per sampled frame: seq, time (seconds into the video), label,
                       score, top_k, warming
  NAME.segments.json   the activity segments (models/segments.py): label, confidence, start and
                       end seq and time
  NAME.annotated.mp4   with --annotate: each sampled frame with its label, score, top-k bars and
                       a warming mark

A missing, unreadable or corrupt file is reported and skipped, the others are still labelled,
and the exit code is then 2. The closing table shows frames, frames/s and segments per video,
and the model's own frames/s: frames per second of inference time inside the feature worker.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zmq
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from configs.settings import ActionableError, Config, add_config_arguments, from_args, replace
from streamer.ops.supervisor import Child, PipelineWatch, describe_exit, last_log_line, prepare, shutdown
from streamer.transport import wire
from streamer.transport.sockets import make_socket

SILENCE_LIMIT_S = 120.0  # no message about a video for this long while its capture runs: give up on it
READY_LIMIT_S = 300.0  # the workers must have loaded their models by then


@dataclass
class VideoResult:
    video: str
    frames: int = 0
    seconds: float = 0.0  # from its capture's start to its end message
    segments: int = 0
    outputs: list[Path] = field(default_factory=list)
    problem: str | None = None


@dataclass
class Collected:
    labels: dict[int, wire.Label] = field(default_factory=dict)
    segments: list[wire.Activity] = field(default_factory=list)
    end: wire.StreamEnd | None = None


def run_label(config: Config, videos: list[str], out_dir: Path, annotate: bool, console: Console) -> int:
    from streamer.capture.sources import SourceError, check_source  # OpenCV: after `--help` has answered

    from models.capture_preset import fit_capture

    config = fit_capture(config).config  # children get the resolved crop, so all agree on it
    results: list[VideoResult] = []
    model_fps = 0.0
    good: list[str] = []
    for video in videos:
        try:
            if check_source(video).kind not in ("file", "folder"):
                raise SourceError(f"{video!r}: label takes video files (or folders of images); use `run.py up` "
                                  f"for cameras", retry=False)
            good.append(video)
        except SourceError as error:
            console.print(f"[red]error:[/red] {error}")
            results.append(VideoResult(video, problem=str(error)))
    if good:
        out_dir.mkdir(parents=True, exist_ok=True)
        labelled, model_fps = label_videos(config, good, out_dir, annotate, console)
        results += labelled
    results.sort(key=lambda result: videos.index(result.video))
    console.print(summary_table(results, model_fps))
    for result in results:
        if result.problem is not None:
            console.print(f"[red]{result.video}:[/red] {result.problem}")
    return 2 if any(result.problem for result in results) else 0


def label_videos(config: Config, videos: list[str], out_dir: Path, annotate: bool,
                 console: Console) -> tuple[list[VideoResult], float]:
    """Each video's result, and the model's frames per second of inference time over them all."""
    streams = [f"v{index}" for index in range(len(videos))]
    # One capture per video, started when its turn comes (even with capture.files_as_live).
    config = replace(config, "capture", cameras_per_process=1)
    children = prepare(config, [f"{s}={v}" for s, v in zip(streams, videos)], config_name="label-config.toml")
    workers = [child for child in children if not child.is_capture]
    captures = {child.streams[0]: child for child in children if child.is_capture}
    context = zmq.Context()
    watch = PipelineWatch(context, config)
    listener = make_socket(context, zmq.SUB, config.endpoints.labels, bind=False, security=config.security,
                           server_curve=False, hwm=1_000_000)
    for topic in (b"label/", b"activity/", b"event/", b"stats/features:"):
        listener.setsockopt(zmq.SUBSCRIBE, topic)
    feature_stats: dict[str, float] = {}
    results = []
    names: set[str] = set()
    try:
        for child in workers:
            child.start()
        with console.status("starting the workers (loading the models)"):
            _wait_ready(watch, workers)
        for stream, video in zip(streams, videos):
            result = VideoResult(video)
            started = time.monotonic()
            collected = _collect(listener, captures[stream], stream, video, workers, config, feature_stats, console)
            result.seconds = time.monotonic() - started
            result.frames = len(collected.labels)
            result.segments = len(collected.segments)
            result.problem = _problem(collected, captures[stream])
            if collected.labels:
                name = _output_name(video, names)
                result.outputs = write_outputs(collected, video, out_dir / name, config, annotate)
            results.append(result)
        _await_feature_stats(listener, feature_stats, sum(r.frames for r in results), config)
    finally:
        watch.close()
        listener.close(linger=0)
        context.term()
        shutdown(children)
    return results, _model_fps(feature_stats)


def _wait_ready(watch: PipelineWatch, workers: list[Child]) -> None:
    deadline = time.monotonic() + READY_LIMIT_S
    while not watch.ready([child for child in workers if child.name.startswith("features:")]):
        _check_workers(workers)
        if time.monotonic() > deadline:
            raise ActionableError(f"the workers did not become ready within {READY_LIMIT_S:.0f} s; see their logs "
                                  f"in {workers[0].log_path.parent}")
        time.sleep(0.1)
        watch.read()


def _check_workers(workers: list[Child]) -> None:
    for child in workers:
        code = child.exit_code()
        if code is not None:
            raise ActionableError(f"{child.name} exited ({describe_exit(code)}); its log {child.log_path} ends: "
                                  f"{last_log_line(child.log_path)}")


def _collect(listener: zmq.Socket, capture: Child, stream: str, video: str, workers: list[Child], config: Config,
             feature_stats: dict[str, float], console: Console) -> Collected:
    """Start the video's capture and take its labels, segments and end off the labels endpoint."""
    collected = Collected()
    capture.start()
    last_news = time.monotonic()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(Path(video).name, total=expected_frames(video, config.capture.fps))
        while collected.end is None:
            if listener.poll(200):
                last_news = time.monotonic()
                for message in _waiting(listener):
                    if isinstance(message, wire.Stats):
                        feature_stats.update(message.counters)
                    elif getattr(message, "stream", None) != stream:
                        continue
                    elif isinstance(message, wire.Label):
                        collected.labels[message.seq] = message
                        progress.advance(task)
                    elif isinstance(message, wire.Activity) and message.event == "end":
                        collected.segments.append(message)
                    elif isinstance(message, wire.StreamEnd):
                        collected.end = message
            _check_workers(workers)
            code = capture.exit_code()
            if time.monotonic() - last_news > (10.0 if code is not None else SILENCE_LIMIT_S):
                break  # the capture is gone (or silent) and no end came: reported by _problem
    return collected


def _waiting(listener: zmq.Socket):
    # nothing the LSTM worker publishes is malformed; a stray peer's message (None) is ignored
    return (message for message, _ in wire.received_messages(listener) if message is not None)


def _problem(collected: Collected, capture: Child) -> str | None:
    """Why a video was not labelled to its end, or None."""
    seqs = sorted(collected.labels)
    if collected.end is None:
        return (f"no end of stream arrived after {len(seqs)} labels; the capture's log {capture.log_path} ends: "
                f"{last_log_line(capture.log_path)}")
    if collected.end.reason != "source ended":
        return (f"the capture stopped ({collected.end.reason}) after {len(seqs)} labels: "
                f"{last_log_line(capture.log_path)}")
    if not seqs:
        return f"no frame could be decoded: {last_log_line(capture.log_path)}"
    if seqs != list(range(len(seqs))):
        missing = sorted(set(range(seqs[-1] + 1)) - set(seqs))
        return f"{len(missing)} frames have no label (first: seq {missing[0]}); see the logs in {capture.log_path.parent}"
    return None


def _await_feature_stats(listener: zmq.Socket, feature_stats: dict[str, float], frames: int, config: Config) -> None:
    """The feature worker's next stats, which count every frame labelled (they come every stats interval)."""
    deadline = time.monotonic() + 2 * config.features.stats_interval_s + 2.0
    while feature_stats.get("frames", 0) < frames and time.monotonic() < deadline:
        if listener.poll(100):
            for message in _waiting(listener):
                if isinstance(message, wire.Stats):
                    feature_stats.update(message.counters)


def _model_fps(counters: dict[str, float]) -> float:
    inference_s = counters.get("cnn_ms_per_batch", 0.0) * counters.get("batches", 0.0) / 1000
    return counters.get("frames", 0.0) / inference_s if inference_s else 0.0


def _output_name(video: str, taken: set[str]) -> str:
    stem = Path(video.rstrip("/")).stem or "video"
    name, index = stem, 1
    while name in taken:
        index += 1
        name = f"{stem}-{index}"
    taken.add(name)
    return name


def expected_frames(video: str, fps: float) -> int | None:
    """About how many frames the capture will sample (the container's frame count, which may be wrong)."""
    import cv2

    from streamer.capture.sources import effective_fps

    capture = cv2.VideoCapture(video)
    try:
        count, source_fps = capture.get(cv2.CAP_PROP_FRAME_COUNT), capture.get(cv2.CAP_PROP_FPS)
    finally:
        capture.release()
    if not count or count < 0:
        return None
    return int(round(count * effective_fps(source_fps, fps) / source_fps)) if source_fps else int(count)


def video_fps(video: str, fps: float) -> float:
    """Frames per second of video in the sampled frames: seq / this = seconds into the video."""
    import cv2

    from streamer.capture.sources import effective_fps

    capture = cv2.VideoCapture(video)
    try:
        source_fps = capture.get(cv2.CAP_PROP_FPS) if capture.isOpened() else 0.0
    finally:
        capture.release()
    return effective_fps(source_fps if 0 < source_fps < 1000 else 0.0, fps)


def write_outputs(collected: Collected, video: str, base: Path, config: Config, annotate: bool) -> list[Path]:
    rate = video_fps(video, config.capture.fps)
    labels = [collected.labels[seq] for seq in sorted(collected.labels)]
    timeline = base.with_name(base.name + ".labels.jsonl")
    with timeline.open("w") as file:
        for label in labels:
            file.write(json.dumps({"seq": label.seq, "time": round(label.seq / rate, 4), "label": label.label,
                                   "score": label.score, "top_k": [[n, p] for n, p in label.top_k],
                                   "warming": label.warming}) + "\n")
    segments = base.with_name(base.name + ".segments.json")
    segments.write_text(json.dumps([
        {"label": s.label, "confidence": round(s.confidence, 4), "start_seq": s.start_seq, "end_seq": s.end_seq,
         "start_time": round(s.start_seq / rate, 4), "end_time": round((s.end_seq + 1) / rate, 4)}
        for s in collected.segments], indent=1) + "\n")
    outputs = [timeline, segments]
    if annotate:
        outputs.append(write_annotated(video, labels, base.with_name(base.name + ".annotated.mp4"),
                                       config.capture.fps, rate))
    return outputs


def write_annotated(video: str, labels: list[wire.Label], path: Path, fps: float, rate: float) -> Path:
    """The sampled frames again (the capture's own sampling), each drawn with its label, as MP4."""
    import cv2

    from streamer.capture.sources import open_source, sampled_frames

    source = open_source(video)
    writer = None
    try:
        for label, frame in zip(labels, sampled_frames(source, fps)):
            image = frame.image_bgr
            if writer is None:
                size = (image.shape[1], image.shape[0])
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), rate, size)
                if not writer.isOpened():
                    raise ActionableError(f"{path}: OpenCV cannot write MP4 here; label without --annotate")
            if (image.shape[1], image.shape[0]) != size:  # a folder's images may differ in size
                image = cv2.resize(image, size)
            writer.write(draw_label(image, label))
    finally:
        source.close()
        if writer is not None:
            writer.release()
    return path


def draw_label(image: np.ndarray, label: wire.Label) -> np.ndarray:
    """The frame with its label and score, a bar per top-k class, and a warming mark."""
    import cv2

    image = image.copy()
    height, width = image.shape[:2]
    scale = max(0.4, min(width, 2 * height) / 640)
    line = int(26 * scale) + 4
    thickness = max(1, int(round(2 * scale)))
    panel_w, panel_h = min(width, int(330 * scale) + 10), min(height, line * (2 + len(label.top_k)))
    shade = image[:panel_h, :panel_w].astype(np.float32) * 0.35
    image[:panel_h, :panel_w] = shade.astype(np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(image, f"{label.label} {label.score:.0%}", (6, line - 6), font, 0.8 * scale, (255, 255, 255),
                thickness, cv2.LINE_AA)
    bar_x, bar_w = int(130 * scale) + 6, panel_w - int(180 * scale) - 14
    for row, (name, probability) in enumerate(label.top_k, start=1):
        y = line * row + line // 2
        cv2.putText(image, name[:14], (6, y + 4), font, 0.5 * scale, (230, 230, 230), 1, cv2.LINE_AA)
        cv2.rectangle(image, (bar_x, y - line // 3), (bar_x + max(1, int(bar_w * probability)), y + line // 4),
                      (80, 200, 80) if row == 1 else (200, 160, 60), -1)
        cv2.putText(image, f"{probability:.0%}", (bar_x + bar_w + 6, y + 4), font, 0.5 * scale, (230, 230, 230), 1,
                    cv2.LINE_AA)
    if label.warming:
        y = line * (1 + len(label.top_k)) + line // 2
        cv2.circle(image, (12, y), max(3, line // 4), (0, 170, 255), -1)
        cv2.putText(image, f"warming up ({label.frames_in_window} frames)", (24, y + 4), font, 0.5 * scale,
                    (0, 170, 255), 1, cv2.LINE_AA)
    return image


def summary_table(results: list[VideoResult], model_fps: float) -> Table:
    model = f"{model_fps:.0f} frames/s" if model_fps else "not measured"
    table = Table(title="labelled", caption=f"the model alone: {model} (frames per second of inference time in the "
                                            f"feature worker, over all videos)")
    for column in ("video", "frames", "seconds", "frames/s", "segments", "result"):
        table.add_column(column, justify="left" if column in ("video", "result") else "right")
    for result in results:
        rate = result.frames / result.seconds if result.seconds else 0.0
        outcome = ("[red]failed[/red]" if result.problem and not result.frames
                   else "[yellow]partly[/yellow]" if result.problem else "[green]done[/green]")
        table.add_row(result.video, str(result.frames), f"{result.seconds:.1f}", f"{rate:.1f}",
                      str(result.segments), outcome)
    return table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("videos", nargs="+", metavar="VIDEO", help="video files (or folders of images) to label")
    parser.add_argument("--out", type=Path, default=Path("runs/label"),
                        help="folder for the timelines, segments and annotated videos (default: runs/label)")
    parser.add_argument("--annotate", action="store_true",
                        help="also write NAME.annotated.mp4: each frame with its label, score and top-k bars")


def main(args: argparse.Namespace) -> int:
    from streamer.runtime.logs import setup_logging

    setup_logging("label")
    return run_label(from_args(args), args.videos, args.out, args.annotate, Console(stderr=False))
