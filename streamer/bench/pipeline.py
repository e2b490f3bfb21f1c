"""Start the real pipeline, wait for every stream's first label, measure, drain, stop."""

from __future__ import annotations

import logging
import threading
import time

import zmq
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from configs.settings import Config, Endpoints, replace
from streamer.bench.procfs import backend_from_log, cpu_seconds, machine_busy_seconds, rss_kb
from streamer.bench.record import STATS_INTERVAL_S, Recorder, summarize, tail
from streamer.bench.views import render
from streamer.transport import wire
from streamer.transport.sockets import StopFlag, free_ports, make_socket

log = logging.getLogger("bench")

DRAIN_S = 1.0  # after the measured time, labels of frames captured inside it are collected at least this long
DRAIN_MAX_S = 30.0  # ... and until every stream has a label of a later frame, or this long at most


def bench_config(config: Config, fps: float) -> Config:
    """The config the pipeline runs with: the capture rate asked for, counters twice a second.

    The bench runs a pipeline of its own: unless the endpoints were set, it takes free loopback
    ports, so it never collides with a `run.py up` already running. When a trained bundle is
    there, the captures crop, and synthetic activities last, as that model was trained.
    """
    if config.endpoints == Endpoints():
        workers = config.supervisor.feature_workers
        features, labels, previews, *frames = (f"tcp://127.0.0.1:{port}" for port in free_ports(3 + workers))
        config = replace(config, "endpoints", frames=",".join(frames), features=features, labels=labels,
                         previews=previews)
    from models.capture_preset import fit_capture

    fitted = fit_capture(config)
    if fitted.note:
        log.info("%s", fitted.note)
    config = fitted.config
    config = replace(config, "capture", fps=float(fps), stats_interval_s=STATS_INTERVAL_S)
    config = replace(config, "features", stats_interval_s=STATS_INTERVAL_S)
    return replace(config, "lstm", stats_interval_s=STATS_INTERVAL_S)


class PipelineFailed(RuntimeError):
    pass


def run_pipeline(config: Config, sources: list[str], seconds: float, warmup: float, *, console: Console,
                 stop: StopFlag, startup_timeout: float = 180.0, memory_interval: float = 1.0,
                 live: bool = True, child_sets: dict[str, list[str]] | None = None) -> tuple[Recorder, float, float, dict]:
    """Start the pipeline, wait for it to warm up, measure `seconds`, stop it. Returns the records.

    `child_sets`: `--set` overrides for single children by name (e.g. one slowed feature worker)."""
    from streamer.ops.supervisor import parse_source, pipeline_log_dir, prepare, supervise

    # ports taken, bad sources, unusable bundles: one clear error before starting
    children = prepare(config, sources, config_name="bench-config.toml")
    for child in children:
        for override in (child_sets or {}).get(child.name, []):
            child.argv += ["--set", override]
    log_dir = pipeline_log_dir(config)
    streams = [parse_source(source, index)[0] for index, source in enumerate(sources)]
    recorder = Recorder(streams)
    log_offsets = {c.name: (c.log_path.stat().st_size if c.log_path.exists() else 0) for c in children}

    context = zmq.Context()
    subscriber = make_socket(context, zmq.SUB, config.endpoints.labels, bind=False, security=config.security,
                             server_curve=False, hwm=100000)
    for topic in (b"label/", b"stats/", b"event/"):
        subscriber.setsockopt(zmq.SUBSCRIBE, topic)
    failure: list[BaseException] = []

    def supervise_quietly() -> None:
        try:
            supervise(children, config, stop, 0.0)
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            failure.append(error)
            stop.set()

    supervisor = threading.Thread(target=supervise_quietly, name="supervisor", daemon=True)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                        TimeRemainingColumn(), console=console, transient=False)
    task = progress.add_task("starting the pipeline (loading models)", total=None)
    t_launch = time.time()
    t_warm = t_start = t_end = None
    phase = "starting"
    last_memory = last_view = 0.0
    view = Live(Group(progress), console=console, refresh_per_second=2, transient=True) if live else None
    try:
        supervisor.start()
        if view:
            view.start()
        while True:
            now = time.time()
            if stop and phase != "draining":
                break
            if not supervisor.is_alive() and phase != "draining":
                break
            if phase == "starting":
                if all(s in recorder.first_label for s in streams):
                    phase, t_warm = "warming", now
                    progress.update(task, description=f"warm-up {warmup:.0f} s (excluded)", total=warmup + seconds,
                                    completed=0)
                elif now - t_launch > startup_timeout:
                    missing = [s for s in streams if s not in recorder.first_label]
                    raise PipelineFailed(f"no label from {', '.join(missing)} within {startup_timeout:.0f} s of "
                                         f"starting; see the logs in {log_dir}")
            elif phase == "warming" and now - t_warm >= warmup:
                phase, t_start = "measuring", now
                t_end = t_start + seconds
                progress.update(task, description=f"measuring {seconds:.0f} s")
            elif phase == "measuring":
                progress.update(task, completed=warmup + (now - t_start))
                if now >= t_end:
                    phase = "draining"
                    progress.update(task, description="collecting the last labels", completed=warmup + seconds)
            elif phase == "draining" and now >= t_end + DRAIN_S:
                # Labels come in order per stream: once each stream has one for a frame captured after
                # the end, every label of a frame inside the measured time is here (or was dropped).
                if all(recorder.last_capture.get(s, 0.0) >= t_end for s in streams) or now >= t_end + DRAIN_MAX_S:
                    break
            if now - last_memory >= memory_interval:
                last_memory = now
                for child in children:
                    if child.process is not None and child.exit_code() is None:
                        kb = rss_kb(child.process.pid)
                        if kb is not None:
                            recorder.memory[child.name].append((now, kb))
                        used = cpu_seconds(child.process.pid)
                        if used is not None:
                            recorder.cpu[child.name].append((now, used))
                recorder.cpu["bench"].append((now, time.process_time()))
                busy = machine_busy_seconds()
                if busy is not None:
                    recorder.cpu["machine"].append((now, busy))
            if view and phase in ("warming", "measuring") and now - last_view >= 1.0:
                last_view = now
                since = t_start if t_start else t_warm
                partial = summarize(tail(recorder, 4000), since, now)
                partial["title"] = "live (last labels)"
                view.update(Group(progress, render(partial)))
            if not subscriber.poll(50):
                continue
            for message, received in wire.received_messages(subscriber, limit=1000):
                if message is None:
                    recorder.malformed += 1
                elif isinstance(message, wire.Label):
                    recorder.add_label(message, received)
                elif isinstance(message, wire.Stats):
                    recorder.add_stats(message)
                elif isinstance(message, (wire.StreamStart, wire.StreamEnd)):
                    recorder.events.append(f"{time.strftime('%H:%M:%S')} {message.stream}: "
                                           f"{'started' if isinstance(message, wire.StreamStart) else 'ended'}")
    finally:
        interrupted = bool(stop)  # Ctrl-C or SIGTERM, as opposed to the stop we give below
        if view:
            view.stop()
        stop.set()
        supervisor.join(timeout=30)
        subscriber.close()
        context.term()
    if failure:
        raise PipelineFailed(f"the supervisor failed: {failure[0]!r}")
    if t_start is None:
        raise PipelineFailed("stopped before the measurement began"
                             + ("" if all(s in recorder.first_label for s in streams) else
                                f" (no labels yet from {', '.join(s for s in streams if s not in recorder.first_label)}"
                                f"; see the logs in {log_dir})"))
    t_end = min(t_end, time.time())
    features = next(c for c in children if c.name.startswith("features"))
    meta = {
        "startup_s": (min(recorder.first_label.values()) if recorder.first_label else t_warm) - t_launch,
        "all_streams_labelled_after_s": t_warm - t_launch,
        "backend": backend_from_log(features.log_path, log_offsets[features.name]),
        "restarts": {c.name: c.restarts for c in children if c.restarts},
        "events": recorder.events[-20:],
        "malformed": recorder.malformed,
        "interrupted": interrupted,
    }
    return recorder, t_start, t_end, meta
