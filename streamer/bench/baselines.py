"""What the pipeline is measured against, each in this one process (`run.py bench --baseline`).

- `lecture_loop`: the lecture's way, frame by frame: PIL resize 256 + center crop 224 + ToTensor +
  Normalize (torchvision.transforms), float32 ResNet-18 at batch 1, and the LSTM recomputed over
  the whole window for every frame. Frames per second and per-frame latency.
- `model_ceiling`: the bare model, ResNet-18 forward alone through the very backend the feature
  worker picks (same backend, precision, layout, threads), at batch 1 and at the worker's
  `features.max_batch` with as many batches running at once as the worker keeps under load.
  No process can run the pipeline faster than this on the same cores.
- `backend_table`: every backend this machine has (the bundle's int8 model too, when one was made),
  at the same two batch sizes, each marked admissible or not by the guard the worker applies.
- `lstm_advance`: the LSTM worker's step alone for many streams: staggered windows
  (models/window.py) against recomputing each 32-frame window, one stream at a time and
  batched across all streams, at the default recipe's LSTM size.

Every function returns a plain dict of numbers, so `bench` prints it and writes it to JSON.
"""

from __future__ import annotations

import os
import time
from collections import deque
from pathlib import Path

import numpy as np
import torch

from configs.settings import Config, LstmRecipe
from models.networks import FEATURE_DIM, SequenceLSTM
from models.presets import Preset, geometric
from streamer.bench.percentiles import percentiles


def synthetic_frames(count: int, seed: int = 0, segment_frames: int = 40) -> list[tuple[np.ndarray, str]]:
    """Raw camera frames (BGR, 160x120) with their ground truth, from the synthetic camera."""
    from models.synthetic import SyntheticCamera

    camera = SyntheticCamera(seed=seed, segment_frames=segment_frames)
    return [camera.next_frame()[:2] for _ in range(count)]


def _fresh_extractor(config: Config):
    """A new copy of the feature worker's CNN (backends may change a model's memory layout in place)."""
    from workers.loading import load_extractor

    return load_extractor(config)


# ------------------------------------------------------------------------------ lecture loop


def lecture_loop(config: Config, seconds: float = 8.0) -> dict:
    """The lecture's loop at torch's default thread count and at one thread; the faster one is the baseline.

    On a shared 2-core machine torch's two OpenMP threads can spin on each other (one CPU-second
    per frame instead of a fifth), so the kinder figure is taken: ratios against it are the
    conservative ones.
    """
    default = torch.get_num_threads()
    runs = [lecture_loop_at(config, seconds / 2 if default > 1 else seconds, threads=default)]
    if default > 1:
        runs.append(lecture_loop_at(config, seconds / 2, threads=1))
    best = max(runs, key=lambda r: r["frames_per_s"])
    return {**best, "by_threads": {str(r["threads"]): {k: r[k] for k in ("frames_per_s", "latency_ms", "cpu_percent")}
                                   for r in runs}}


def lecture_loop_at(config: Config, seconds: float = 8.0, threads: int | None = None, warmup_frames: int = 3) -> dict:
    """The lecture's per-frame loop, in one process, float32 everywhere, batch 1."""
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _lecture_loop(config, seconds, warmup_frames)
    finally:
        torch.set_num_threads(previous_threads)


@torch.no_grad()
def _lecture_loop(config: Config, seconds: float, warmup_frames: int) -> dict:
    from PIL import Image
    from torchvision import transforms

    from workers.loading import load_sequence_model

    loaded = _fresh_extractor(config)
    extractor = loaded.extractor.eval()
    preset = loaded.preset
    sequence = load_sequence_model(config)
    lstm, window = sequence.model.eval(), sequence.window
    transform = transforms.Compose([
        transforms.Resize(preset.resize),
        transforms.CenterCrop(preset.crop),
        transforms.ToTensor(),
        transforms.Normalize(mean=list(preset.mean), std=list(preset.std)),
    ])
    frames = synthetic_frames(64, seed=config.capture.synthetic_seed)
    history: deque[torch.Tensor] = deque(maxlen=window)
    latencies: list[float] = []
    count = 0
    started = None
    while True:
        image_bgr, _ = frames[count % len(frames)]
        t0 = time.perf_counter()
        pil = Image.fromarray(np.ascontiguousarray(image_bgr[:, :, ::-1]))
        batch = transform(pil).unsqueeze(0)
        history.append(extractor(batch)[0])
        probabilities = torch.exp(lstm(torch.stack(list(history)).unsqueeze(0)))[0]
        float(probabilities.max())
        t1 = time.perf_counter()
        count += 1
        if count == warmup_frames:
            started, measured, cpu_started = t1, 0, time.process_time()
            latencies.clear()
            continue
        if started is None:
            continue
        measured += 1
        latencies.append((t1 - t0) * 1000)
        if t1 - started >= seconds:
            break
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return {"frames": measured, "seconds": elapsed, "frames_per_s": measured / elapsed,
            "cpu_percent": 100 * cpu / elapsed, "frames_per_cpu_s": measured / cpu if cpu > 0 else 0.0,
            "latency_ms": percentiles(latencies), "threads": torch.get_num_threads(), "window": window,
            "loadavg": list(os.getloadavg())}


# ----------------------------------------------------------------------------- model ceiling


def _images(preset: Preset, count: int, seed: int = 0) -> np.ndarray:
    return np.stack([geometric(image, preset) for image, _ in synthetic_frames(count, seed=seed)])


def time_backend(backend, images: np.ndarray, seconds: float, warmup: int = 3) -> dict:
    """Frames per second and per-call latency of `backend(images)` called back to back."""
    for _ in range(warmup):
        backend(images)
    calls: list[float] = []
    started, cpu_started = time.perf_counter(), time.process_time()
    while time.perf_counter() - started < seconds or len(calls) < 5:
        t0 = time.perf_counter()
        backend(images)
        calls.append((time.perf_counter() - t0) * 1000)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    frames = len(calls) * len(images)
    # frames per CPU-second: what a core delivers, whatever share of the cores other jobs left us
    return {"batch": len(images), "frames_per_s": frames / elapsed, "call_ms": percentiles(calls),
            "cpu_percent": 100 * cpu / elapsed, "frames_per_cpu_s": frames / cpu if cpu > 0 else 0.0}


def time_backend_pipelined(backend, images: np.ndarray, seconds: float, warmup: int = 3) -> dict:
    """As `time_backend`, but fed the way the feature worker feeds it under load: `submit` whenever
    the backend has room, so backends that run several batches at once (OpenVINO) keep them all busy.
    A synchronous backend (depth 1) gives what `time_backend` gives. Latency is submit -> result."""
    for _ in range(warmup):
        backend(images)
    running: deque = deque()
    calls: list[float] = []
    started, cpu_started = time.perf_counter(), time.process_time()
    while time.perf_counter() - started < seconds or len(calls) < 5:
        while len(running) < backend.depth and backend.has_room():
            running.append((time.perf_counter(), backend.submit(images)))
        submitted, oldest = running.popleft()
        oldest.wait()
        oldest.result()
        calls.append((time.perf_counter() - submitted) * 1000)
    for _, batch in running:
        batch.wait()
        batch.result()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    frames = (len(calls) + len(running)) * len(images)
    return {"batch": len(images), "in_flight": backend.depth, "frames_per_s": frames / elapsed,
            "call_ms": percentiles(calls), "cpu_percent": 100 * cpu / elapsed,
            "frames_per_cpu_s": frames / cpu if cpu > 0 else 0.0}


def model_ceiling(config: Config, seconds: float = 5.0) -> dict:
    """ResNet-18 forward alone through the feature worker's own backend choice and settings."""
    from workers.backends import choose_backend, configure_threads

    configure_threads(config.features)
    loaded = _fresh_extractor(config)
    settings = config.features
    backend = choose_backend(loaded.extractor, loaded.preset, backend=settings.backend, device=settings.device,
                             max_batch=settings.max_batch, settings=settings)
    images = _images(loaded.preset, settings.max_batch)
    batch1 = time_backend(backend, images[:1], seconds / 2)
    batched = time_backend_pipelined(backend, images, seconds / 2)
    best = max(batch1, batched, key=lambda r: r["frames_per_s"])
    return {"backend": backend.name, "batch_1": batch1, f"batch_{settings.max_batch}": batched,
            "frames_per_s": best["frames_per_s"], "best_batch": best["batch"],
            "frames_per_cpu_s": best["frames_per_cpu_s"],
            "batch1_latency_ms": batch1["call_ms"]["p50"], "loadavg": list(os.getloadavg())}


def backend_table(config: Config, seconds: float = 3.0) -> list[dict]:
    """Each backend this machine can run, at batch 1 and the worker's max batch, with its cosine to float32."""
    from models.int8_report import read_guard
    from workers.backends import MIN_COSINE, available_backends, configure_threads, cosine_similarity

    configure_threads(config.features)
    preset = _fresh_extractor(config).preset
    images = _images(preset, config.features.max_batch)
    rows = []
    reference_features = None
    for name, factory in available_backends(config.features):
        backend = factory(_fresh_extractor(config).extractor, preset)
        features = backend(images)
        if reference_features is None:
            reference_features = features  # the first one is torch float32
        cosine = float(cosine_similarity(features, reference_features).min())
        # admissible: the guard the worker applies (int8: labels on the test split; the others: cosine)
        admissible = read_guard(Path(config.features.bundle))["admitted"] if name == "openvino-int8" \
            else cosine >= MIN_COSINE
        rows.append({"backend": backend.name, "cosine_to_fp32": cosine, "admissible": admissible,
                     "batch_1": time_backend(backend, images[:1], seconds / 2),
                     f"batch_{len(images)}": time_backend_pipelined(backend, images, seconds / 2),
                     "loadavg": list(os.getloadavg())})
        del backend
    return rows


# --------------------------------------------------------------------------- LSTM step alone


def lstm_advance(streams: int = 64, seconds: float = 3.0, hidden: int | None = None, layers: int | None = None,
                 window: int | None = None) -> dict:
    """Stream-frames per second of three ways to label every stream's newest frame.

    `hidden`, `layers` and `window` default to the default recipe's (read now, not copied).
    One torch thread, as the LSTM worker runs.
    """
    from models.window import StaggeredWindows

    recipe = LstmRecipe()
    hidden, layers, window = hidden or recipe.hidden, layers or recipe.layers, window or recipe.window
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = SequenceLSTM(8, hidden=hidden, layers=layers).eval()
        rng = np.random.default_rng(0)
        pool = rng.standard_normal((window * 4, streams, FEATURE_DIM)).astype(np.float32)
        names = [f"s{i}" for i in range(streams)]

        windows = StaggeredWindows(model, window)
        tick = 0

        def staggered() -> None:
            nonlocal tick
            frame = pool[tick % len(pool)]
            windows.step([(name, frame[i]) for i, name in enumerate(names)])
            tick += 1

        history = torch.from_numpy(pool[:window].transpose(1, 0, 2).copy())  # [streams, window, dim]

        @torch.no_grad()
        def per_stream() -> None:
            for i in range(streams):
                torch.exp(model(history[i:i + 1]))

        @torch.no_grad()
        def batched() -> None:
            torch.exp(model(history))

        results = {}
        for name, function in (("staggered", staggered), ("recompute_per_stream", per_stream),
                               ("recompute_batched", batched)):
            for _ in range(window + 2):  # warm: the staggered windows fill up first
                function()
            calls = 0
            started = time.perf_counter()
            while time.perf_counter() - started < seconds or calls < 3:
                function()
                calls += 1
            elapsed = time.perf_counter() - started
            results[name] = {"stream_frames_per_s": calls * streams / elapsed,
                             "ms_per_tick": elapsed / calls * 1000}
    finally:
        torch.set_num_threads(previous_threads)
    staggered_rate = results["staggered"]["stream_frames_per_s"]
    return {"streams": streams, "hidden": hidden, "layers": layers, "window": window, **results,
            "staggered_over_batched": staggered_rate / results["recompute_batched"]["stream_frames_per_s"],
            "staggered_over_per_stream": staggered_rate / results["recompute_per_stream"]["stream_frames_per_s"],
            "loadavg": list(os.getloadavg())}
