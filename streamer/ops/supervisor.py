"""`run.py up`: the whole pipeline on this machine, from one config, kept alive.

Before anything starts, `preflight` checks what would otherwise fail in every child again and
again: the sources, the checkpoints, the CURVE keys, the ports to bind. A bad config is one
clear message and exit code 2, not a crash loop.

Then it starts the LSTM worker and the feature worker(s), each as its own `run.py` process with its
log in `supervisor.log_dir`, and waits until the pipeline is ready: every feature worker's first
stats message has come back through the LSTM worker on the labels endpoint, so frames -> features
-> labels all flow. Only then does it start one capture per `--source`, logs "pipeline ready" and
sets `ready` in its stats; no frame is sent to a worker still loading its model. When every
source was a file (or a capture gave up), it stops once the LSTM worker has published each
stream's end, which follows the stream's last label. A process that dies is restarted after
`supervisor.restart_delay_s`, doubling (up to `restart_max_delay_s`) while it keeps dying young;
a capture whose source ended or failed for good is not restarted, and a worker that exits with
code 2 (its configuration cannot work) stops everything. Each restart is logged and counted in
the supervisor's stats, published on `stats/supervisor/`. Ctrl-C, SIGTERM or `--seconds` stop
everything: captures first, so their stream-end messages get through.
"""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import zmq

from configs.settings import Config, ConfigError, add_config_arguments, config_to_toml, from_args
from streamer.transport import wire
from streamer.runtime.lifetime import supervised_environment
from streamer.runtime.logs import setup_logging
from streamer.transport.sockets import StopFlag, bind_problem, make_socket, split_endpoints, warn_if_exposed
from streamer.capture.sources import SourceError, check_source

log = logging.getLogger("up")

RUN_PY = Path(__file__).resolve().parents[2] / "run.py"
CAPTURE_GAVE_UP = 2  # exit code of a capture whose source failed for good (bad path, bad URL scheme)
CONFIG_ERROR = 2  # exit code of a worker whose configuration cannot work: restarting would not help


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
    started_at: float = 0.0
    delay: float = 0.0  # wait before the pending restart, seconds
    log_file: object = field(default=None, repr=False)

    def start(self) -> None:
        if self.log_file is None:
            self.log_file = open(self.log_path, "ab", buffering=0)
        # Its own session: our Ctrl-C is handled here, not by children. They still stop if we die.
        self.process = subprocess.Popen(self.argv, stdout=self.log_file, stderr=subprocess.STDOUT,
                                        start_new_session=True, env=supervised_environment())
        self.started_at = time.monotonic()

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


def preflight(config: Config, sources: list[str]) -> None:
    """Everything that would make every child fail, checked once here; raises ConfigError listing it all."""
    problems = []
    try:
        plan(config, sources, Path("up-config.toml"))  # stream names, duplicates, frames endpoints
    except ValueError as error:
        problems.append(str(error))
    for index, source in enumerate(sources):
        stream, spec = parse_source(source, index)
        try:
            check_source(spec)
        except SourceError as error:
            problems.append(f"source {stream}: {error}")
    problems += check_bundles(config)
    if config.security.curve:
        from streamer.transport.security import check_keys

        try:
            check_keys(config.security)
        except ConfigError as error:
            problems.append(str(error))
    problems += check_endpoints(config)
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        raise ConfigError("nothing started, because:\n  - " + "\n  - ".join(problems))


def check_bundles(config: Config) -> list[str]:
    """The checkpoints the workers will load: readable, self-consistent, and fitting each other.

    As in workers/loading.py, a checkpoint file that does not exist means random weights (the
    workers log it loudly); one that exists but cannot be used is an error here, before any start.
    """
    problems: list[str] = []
    present = {section: Path(getattr(config, section).bundle) for section in ("features", "lstm")
               if Path(getattr(config, section).bundle).exists()}
    if not present:
        return problems
    from models import bundle  # imports torch: only when there is a checkpoint to check
    from models.networks import FEATURE_DIM

    if "features" in present:
        try:
            cnn = bundle.load_cnn(present["features"])
        except bundle.BundleError as error:
            problems.append(f"features.bundle: {error}")
        else:
            capture = config.capture
            if (cnn.preset.crop, cnn.preset.resize) != (capture.crop, capture.resize):
                problems.append(f"features.bundle {present['features']} was trained on {cnn.preset.crop}-pixel crops "
                                f"of {cnn.preset.resize}-pixel frames, the capture makes {capture.crop} of "
                                f"{capture.resize}: set capture.crop={cnn.preset.crop} "
                                f"capture.resize={cnn.preset.resize}")
    if "lstm" in present:
        try:
            lstm = bundle.load_lstm(present["lstm"])
        except bundle.BundleError as error:
            problems.append(f"lstm.bundle: {error}")
        else:
            if lstm.model.lstm.input_size != FEATURE_DIM:
                problems.append(f"lstm.bundle {present['lstm']} takes {lstm.model.lstm.input_size}-d features, the "
                                f"feature worker's ResNet-18 makes {FEATURE_DIM}-d; retrain the LSTM on features "
                                f"from this CNN (run.py extract, then run.py train-lstm)")
    return problems


def check_endpoints(config: Config) -> list[str]:
    """Every endpoint a child will bind must be free now (a second pipeline on the same ports would
    otherwise crash-loop), and binding beyond loopback without CURVE is warned about here too."""
    problems = []
    try:
        frames = frame_endpoints(config)
    except ValueError:
        frames = []  # already reported by plan()
    bound = [("endpoints.frames", e) for e in frames] + [("endpoints.features", config.endpoints.features),
                                                          ("endpoints.labels", config.endpoints.labels)]
    for name, endpoint in bound:
        warn_if_exposed(endpoint, config.security)
        problem = bind_problem(endpoint)
        if problem is not None:
            problems.append(f"{name}: cannot bind {endpoint} ({problem}); is another pipeline running? Stop it or "
                            f"pick another port with --set {name}=tcp://127.0.0.1:PORT")
    return problems


class PipelineWatch:
    """What `up` reads on the labels endpoint: which feature workers are ready, which streams ended."""

    def __init__(self, context: zmq.Context, config: Config):
        self.socket = make_socket(context, zmq.SUB, config.endpoints.labels, bind=False, security=config.security,
                                  server_curve=False, hwm=10000)
        self.socket.setsockopt(zmq.SUBSCRIBE, b"stats/features:")  # a worker's stats reach us only through the LSTM
        self.socket.setsockopt(zmq.SUBSCRIBE, b"event/")
        self.workers_seen: set[str] = set()
        self.ended: set[str] = set()  # streams whose end the LSTM worker published (after their last label)

    def read(self) -> None:
        while True:
            try:
                parts = self.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                message = wire.unpack_published(parts)
            except wire.WireError:
                continue  # the LSTM worker counts what is malformed; nothing here depends on it
            if isinstance(message, wire.Stats):
                self.workers_seen.add(message.process)
            elif isinstance(message, wire.StreamEnd):
                self.ended.add(message.stream)
            elif isinstance(message, wire.StreamStart):
                self.ended.discard(message.stream)

    def ready(self, feature_workers: list[Child]) -> bool:
        return all(child.name in self.workers_seen for child in feature_workers)

    def close(self) -> None:
        self.socket.close(linger=0)


END_GRACE_S = 30.0  # after the last capture exits, the longest wait for the streams' end messages


def supervise(children: list[Child], config: Config, stop: StopFlag, seconds: float) -> int:
    deadline = time.monotonic() + seconds if seconds else float("inf")
    context = zmq.Context()
    # Supervisor stats travel the features path, so they reach dashboards on `stats/supervisor/`.
    stats_out = make_socket(context, zmq.PUSH, config.endpoints.features, bind=False, security=config.security,
                            hwm=10)
    watch = PipelineWatch(context, config)
    last_stats = 0.0
    code = 0
    started = time.monotonic()
    workers = [c for c in children if not c.is_capture]
    captures = [c for c in children if c.is_capture]
    ready = False
    all_finished_at: float | None = None
    try:
        for child in workers:
            _start(child)
        log.info("waiting for the workers to load their models before starting the captures")
        while not stop and time.monotonic() < deadline:
            stop.wait(0.1)
            watch.read()
            fatal = [child for child in children if _check(child, config) == "fatal"]
            if fatal:
                code = CONFIG_ERROR
                break
            if not ready and watch.ready([c for c in workers if c.name.startswith("features:")]):
                ready = True
                log.info("pipeline ready after %.1f s: starting %d capture(s)", time.monotonic() - started,
                         len(captures))
                for child in captures:
                    _start(child)
                last_stats = 0.0  # tell dashboards at once
            if ready and captures and all(c.finished for c in captures):
                all_finished_at = all_finished_at or time.monotonic()
                if all(c.name.split(":", 1)[1] in watch.ended for c in captures):
                    log.info("every source has ended and its last label is out; stopping")
                    break
                if time.monotonic() - all_finished_at > END_GRACE_S:
                    log.warning("every source has ended but the end of %s was not published within %.0f s; "
                                "stopping", [c.name for c in captures if c.name.split(":", 1)[1] not in watch.ended],
                                END_GRACE_S)
                    break
            if time.monotonic() - last_stats >= config.supervisor.stats_interval_s:
                last_stats = time.monotonic()
                _send_stats(stats_out, children, ready)
    finally:
        watch.close()
        stats_out.close()
        context.term()
        shutdown(children)
    return code


def _start(child: Child) -> None:
    child.start()
    log.info("started %s (pid %d), log %s", child.name, child.process.pid, child.log_path)


def _send_stats(stats_out: zmq.Socket, children: list[Child], ready: bool) -> None:
    counters = {f"restarts_{c.name}": c.restarts for c in children}
    counters["restarts"] = sum(c.restarts for c in children)
    counters["running"] = sum(c.exit_code() is None and c.process is not None for c in children)
    counters["ready"] = float(ready)  # the workers answered and the captures were started
    try:
        wire.send(stats_out, wire.Stats(process="supervisor", t=time.time(), counters=counters), flags=zmq.NOBLOCK)
    except zmq.Again:
        pass  # the LSTM worker is down: this report is skipped, the counters are not lost


def _check(child: Child, config: Config) -> str | None:
    """Notice a child that exited and restart it when its delay has passed. "fatal": stop everything."""
    if child.finished:
        return None
    code = child.exit_code()
    if code is None:
        return None
    now = time.monotonic()
    if child.died_at is None:
        if child.is_capture and code in (0, CAPTURE_GAVE_UP):
            child.finished = True
            log.info("%s exited (%s); not restarting", child.name,
                     "source ended" if code == 0 else f"source failed for good, see {child.log_path}")
            return None
        if not child.is_capture and code == CONFIG_ERROR:
            child.finished = True
            log.error("%s exited with code %d: its configuration cannot work, so restarting it would not help; "
                      "stopping. Its log %s ends: %s", child.name, code, child.log_path, last_log_line(child.log_path))
            return "fatal"
        settings = config.supervisor
        ran_for = now - child.started_at
        # Dying young again and again (a port taken, a broken file) backs off instead of spinning.
        young = ran_for < settings.stable_after_s
        child.delay = (min(max(2 * child.delay, settings.restart_delay_s), settings.restart_max_delay_s)
                       if young else settings.restart_delay_s)
        child.died_at = now
        log.warning("%s died (%s) after %.1f s; restarting in %.1f s. Its log %s ends: %s", child.name,
                    describe_exit(code), ran_for, child.delay, child.log_path, last_log_line(child.log_path))
    if now - child.died_at >= child.delay:
        child.restarts += 1
        child.died_at = None
        child.start()
        log.warning("restarted %s (pid %d, restart #%d)", child.name, child.process.pid, child.restarts)
    return None


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def last_log_line(path: Path) -> str:
    try:
        with open(path, "rb") as file:
            file.seek(0, 2)
            file.seek(max(0, file.tell() - 4096))
            lines = [line for line in file.read().decode(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no log)"
    return lines[-1].strip() if lines else "(empty)"


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


def prepare(config: Config, sources: list[str], config_name: str = "up-config.toml") -> list[Child]:
    """Preflight, then the children to start, reading the config written for them in the log folder."""
    preflight(config, sources)  # raises ConfigError before anything is written or started
    log_dir = Path(config.supervisor.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    config_path = log_dir / config_name
    config_path.write_text(config_to_toml(config))  # children see exactly what was resolved here
    return plan(config, sources, config_path)


def run_up(config: Config, sources: list[str], seconds: float = 0.0, stop: StopFlag | None = None) -> int:
    stop = StopFlag() if stop is None else stop  # (an unset flag is falsy: `or` would replace it)
    sources = sources or ["synthetic"]
    from models.capture_preset import with_capture_preset

    config = with_capture_preset(config)  # children get the resolved crop, so all agree on it
    children = prepare(config, sources)
    log.info("labels will be published on %s (subscribe: python run.py subscribe)", config.endpoints.labels)
    return supervise(children, config, stop, seconds)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--source", action="append", default=[],
                        help="a source, optionally named NAME=SOURCE (repeatable; default: synthetic)")
    parser.add_argument("--seconds", type=float, default=0.0, help="stop after S seconds (0: until Ctrl-C)")


def main(args: argparse.Namespace) -> int:
    setup_logging("up")
    try:
        return run_up(from_args(args), args.source, args.seconds)
    except ConfigError as error:
        print(f"run.py up: error: {error}", file=sys.stderr)
        return CONFIG_ERROR
