"""`python -m streamer.bench.gpu_check`: the GPU figures in one run of a few minutes (CPU: seconds).

On a machine with CUDA it measures, writing JSON and a table to `--out` (runs/gpu_check/):
- `correctness`: the CUDA backend's features against torch float32 on the CPU (min cosine);
- `bare_model`: ResNet-18 alone at 224 px, float16 and float32, batch 1/16/64/256, input already
  on the device (the ceiling), and the same through the CUDA backend (uint8 frames from the host,
  two batches in flight): frames/s and batch-1 latency;
- `host_to_device`: one batch of 64 uint8 224 px frames uploaded from pinned and from pageable memory;
- `worker_over_zmq`: the real feature worker in this process, fed over ZeroMQ by feeder threads as
  fast as it takes frames, with pinned staging on and off: frames/s, mean batch, and the ratio to
  the bare model at that batch;
- `one_stream`: the whole pipeline (`run.py bench`) on 1 stream at 30 frames/s: end-to-end latency;
- `saturation`: the pipeline on more and more synthetic streams at 60 frames/s, each point judged
  "captures limit" (captures read < 95% of the frames asked), "downstream limits (frames dropped)" (frames
  dropped), or "below capacity"; the first stream count the captures limit is reported;
- `training`: the lecture recipe's CNN training step (ResNet-18, Adam, NLL, AMP) at 224 px, batch 128.

Without CUDA (or with `--quick`) it runs small sizes in seconds, so the same code runs in CI: the
bare model and the worker at 64 px with small batches (on the CPU: the torch CPU backend, one
thread), the training step at batch 4; the pipeline sections are left out (`run.py bench` covers
them) unless `--pipeline` is given. `--full-size`
runs the training step at the GPU's size on any device, for the CPU figure it is compared with.

On the GPU machine, from a checkout: `bash streamer/bench/gpu_check.sh` (runs the CUDA backend's
tests first, makes a carried pyzmq wheel importable when pyzmq is not installed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from models.networks import FeatureExtractor, FrameCNN
from models.normalize import normalization, normalize_batch
from models.presets import Preset
from streamer.bench.percentiles import percentiles

SECTIONS = ("correctness", "bare_model", "host_to_device", "worker_over_zmq", "one_stream", "saturation", "training")
PIPELINE_SECTIONS = ("one_stream", "saturation")


class Plan:
    """Sizes and durations: the GPU's, or quick ones (a CPU fallback, or `--quick`) that finish in seconds."""

    def __init__(self, cuda: bool, quick: bool = False, full_size: bool = False):
        self.cuda, self.quick = cuda, quick or not cuda
        self.device = torch.device("cuda" if cuda else "cpu")
        full = not self.quick
        self.preset = Preset(resize=256, crop=224) if full else Preset(resize=72, crop=64)
        self.batches = (1, 16, 64, 256) if full else (1, 4)
        self.precisions = ("fp16", "fp32") if cuda else ("fp32",)
        self.seconds = 2.0 if full else 0.3
        self.worker_batch = 64 if full else 4
        self.worker_seconds = 10.0 if full else 1.5
        self.feeders = 6 if full else 1
        self.upload_batch = 64 if full else 4
        self.sweep = (4, 8, 16, 24) if full else (1, 2)
        self.sweep_fps = 60.0 if full else 10.0
        self.sweep_seconds = 10.0 if full else 2.0
        self.one_stream_seconds = 20.0 if full else 2.0
        big = full or full_size
        self.train_crop, self.train_batch, self.train_steps = (224, 128, 20 if cuda else 3) if big else (64, 4, 2)


def _extractor() -> FeatureExtractor:
    torch.manual_seed(0)  # speed does not depend on the weights; seeded so runs compare
    return FeatureExtractor(FrameCNN(num_classes=101)).eval()


def _frames(preset: Preset, count: int) -> np.ndarray:
    from streamer.bench.baselines import _images

    images = _images(preset, min(count, 64))
    return np.concatenate([images] * (count // len(images) + 1))[:count]


def _sync(plan: Plan) -> None:
    if plan.cuda:
        torch.cuda.synchronize()


def _backend(plan: Plan, batch: int, pinned: bool = True, half: bool = True):
    """The feature worker's backend for this device: the CUDA one, or torch on the CPU (fallback)."""
    if plan.cuda:
        from workers.cuda_backend import torch_cuda

        return torch_cuda(_extractor(), plan.preset, max_batch=batch, pinned=pinned, half=half)
    from workers.backends import TorchCpu

    return TorchCpu(_extractor(), plan.preset, bfloat16=False)


# ----------------------------------------------------------------------------------- sections


def correctness(plan: Plan) -> dict:
    from workers.backends import TorchCpu, cosine_similarity

    images = _frames(plan.preset, 16)
    reference = TorchCpu(_extractor(), plan.preset, bfloat16=False)(images)
    backend = _backend(plan, 16)
    cosine = cosine_similarity(backend(images), reference)
    return {"backend": backend.name, "min_cosine": float(cosine.min()), "mean_cosine": float(cosine.mean()),
            "frames": len(images)}


@torch.inference_mode()
def _time_on_device(plan: Plan, model, batch: torch.Tensor, seconds: float) -> dict:
    for _ in range(3):
        model(batch)
    _sync(plan)
    calls, started = [], time.perf_counter()
    while time.perf_counter() - started < seconds or len(calls) < 3:
        t0 = time.perf_counter()
        model(batch)
        _sync(plan)
        calls.append((time.perf_counter() - t0) * 1000)
    elapsed = time.perf_counter() - started
    return {"frames_per_s": len(calls) * len(batch) / elapsed, "call_ms": percentiles(calls)}


def bare_model(plan: Plan) -> dict:
    """The model alone on device-resident input, and the backend from host uint8, per precision and batch."""
    from streamer.bench.baselines import time_backend, time_backend_pipelined

    rows = []
    for precision in plan.precisions:
        dtype = torch.float16 if precision == "fp16" else torch.float32
        model = _extractor().to(plan.device, memory_format=torch.channels_last).to(dtype)
        if plan.cuda:
            torch.backends.cudnn.benchmark = True
        for batch in plan.batches:
            images = _frames(plan.preset, batch)
            on_device = normalize_batch(torch.from_numpy(images).to(plan.device), plan.preset, dtype=dtype)
            bare = _time_on_device(plan, model, on_device, plan.seconds)
            backend = _backend(plan, batch, half=precision == "fp16")
            timing = time_backend(backend, images, plan.seconds / 2) if batch == 1 else \
                time_backend_pipelined(backend, images, plan.seconds)
            rows.append({"precision": precision, "batch": batch, "bare_frames_per_s": bare["frames_per_s"],
                         "bare_call_ms": bare["call_ms"], "backend": backend.name,
                         "backend_frames_per_s": timing["frames_per_s"], "backend_call_ms": timing["call_ms"],
                         "backend_over_bare": timing["frames_per_s"] / bare["frames_per_s"]})
            getattr(backend, "close", lambda: None)()
        del model
    return {"rows": rows, "side": plan.preset.crop}


def host_to_device(plan: Plan) -> dict:
    """Upload time of one uint8 batch from pinned and from pageable host memory."""
    images = torch.from_numpy(_frames(plan.preset, plan.upload_batch))
    if not plan.cuda:
        return {"note": "no CUDA device: nothing to upload", "batch": len(images), "bytes": images.numel()}
    target = torch.empty_like(images, device=plan.device)
    results = {"batch": len(images), "bytes": images.numel()}
    for name, source in (("pinned", images.pin_memory()), ("pageable", images.clone())):
        times = []
        for repeat in range(30):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            t0 = time.perf_counter()
            start.record()
            target.copy_(source, non_blocking=True)
            end.record()
            returned_ms = (time.perf_counter() - t0) * 1000  # pageable: the host waits; pinned: returns at once
            end.synchronize()
            if repeat >= 5:
                times.append((start.elapsed_time(end), returned_ms))
        device_ms = [t for t, _ in times]
        results[name] = {"copy_ms": percentiles(device_ms), "host_blocked_ms": percentiles([r for _, r in times]),
                         "gb_per_s": images.numel() / (np.median(device_ms) / 1000) / 1e9}
    return results


def worker_over_zmq(plan: Plan) -> dict:
    """The real feature worker fed over ZeroMQ TCP, pinned staging on and off (CPU: the CPU backend once)."""
    modes = (True, False) if plan.cuda else (True,)
    return {"rows": [_feed_worker(plan, pinned) for pinned in modes], "batch": plan.worker_batch}


def _feed_worker(plan: Plan, pinned: bool) -> dict:
    import zmq

    from configs.settings import load_config
    from streamer.transport import wire
    from streamer.transport.sockets import StopFlag, free_ports
    from workers.feature_worker import FeatureWorker

    endpoints = {name: f"tcp://127.0.0.1:{port}" for name, port in zip(("frames", "features"), free_ports(2))}
    config = load_config(None, [f"endpoints.frames={endpoints['frames']}",
                                f"endpoints.features={endpoints['features']}",
                                "features.bundle=no-bundle-for-speed.pt", "features.imagenet_fallback=false",
                                f"capture.resize={plan.preset.resize}", f"capture.crop={plan.preset.crop}",
                                f"features.max_batch={plan.worker_batch}", "features.stats_interval_s=3600",
                                "features.recv_hwm=64", "features.recv_buffer_bytes=0",
                                "features.backend=torch", f"features.device={'cuda' if plan.cuda else 'cpu'}"])
    worker = FeatureWorker(config, "gpu-check")
    getattr(worker.backend, "close", lambda: None)()  # the worker's own choice, replaced by the one measured
    worker.backend = _backend(plan, plan.worker_batch, pinned=pinned)
    images = _frames(plan.preset, 64)
    # Messages packed once: the feeders spend their time sending, not packing.
    packed = [wire.pack(wire.Frame(stream=f"s{i % 8}", seq=i, t_capture=time.time(), image=image))
              for i, image in enumerate(images)]
    context = zmq.Context()
    features_in = context.socket(zmq.PULL)
    features_in.bind(endpoints["features"])
    stop, feeding = StopFlag(), threading.Event()
    sent = [0] * plan.feeders

    def feed(index: int) -> None:
        out = context.socket(zmq.DEALER)  # the worker's frames ROUTER takes frames sent without credit too
        out.setsockopt(zmq.SNDHWM, 64)
        out.connect(endpoints["frames"])
        k = 0
        while not feeding.is_set():
            try:
                out.send_multipart(packed[k % len(packed)], zmq.NOBLOCK, copy=False)
                sent[index] += 1
                k += 1
            except zmq.Again:
                time.sleep(0.0002)
        out.close(linger=0)

    worker_thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    feeders = [threading.Thread(target=feed, args=(i,), daemon=True) for i in range(plan.feeders)]
    worker_thread.start()
    for thread in feeders:
        thread.start()
    received, started, warm = 0, None, max(3 * plan.worker_batch, 16)
    try:
        while True:
            if not features_in.poll(30_000):
                raise RuntimeError("the feature worker sent nothing for 30 s")
            features_in.recv_multipart()
            received += 1
            if received == warm:
                started, counted, frames_before = time.perf_counter(), 0, worker.counters["frames"]
                batches_before = worker.counters["batches"]
            elif started is not None:
                counted += 1
                if time.perf_counter() - started >= plan.worker_seconds:
                    break
    finally:
        elapsed = time.perf_counter() - started if started else 0.0
        feeding.set()
        stop.set()
        worker_thread.join(30)
        for thread in feeders:
            thread.join(10)
        features_in.close(linger=0)
        context.term()
        getattr(worker.backend, "close", lambda: None)()
    frames = worker.counters["frames"] - frames_before
    batches = worker.counters["batches"] - batches_before
    return {"pinned": pinned, "backend": worker.backend.name, "frames_per_s": counted / elapsed,
            "mean_batch": frames / batches if batches else 0.0, "seconds": elapsed,
            "fed_per_s": sum(sent) / max(elapsed, 1e-9), "feeders": plan.feeders}


def _bench(plan: Plan, extra: list[str], out: Path) -> dict:
    from streamer.bench.cli import add_arguments, run_bench

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    missing = out / "no-bundle.pt"  # random weights at the plan's size: speed does not depend on the weights
    args = parser.parse_args(["--no-live", "--set", f"features.bundle={missing}", "--set", f"lstm.bundle={missing}",
                              "--set", "features.imagenet_fallback=false",
                              "--set", f"capture.crop={plan.preset.crop}", "--set", f"capture.resize={plan.preset.resize}",
                              "--set", f"features.max_batch={plan.worker_batch}", *extra])
    return run_bench(args, console=Console(quiet=True))


def one_stream(plan: Plan, out: Path) -> dict:
    report = _bench(plan, ["--streams", "1", "--fps", "30", "--seconds", str(plan.one_stream_seconds)], out)
    return {"latency_ms": report["overall"]["latency_ms"], "labels": report["overall"]["labels"],
            "backend": report["run"]["backend"], "dropped": report["counts"]["dropped"]}


def limit_of(asked_per_s: float, captured_per_s: float, dropped: int, captured: int) -> str:
    """Which part limits one saturation point."""
    if captured_per_s < 0.95 * asked_per_s:
        return "captures limit"
    if dropped > 0.01 * max(1, captured):
        return "downstream limits (frames dropped)"
    return "below capacity"


def first_capture_limited(points: list[dict]) -> int | None:
    """The fewest streams at which the captures, not the model, became the limit."""
    return next((point["streams"] for point in points if point["limit"] == "captures limit"), None)


def saturation(plan: Plan, out: Path) -> dict:
    points = []
    for streams in plan.sweep:
        report = _bench(plan, ["--streams", str(streams), "--fps", str(plan.sweep_fps),
                         "--seconds", str(plan.sweep_seconds)], out)
        seconds = report["run"]["measured_seconds"]
        counts = report["counts"]
        captured_per_s = counts["frames_captured"] / seconds if seconds else 0.0
        asked = streams * plan.sweep_fps
        points.append({"streams": streams, "asked_per_s": asked, "captured_per_s": captured_per_s,
                       "labels_per_s": report["overall"]["throughput_labels_per_s"],
                       "p99_ms": report["overall"]["latency_ms"]["p99"], "mean_batch": counts["mean_batch"],
                       "dropped": counts["dropped"]["total"],
                       "limit": limit_of(asked, captured_per_s, counts["dropped"]["total"], counts["frames_captured"])})
    best = max(points, key=lambda p: p["labels_per_s"])
    return {"fps_per_stream": plan.sweep_fps, "points": points, "best_labels_per_s": best["labels_per_s"],
            "best_streams": best["streams"], "captures_limit_from_streams": first_capture_limited(points)}


def training(plan: Plan) -> dict:
    """The lecture recipe's CNN step (ResNet-18, Adam 1e-3, NLL on log-softmax, mixed precision) on random frames."""
    from models.training_loop import Precision

    torch.manual_seed(0)
    model = FrameCNN(num_classes=101).to(plan.device, memory_format=torch.channels_last).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    precision = Precision.choose(plan.device, True)
    scaler = precision.scaler()
    preset = Preset(resize=plan.train_crop * 8 // 7, crop=plan.train_crop)
    frames = torch.randint(0, 256, (plan.train_batch, plan.train_crop, plan.train_crop, 3), dtype=torch.uint8)
    labels = torch.randint(0, 101, (plan.train_batch,))
    if plan.cuda:
        frames, labels = frames.pin_memory(), labels.pin_memory()
        torch.backends.cudnn.benchmark = True

    constants = normalization(preset, plan.device)

    def step() -> None:
        images = normalize_batch(frames.to(plan.device, non_blocking=True), preset, constants=constants)
        with precision.autocast():
            loss = torch.nn.functional.nll_loss(model(images), labels.to(plan.device, non_blocking=True))
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    for _ in range(2):
        step()
    _sync(plan)
    started = time.perf_counter()
    for _ in range(plan.train_steps):
        step()
    _sync(plan)
    elapsed = time.perf_counter() - started
    return {"crop": plan.train_crop, "batch": plan.train_batch, "steps": plan.train_steps,
            "precision": precision.describe(), "frames_per_s": plan.train_steps * plan.train_batch / elapsed,
            "step_ms": 1000 * elapsed / plan.train_steps, "device": _device_name(plan)}


# ------------------------------------------------------------------------------------- runner


def _device_name(plan: Plan) -> str:
    if plan.cuda:
        return torch.cuda.get_device_name(0)
    from streamer.bench.procfs import cpu_model

    return f"CPU: {cpu_model()} ({os.cpu_count()} cores)"


def run_check(sections: list[str], out: Path, *, pipeline: bool = False, quick: bool = False, full_size: bool = False,
              console: Console | None = None) -> dict:
    console = console or Console()
    plan = Plan(torch.cuda.is_available(), quick=quick, full_size=full_size)
    out.mkdir(parents=True, exist_ok=True)
    report = {"device": _device_name(plan), "cuda": plan.cuda, "quick": plan.quick, "torch": torch.__version__,
              "python": platform.python_version(), "loadavg_start": list(os.getloadavg()), "sections": {}}
    if plan.cuda:
        report["cuda_version"] = torch.version.cuda
    runners = {"correctness": lambda: correctness(plan), "bare_model": lambda: bare_model(plan),
               "host_to_device": lambda: host_to_device(plan), "worker_over_zmq": lambda: worker_over_zmq(plan),
               "one_stream": lambda: one_stream(plan, out), "saturation": lambda: saturation(plan, out),
               "training": lambda: training(plan)}
    if not plan.cuda and not full_size:
        torch.set_num_threads(1)  # a smoke run on a CPU that may be shared: no threads spinning on each other
    chosen = [s for s in sections if s not in PIPELINE_SECTIONS or not plan.quick or pipeline]
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("gpu check" if plan.cuda else "gpu check (CPU fallback)", total=len(chosen))
        for section in sections:
            if section not in chosen:
                report["sections"][section] = {"skipped": "quick run: the pipeline is measured by `run.py bench` "
                                                          "(--pipeline runs it here too)"}
                continue
            progress.update(task, description=section)
            started = time.perf_counter()
            try:
                result = runners[section]()
            except Exception as error:  # noqa: BLE001 - one broken section must not lose the others' figures
                result = {"error": f"{type(error).__name__}: {error}"}
            result["seconds"] = time.perf_counter() - started
            report["sections"][section] = result
            progress.advance(task)
    report["loadavg_end"] = list(os.getloadavg())
    report["targets"] = {} if plan.quick else targets(report)  # the GPU's targets, judged at the GPU's sizes
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=float))
    table = render(report)
    console.print(table)
    with (out / "gpu_check.txt").open("w") as handle:
        Console(file=handle, width=140).print(table)
    return report


def targets(report: dict) -> dict:
    """The GPU targets this run can judge: worker >= 0.8x the bare model at its batch, pinned faster, p99 <= 10 ms."""
    sections, found = report["sections"], {}
    worker, bare = sections.get("worker_over_zmq", {}), sections.get("bare_model", {})
    rows = [r for r in worker.get("rows", []) if r["pinned"]]
    same = [r for r in bare.get("rows", []) if r["batch"] == worker.get("batch")
            and r["precision"] == ("fp16" if report["cuda"] else "fp32")]
    if rows and same:
        ratio = rows[0]["frames_per_s"] / same[0]["bare_frames_per_s"]
        found["feature worker >= 0.8x bare model at the same batch"] = {
            "met": ratio >= 0.8, "detail": f"{ratio:.2f}x ({rows[0]['frames_per_s']:.0f} vs "
                                           f"{same[0]['bare_frames_per_s']:.0f} frames/s at batch {worker['batch']})"}
    upload = sections.get("host_to_device", {})
    if "pinned" in upload:
        pinned, pageable = upload["pinned"]["copy_ms"]["p50"], upload["pageable"]["copy_ms"]["p50"]
        found["pinned upload faster than pageable"] = {"met": pinned < pageable,
                                                       "detail": f"{pinned:.3f} vs {pageable:.3f} ms"}
    if "latency_ms" in sections.get("one_stream", {}):
        p99 = sections["one_stream"]["latency_ms"]["p99"]
        found["1 stream at 30 fps: p99 <= 10 ms"] = {"met": p99 <= 10, "detail": f"p99 {p99:.1f} ms"}
    return found


def render(report: dict) -> Table:
    table = Table(title=f"GPU check on {report['device']}" + (" (quick run)" if report["quick"] else ""),
                  title_justify="left")
    for column in ("section", "what", "figure"):
        table.add_column(column, justify="left" if column != "figure" else "right")
    sections = report["sections"]
    for name, result in sections.items():
        if "skipped" in result or "error" in result:
            table.add_row(name, "skipped" if "skipped" in result else "[red]error", result.get("skipped") or
                          result["error"])
            continue
        for what, figure in _lines(name, result):
            table.add_row(name, what, figure)
    for name, target in report["targets"].items():
        table.add_row("target", name, ("[green]met " if target["met"] else "[red]missed ") + target["detail"])
    load = report["loadavg_end"]
    table.caption = f"load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; torch {report['torch']}"
    return table


def _lines(name: str, result: dict) -> list[tuple[str, str]]:
    if name == "correctness":
        return [(result["backend"], f"min cosine {result['min_cosine']:.5f}")]
    if name == "bare_model":
        return [(f"{r['precision']} batch {r['batch']}",
                 f"bare {r['bare_frames_per_s']:.0f}/s ({r['bare_call_ms']['p50']:.2f} ms); backend "
                 f"{r['backend_frames_per_s']:.0f}/s ({r['backend_call_ms']['p50']:.2f} ms), "
                 f"{r['backend_over_bare']:.2f}x") for r in result["rows"]]
    if name == "host_to_device":
        if "pinned" not in result:
            return [("upload", result["note"])]
        return [(f"{kind} batch {result['batch']}", f"{result[kind]['copy_ms']['p50']:.3f} ms, "
                 f"{result[kind]['gb_per_s']:.1f} GB/s, host blocked {result[kind]['host_blocked_ms']['p50']:.3f} ms")
                for kind in ("pinned", "pageable")]
    if name == "worker_over_zmq":
        return [(f"{'pinned' if r['pinned'] else 'pageable'} staging",
                 f"{r['frames_per_s']:.0f} frames/s, mean batch {r['mean_batch']:.1f}, fed {r['fed_per_s']:.0f}/s")
                for r in result["rows"]]
    if name == "one_stream":
        latency = result["latency_ms"]
        return [("1 stream, 30 fps", f"p50 {latency['p50']:.1f} ms, p99 {latency['p99']:.1f} ms")]
    if name == "saturation":
        return [(f"{p['streams']} streams x {result['fps_per_stream']:g} fps",
                 f"{p['labels_per_s']:.0f} labels/s, captured {p['captured_per_s']:.0f}/s: {p['limit']}")
                for p in result["points"]] + [("captures limit from", str(result["captures_limit_from_streams"]))]
    if name == "training":
        return [(f"{result['crop']} px, batch {result['batch']}, {result['precision']}",
                 f"{result['frames_per_s']:.1f} frames/s ({result['step_ms']:.0f} ms/step)")]
    return [(key, str(value)) for key, value in result.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streamer.bench.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/gpu_check", help="folder for gpu_check.json and gpu_check.txt")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated, from: {', '.join(SECTIONS)} (default all)")
    parser.add_argument("--pipeline", action="store_true", help="run the pipeline sections without CUDA too")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and durations on any device (a CPU always runs these), pipeline left out")
    parser.add_argument("--full-size", action="store_true",
                        help="the training step at the GPU's size (224 px, batch 128) on any device")
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    console = Console() if sys.stdout.isatty() else Console(width=160)  # logs: no wrapping at 80 columns
    report = run_check(sections, Path(args.out), pipeline=args.pipeline, quick=args.quick, full_size=args.full_size,
                       console=console)
    failed = [name for name, result in report["sections"].items() if "error" in result]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
