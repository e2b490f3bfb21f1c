"""`run.py up`: the whole pipeline on this machine, from one config, kept alive.

Before anything starts, `preflight` checks what would otherwise fail in every child again and
again: the sources, the checkpoints, the CURVE keys, the ports to bind. A bad config is one
clear message and exit code 2, not a crash loop.

Then it starts the LSTM worker and the feature worker(s), each as its own `run.py` process with its
log in this pipeline's folder under `supervisor.log_dir` (named after the labels endpoint, so two
pipelines never mix their logs), and waits until the pipeline is ready: every feature worker's
first stats message has come back through the LSTM worker on the labels endpoint, so frames ->
features -> labels all flow. Only then does it start one capture per `--source`, logs "pipeline
ready" and sets `ready` in its stats; no frame is sent to a worker still loading its model. Every
WARNING and ERROR line of a child is also shown on `up`'s console, prefixed with the child's name.
`up` subscribes to its own labels like a dashboard: it says "ready: labels on ..." when the first
label leaves and, when it stops, prints a summary per stream (frames, labels, drops by reason,
latency). When every source was a file (or a capture gave up), it stops once the LSTM worker has
published each stream's end, which follows the stream's last label. A process that dies is restarted after
`supervisor.restart_delay_s`, doubling (up to `restart_max_delay_s`) while it keeps dying young;
a capture whose source ended or failed for good is not restarted, and a worker that exits with
code 2 (its configuration cannot work) stops everything. Each restart is logged and counted in
the supervisor's stats, published on `stats/supervisor/`. Ctrl-C, SIGTERM or `--seconds` stop
everything: captures first, so their stream-end messages get through.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import zmq
from rich.console import Console

from configs.exit_codes import ExitCode
from configs.settings import Config, ConfigError, add_config_arguments, config_to_toml, from_args
from streamer.ops.tally import Tally
from streamer.transport import wire
from streamer.runtime.lifetime import supervised_environment
from streamer.runtime.logs import setup_logging
from streamer.transport.sockets import StopFlag, bind_problem, make_socket, split_endpoints, warn_if_exposed

log = logging.getLogger("up")

RUN_PY = Path(__file__).resolve().parents[2] / "run.py"
UP_HARD_EXIT_S = 30.0  # after Ctrl-C/SIGTERM, up ends by then even if a child will not stop (see StopFlag)
CHILD_LOG_LINE = re.compile(r"^\S+ \S+ (WARNING|ERROR|CRITICAL) (.*)$")  # streamer.runtime.logs' format


@dataclass
class Child:
    name: str
    argv: list[str]
    log_path: Path
    is_capture: bool = False
    streams: list[str] = field(default_factory=list)  # a capture's streams
    process: subprocess.Popen | None = None
    restarts: int = 0
    finished: bool = False  # exited for good: not restarted
    died_at: float | None = None
    started_at: float = 0.0
    delay: float = 0.0  # wait before the pending restart, seconds
    log_file: object = field(default=None, repr=False)
    env: dict[str, str] = field(default_factory=dict, repr=False)  # added to its environment (a capture's source)
    log_read: int = 0  # how far `up` has read its log, bytes
    log_partial: bytes = b""  # the start of a line not yet finished

    def start(self) -> None:
        if self.log_file is None:
            self.log_file = open_private_log(self.log_path)
            self.log_read = self.log_file.tell()  # what earlier runs wrote is not news
        # Its own session: our Ctrl-C is handled here, not by children. They still stop if we die.
        self.process = subprocess.Popen(self.argv, stdout=self.log_file, stderr=subprocess.STDOUT,
                                        start_new_session=True, env=supervised_environment(self.env))
        self.started_at = time.monotonic()

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def new_log_lines(self) -> list[str]:
        """The complete lines its log gained since the last call."""
        try:
            with open(self.log_path, "rb") as file:
                file.seek(self.log_read)
                data = self.log_partial + file.read()
        except OSError:
            return []
        self.log_read += len(data) - len(self.log_partial)
        *lines, self.log_partial = data.split(b"\n")
        return [line.decode(errors="replace") for line in lines]


def forward_warnings(child: Child) -> None:
    """Show the child's new WARNING and ERROR lines on this console (its full log stays in its file)."""
    for line in child.new_log_lines():
        found = CHILD_LOG_LINE.match(line.strip())
        if found:
            log.log(logging.getLevelName(found[1]), "%s: %s", child.name, found[2])


def pipeline_log_dir(config: Config) -> Path:
    """This pipeline's log folder: under supervisor.log_dir, named after its labels endpoint."""
    name = re.sub(r"[^A-Za-z0-9.]+", "-", config.endpoints.labels.partition("://")[2]).strip("-")
    return Path(config.supervisor.log_dir) / (name or "pipeline")


def subscribe_command(config: Config) -> str:
    """The `subscribe` command line that receives this pipeline's labels."""
    command = "python run.py subscribe"
    if config.endpoints.labels != Config().endpoints.labels:
        command += f" --set endpoints.labels={config.endpoints.labels}"
    if config.security.curve:
        command += " --set security.curve=true"
        for key in ("keys_dir", "client_key"):  # where the subscriber finds its key pair
            value = getattr(config.security, key)
            if value != getattr(Config().security, key):
                command += f" --set security.{key}={value}"
    return command


def open_private_log(path: Path):
    """A log file only its owner can read (0600): a log line may name a camera's host and path."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(descriptor, 0o600)  # also a file an older version left readable
    return os.fdopen(descriptor, "ab", buffering=0)


def frame_endpoints(config: Config) -> list[str]:
    """One frames endpoint per feature worker: the configured list, or consecutive ports after the first."""
    listed = split_endpoints(config.endpoints.frames)
    workers = config.supervisor.feature_workers
    if len(listed) >= workers:
        return listed[:workers]
    first = urlparse(listed[0])
    if first.scheme != "tcp" or first.port is None:
        raise ConfigError(f"{workers} feature workers need {workers} frames endpoints; list them in endpoints.frames "
                          f"separated by commas")
    host = first.hostname
    return [f"tcp://{host}:{first.port + i}" for i in range(workers)]


def plan(config: Config, sources: list[str], config_path: Path) -> list[Child]:
    """The processes to run, in start order: LSTM, feature workers, captures."""
    log_dir = pipeline_log_dir(config)
    base = [sys.executable, str(RUN_PY)]
    common = ["--config", str(config_path)]
    children = [Child("lstm", base + ["lstm"] + common, log_dir / "lstm.log")]
    endpoints = frame_endpoints(config)
    for index, endpoint in enumerate(endpoints):
        children.append(Child(f"features:{index}", base + ["features", "--name", str(index)] + common
                              + ["--set", f"endpoints.frames={endpoint}"], log_dir / f"features-{index}.log"))
    for group in capture_groups(config, named_sources(config, sources)):
        children.append(capture_child(config, group, config_path))
    names = [c.name for c in children]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ConfigError(f"two sources share the stream name(s) {sorted(duplicates)}; name them with NAME=SOURCE")
    return children


def named_sources(config: Config, sources: list[str]) -> list[tuple[str, str]]:
    """(stream, spec) for each source, in order; the Nth synthetic camera gets seed synthetic_seed + N."""
    named = []
    for index, source in enumerate(sources):
        stream, spec = parse_source(source, index)
        if spec == "synthetic":  # several synthetic cameras should not show the same scenes
            spec = f"synthetic:{config.capture.synthetic_seed + index}"
        named.append((stream, spec))
    return named


def capture_groups(config: Config, named: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """The captures to run, in order: live sources share a process, `capture.cameras_per_process` at a
    time; a file or folder has one of its own (it is read once, to its end: restarting a process it
    shared would not read it again, and the others' restart would wait for it)."""
    from streamer.capture.process import kept_source  # OpenCV: after `--help` has answered

    size = config.capture.cameras_per_process
    if size < 1:
        raise ConfigError(f"capture.cameras_per_process is {size}; it must be at least 1 (1: a process per camera)")
    groups: list[list[tuple[str, str]]] = []
    shared: list[tuple[str, str]] = []  # the live group being filled (it is in `groups` once it has one)
    for stream, spec in named:
        if kept_source(spec, config):
            groups.append([(stream, spec)])
            continue
        if not shared or len(shared) == size:
            shared = []
            groups.append(shared)
        shared.append((stream, spec))
    return groups


def capture_child(config: Config, named: list[tuple[str, str]], config_path: Path) -> Child:
    """The capture process of these (stream, spec) pairs, sending to this pipeline's feature workers."""
    from streamer.capture.sources import SOURCE_VARIABLE  # OpenCV: after `--help` has answered

    streams = [stream for stream, _ in named]
    joined = "+".join(streams)
    # A file name holds 255 bytes: eight 64-character stream names would not fit.
    log_name = joined if len(joined.encode()) <= 200 else f"{streams[0]}+{len(streams) - 1}-more"
    # Sources go by environment, one a line, not argv: every user can read argv (`ps`), and a URL may
    # hold a password. `--stream=NAME` in one word, so a name starting with '-' is not read as an option.
    return Child(f"capture:{joined}", [sys.executable, str(RUN_PY), "capture", *[f"--stream={s}" for s in streams],
                                       "--config", str(config_path),
                                       "--set", f"endpoints.frames={','.join(frame_endpoints(config))}"],
                 pipeline_log_dir(config) / f"capture-{log_name}.log", is_capture=True,
                 env={SOURCE_VARIABLE: "\n".join(spec for _, spec in named)}, streams=streams)


def parse_source(source: str, index: int) -> tuple[str, str]:
    """`NAME=SPEC` or just `SPEC` (named cam0, cam1, ... by position).

    A `NAME=` that breaks the naming rule is an error naming the rule, not a file that is not there;
    a spec with '=' in a path or URL (`rtsp://h/x?a=b`, `dir/a=b.mp4`) is read as a spec."""
    name, sep, spec = source.partition("=")
    if not sep or "://" in name or "/" in name or Path(source).exists():
        return f"cam{index}", source
    return wire.check_stream_name(name), spec


def preflight(config: Config, sources: list[str], ports: bool = True) -> None:
    """Everything that would make every child fail, checked once here; raises ConfigError listing it all.
    `ports=False` leaves out the ports (on a cluster each cell checks its own, on its node)."""
    from streamer.capture.sources import SourceError, check_source  # OpenCV: after `--help` has answered

    problems = []
    try:
        plan(config, sources, Path("up-config.toml"))  # stream names, duplicates, frames endpoints
    except ValueError as error:
        problems.append(str(error))
    for index, source in enumerate(sources):
        try:
            stream, spec = parse_source(source, index)
            check_source(spec)
        except SourceError as error:
            problems.append(f"source {stream}: {error}")
        except wire.StreamNameError:
            pass  # already reported by plan()
    problems += check_bundles(config)
    if config.security.curve:
        from streamer.transport.security import check_keys

        try:
            check_keys(config.security)
        except ConfigError as error:
            problems.append(str(error))
    if ports:
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
    if config.capture.preview_fps > 0:
        bound.append(("endpoints.previews", config.endpoints.previews))
    for name, endpoint in bound:
        warn_if_exposed(endpoint, config.security)
        problem = bind_problem(endpoint)
        if problem is not None:
            problems.append(f"{name}: cannot bind {endpoint} ({problem}); is another pipeline running? Stop it or "
                            f"pick another port with --set {name}=tcp://127.0.0.1:PORT")
    return problems


class PipelineWatch:
    """`up`'s own subscription to its labels endpoint: which feature workers are ready and which streams
    ended; with `everything`, it also takes every label, event and stats message (for `up`'s tally)."""

    def __init__(self, context: zmq.Context, config: Config, everything: bool = False):
        self.socket = make_socket(context, zmq.SUB, config.endpoints.labels, bind=False, security=config.security,
                                  server_curve=False, hwm=100000 if everything else 10000)
        # a feature worker's stats reach us only through the LSTM worker
        for topic in (b"label/", b"event/", b"stats/") if everything else (b"stats/features:", b"event/"):
            self.socket.setsockopt(zmq.SUBSCRIBE, topic)
        self.workers_seen: set[str] = set()
        self.ended: set[str] = set()  # streams whose end the LSTM worker published (after their last label)

    def read(self, limit: int | None = None) -> list[tuple[wire.Message | None, float]]:
        """The messages waiting (None for a malformed one: the LSTM worker counts those), noted here."""
        taken = list(wire.received_messages(self.socket, limit))
        for message, _ in taken:
            if isinstance(message, wire.Stats):
                self.workers_seen.add(message.process)
            elif isinstance(message, wire.StreamEnd):
                self.ended.add(message.stream)
            elif isinstance(message, wire.StreamStart):
                self.ended.discard(message.stream)
        return taken

    def ready(self, feature_workers: list[Child]) -> bool:
        return all(child.name in self.workers_seen for child in feature_workers)

    def close(self) -> None:
        self.socket.close(linger=0)


END_GRACE_S = 30.0  # after the last capture exits, the longest wait for the streams' end messages
STOPPED_ENDS_S = 3.0  # when `up` stops: the longest wait for the stopped captures' ends to come through


def supervise(children: list[Child], config: Config, stop: StopFlag, seconds: float,
              tally: Tally | None = None, adjust: Callable[[list[Child], bool, zmq.Socket], None] | None = None) -> int:
    """Run the children until stopped; with a `tally`, also receive the pipeline's own labels into it.
    `adjust(children, ready, control)`, called every round, may add or stop captures (a cluster's cell;
    `control` reaches the LSTM worker on the features path)."""
    deadline = time.monotonic() + seconds if seconds else float("inf")
    context = zmq.Context()
    # Supervisor stats travel the features path, so they reach dashboards on `stats/supervisor/`.
    stats_out = make_socket(context, zmq.PUSH, config.endpoints.features, bind=False, security=config.security,
                            hwm=10)
    watch = PipelineWatch(context, config, everything=tally is not None)
    last_stats = 0.0
    code = 0
    started = time.monotonic()
    workers = [c for c in children if not c.is_capture]
    captures = [c for c in children if c.is_capture]
    ready = False
    all_finished_at: float | None = None
    try:
        for child in workers:
            if stop:  # Ctrl-C while starting: start nothing more
                break
            start_child(child)
        log.info("waiting for the workers to load their models before starting the captures")
        while not stop and time.monotonic() < deadline:
            if watch.socket.poll(100):
                labelled = tally is not None and tally.first_label_at is not None
                for message, received in watch.read(limit=1000):
                    if tally is not None:
                        tally.take(message, received)
                if tally is not None and not labelled and tally.first_label_at is not None:
                    log.info("ready: labels on %s (watch them: %s)", config.endpoints.labels,
                             subscribe_command(config))
            for child in children:
                if child.process is not None:
                    forward_warnings(child)
            fatal = [child for child in children if _check(child, config) == "fatal"]
            if fatal:
                code = ExitCode.USER_ERROR
                break
            if not ready and watch.ready([c for c in workers if c.name.startswith("features:")]):
                ready = True
                log.info("pipeline ready after %.1f s: starting %d capture process(es) for %d stream(s)",
                         time.monotonic() - started, len(captures), sum(len(c.streams) for c in captures))
                for child in captures:
                    if not stop:
                        start_child(child)
                last_stats = 0.0  # tell dashboards at once
            if adjust is not None:
                adjust(children, ready, stats_out)
                captures = [c for c in children if c.is_capture]
            if ready and captures and all(c.finished for c in captures):
                if all(c.exit_code() == ExitCode.USER_ERROR for c in captures):
                    log.error("every source failed for good (see the capture logs in %s); stopping",
                              pipeline_log_dir(config))
                    code = ExitCode.USER_ERROR
                    break
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
        stats_out.close()
        if tally is not None:
            stop_captures_first(children, watch, tally)
        shutdown(children)
        if tally is not None:  # what the captures and workers said while stopping
            while watch.socket.poll(200):
                for message, received in watch.read(limit=1000):
                    tally.take(message, received)
        watch.close()
        context.term()
        for child in children:
            if child.process is not None:
                forward_warnings(child)
    return code


def start_child(child: Child) -> None:
    child.start()
    log.info("started %s (pid %d), log %s", child.name, child.process.pid, child.log_path)


def _send_stats(stats_out: zmq.Socket, children: list[Child], ready: bool) -> None:
    # A capture's restarts under each of its streams' process names ("capture:cam0"), the names its
    # cameras' stats carry, so they pair with those stats whatever process the cameras share.
    counters = {f"restarts_{name}": c.restarts for c in children
                for name in ([f"capture:{stream}" for stream in c.streams] or [c.name])}
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
        # A capture whose source ended or failed for good (bad path, bad URL scheme) is done.
        if child.is_capture and code in (ExitCode.OK, ExitCode.USER_ERROR):
            child.finished = True
            log.info("%s exited (%s); not restarting", child.name,
                     "source ended" if code == 0 else f"source failed for good, see {child.log_path}")
            return None
        if not child.is_capture and code == ExitCode.USER_ERROR:
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


def stop_captures_first(children: list[Child], watch: PipelineWatch, tally: Tally,
                        settle_s: float = STOPPED_ENDS_S) -> None:
    """Stop the captures, then, while the workers still run, take in what comes back until every
    stream that was being labelled has ended (at most `settle_s`): a capture's last counters travel
    just before its stream end. With every process stopped at once they were lost now and then,
    and the summary showed fewer frames read than labels. `shutdown` stops the workers after this."""
    captures = [c for c in children if c.is_capture and c.process is not None and c.exit_code() is None]
    shutdown(captures)
    # A stream with no label since its last end has nothing on its way (the LSTM worker drops the
    # end of a stream it holds nothing of), so it is not waited for.
    streams = [tally.stream(stream) for c in captures for stream in c.streams]
    labelled = [item for item in streams if item.labels and item.ended is None]
    settle_until = time.monotonic() + settle_s
    while any(item.ended is None for item in labelled) and time.monotonic() < settle_until:
        if watch.socket.poll(50):
            for message, received in watch.read(limit=1000):
                tally.take(message, received)


def shutdown(children: list[Child], grace_s: float = 5.0) -> None:
    """SIGTERM in reverse start order (captures first), then SIGKILL whatever is still running
    (a child never started, as when a worker before it failed to bind, is passed over)."""
    for child in reversed(children):
        if child.process is not None and child.exit_code() is None:
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
    log_dir = pipeline_log_dir(config)
    log_dir.mkdir(parents=True, exist_ok=True)
    config_path = log_dir / config_name
    with open_private_log(config_path) as file:  # children see exactly what was resolved here
        file.truncate(0)
        file.write(config_to_toml(config).encode())
    return plan(config, sources, config_path)


def run_up(config: Config, sources: list[str], seconds: float = 0.0, stop: StopFlag | None = None,
           console: Console | None = None) -> int:
    # (an unset flag is falsy: `or` would replace it). Stopping the children may take a few grace periods.
    stop = StopFlag(hard_exit_s=UP_HARD_EXIT_S) if stop is None else stop
    sources = sources or ["synthetic"]
    from models.capture_preset import fit_capture

    fitted = fit_capture(config)
    config = fitted.config  # children get the resolved capture, so all agree on it
    if fitted.note:
        log.info("%s", fitted.note)
    children = prepare(config, sources)
    if fitted.synthetic_classes and any(not parse_source(s, i)[1].startswith("synthetic") for i, s in enumerate(sources)):
        log.warning("the model's classes are the synthetic set's moving shapes (FadeIn, BounceBall, ...): on other "
                    "footage its labels mean nothing. To recognise real actions, train on them: README, Training")
    if stop:
        log.info("stopped before anything started")
        return 0
    log.info("labels will be published on %s (subscribe: %s)", config.endpoints.labels, subscribe_command(config))
    tally = Tally()
    for child in children:
        for stream in child.streams:  # listed even if none of its labels arrives
            tally.stream(stream)
    code = supervise(children, config, stop, seconds, tally)
    (console or Console()).print(tally.summary(f"up stopped: {len(tally.streams)} stream(s), "
                                               f"{sum(s.labels for s in tally.streams.values())} labels"))
    return code


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--source", action="append", default=[],
                        help="a source, optionally named NAME=SOURCE (repeatable; default: synthetic); @FILE reads "
                             "them from FILE, one a line, keeping passwords out of the process list")
    parser.add_argument("--seconds", type=float, default=0.0, help="stop after S seconds (0: until Ctrl-C)")
    parser.add_argument("--cluster", metavar="ADDRESS", default=None,
                        help="run one cell per Ray node: auto, ray://HOST:PORT, or local:N (an N-node test cluster "
                             "on this machine); needs the cluster extra, pip install -e '.[cluster]'")


def main(args: argparse.Namespace) -> int:
    setup_logging("up")
    if args.cluster:
        from streamer.ops.cluster.up import run_cluster  # Ray only here: one host never imports it

        return run_cluster(from_args(args), read_sources(args.source), args.cluster, args.seconds)
    return run_up(from_args(args), read_sources(args.source), args.seconds)  # run.py reports a ConfigError


def read_sources(given: list[str]) -> list[str]:
    """`--source` values; `@FILE` stands for the sources listed in FILE, one a line (a URL with a password
    given this way never appears in the process list)."""
    sources = []
    for item in given:
        if not item.startswith("@"):
            sources.append(item)
            continue
        try:
            lines = Path(item[1:]).read_text().splitlines()
        except OSError as error:
            raise ConfigError(f"--source {item}: cannot read {item[1:]} ({error.strerror or error}); give a file "
                              f"with one source a line") from None
        sources += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return sources
