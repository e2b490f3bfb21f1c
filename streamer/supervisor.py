"""`run.py up`: the whole pipeline on this machine, from one config, kept alive.

Starts the LSTM worker, the feature worker(s) and one capture per `--source`, each as its own
`run.py` process with its log in `supervisor.log_dir`. A process that dies is restarted after
`supervisor.restart_delay_s` (a capture whose source ended or failed for good is not); each
restart is logged and published as supervisor stats on the label topic. Ctrl-C, SIGTERM or
`--seconds` stop everything: captures first, so their stream-end messages get through.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import zmq

from configs.settings import Config, add_config_arguments, config_to_toml, from_args
from streamer import wire
from streamer.logs import setup_logging
from streamer.sockets import StopFlag, make_socket, split_endpoints

log = logging.getLogger("up")

RUN_PY = Path(__file__).resolve().parent.parent / "run.py"
CAPTURE_GAVE_UP = 2  # exit code of a capture whose source failed for good (bad path, bad URL scheme)


@dataclass
class Child:
    name: str
    argv: list[str]
    log_path: Path
    is_capture: bool = False
    process: subprocess.Popen | None = None
    restarts: int = 0
    finished: bool = False  # exited for good: not restarted
    died_at: float | None = None
    log_file: object = field(default=None, repr=False)

    def start(self) -> None:
        if self.log_file is None:
            self.log_file = open(self.log_path, "ab", buffering=0)
        self.process = subprocess.Popen(self.argv, stdout=self.log_file, stderr=subprocess.STDOUT,
                                        start_new_session=True)  # our Ctrl-C is handled here, not by children

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()


def frame_endpoints(config: Config) -> list[str]:
    """One frames endpoint per feature worker: the configured list, or consecutive ports after the first."""
    listed = split_endpoints(config.endpoints.frames)
    workers = config.supervisor.feature_workers
    if len(listed) >= workers:
        return listed[:workers]
    first = urlparse(listed[0])
    if first.scheme != "tcp" or first.port is None:
        raise ValueError(f"{workers} feature workers need {workers} frames endpoints; list them in endpoints.frames "
                         f"separated by commas")
    host = first.hostname
    return [f"tcp://{host}:{first.port + i}" for i in range(workers)]


def plan(config: Config, sources: list[str], config_path: Path) -> list[Child]:
    """The processes to run, in start order: LSTM, feature workers, captures."""
    log_dir = Path(config.supervisor.log_dir)
    base = [sys.executable, str(RUN_PY)]
    common = ["--config", str(config_path)]
    children = [Child("lstm", base + ["lstm"] + common, log_dir / "lstm.log")]
    endpoints = frame_endpoints(config)
    for index, endpoint in enumerate(endpoints):
        children.append(Child(f"features:{index}", base + ["features", "--name", str(index)] + common
                              + ["--set", f"endpoints.frames={endpoint}"], log_dir / f"features-{index}.log"))
    for index, source in enumerate(sources):
        stream, spec = parse_source(source, index)
        if spec == "synthetic":  # several synthetic cameras should not show the same scenes
            spec = f"synthetic:{config.capture.synthetic_seed + index}"
        children.append(Child(f"capture:{stream}", base + ["capture", "--source", spec, "--stream", stream] + common
                              + ["--set", f"endpoints.frames={','.join(endpoints)}"],
                              log_dir / f"capture-{stream}.log", is_capture=True))
    names = [c.name for c in children]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ValueError(f"two sources share the stream name(s) {sorted(duplicates)}; name them with NAME=SOURCE")
    return children


def parse_source(source: str, index: int) -> tuple[str, str]:
    """`NAME=SPEC` or just `SPEC` (named cam0, cam1, ... by position)."""
    name, sep, spec = source.partition("=")
    if sep and "://" not in name and wire.STREAM_NAME.match(name):
        return name, spec
    return f"cam{index}", source


def supervise(children: list[Child], config: Config, stop: StopFlag, seconds: float) -> int:
    deadline = time.monotonic() + seconds if seconds else float("inf")
    context = zmq.Context()
    # Supervisor stats travel the features path, so they reach dashboards on the label topic.
    stats_out = make_socket(context, zmq.PUSH, config.endpoints.features, bind=False, security=config.security,
                            hwm=10)
    last_stats = 0.0
    try:
        for child in children:
            child.start()
            log.info("started %s (pid %d), log %s", child.name, child.process.pid, child.log_path)
        while not stop and time.monotonic() < deadline:
            stop.wait(0.1)
            for child in children:
                _check(child, config)
            captures = [c for c in children if c.is_capture]
            if captures and all(c.finished for c in captures):
                log.info("every source has ended; stopping")
                stop.wait(1.0)  # let the last labels leave
                break
            if time.monotonic() - last_stats >= config.capture.stats_interval_s:
                last_stats = time.monotonic()
                counters = {f"restarts_{c.name}": c.restarts for c in children}
                counters["restarts"] = sum(c.restarts for c in children)
                try:
                    wire.send(stats_out, wire.Stats(process="supervisor", t=time.time(), counters=counters),
                              flags=zmq.NOBLOCK)
                except zmq.Again:
                    pass
    finally:
        stats_out.close()
        context.term()
        shutdown(children)
    return 0


def _check(child: Child, config: Config) -> None:
    if child.finished:
        return
    code = child.exit_code()
    if code is None:
        return
    if child.is_capture and code in (0, CAPTURE_GAVE_UP):
        child.finished = True
        log.info("%s exited (%s); not restarting", child.name,
                 "source ended" if code == 0 else f"source failed for good, see {child.log_path}")
        return
    now = time.monotonic()
    if child.died_at is None:
        child.died_at = now
        log.warning("%s died (exit code %s); restarting in %.1f s", child.name, code, config.supervisor.restart_delay_s)
    if now - child.died_at >= config.supervisor.restart_delay_s:
        child.restarts += 1
        child.died_at = None
        child.start()
        log.warning("restarted %s (pid %d, restart #%d)", child.name, child.process.pid, child.restarts)


def shutdown(children: list[Child], grace_s: float = 5.0) -> None:
    """SIGTERM in reverse start order (captures first), then SIGKILL whatever is still running."""
    for child in reversed(children):
        if child.exit_code() is None:
            child.process.terminate()
            if child.is_capture:
                continue
            try:
                child.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
    deadline = time.monotonic() + grace_s
    for child in children:
        if child.process is None:
            continue
        try:
            child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in time: killed", child.name)
            child.process.kill()
            child.process.wait()
        if child.log_file is not None:
            child.log_file.close()


def run_up(config: Config, sources: list[str], seconds: float = 0.0, stop: StopFlag | None = None) -> int:
    stop = stop or StopFlag()
    log_dir = Path(config.supervisor.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    config_path = log_dir / "up-config.toml"
    config_path.write_text(config_to_toml(config))  # children see exactly what was resolved here
    children = plan(config, sources or ["synthetic"], config_path)
    log.info("labels will be published on %s (subscribe: python run.py subscribe)", config.endpoints.labels)
    return supervise(children, config, stop, seconds)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--source", action="append", default=[],
                        help="a source, optionally named NAME=SOURCE (repeatable; default: synthetic)")
    parser.add_argument("--seconds", type=float, default=0.0, help="stop after S seconds (0: until Ctrl-C)")


def main(args: argparse.Namespace) -> int:
    setup_logging("up")
    return run_up(from_args(args), args.source, args.seconds)
