"""A cell: one node's share of the streams, run by today's supervisor loop inside a Ray actor.

The cell runs on its node, as `run.py up` does on one host, an LSTM worker, the feature worker(s)
and one capture per stream it is given, on loopback ports of its own: frames never leave the node.
Every `cluster.poll_interval_s` it asks the coordinator which streams are its own at which epoch.
When that changes it tells its LSTM worker first (an `Assignment` on the features path: from then
on the worker labels only those streams, stamped with the epoch), then stops the captures of the
streams taken away and starts those of the streams given; they start a fresh window (`warming`).
The assignment is sent again every poll, so a restarted LSTM worker learns it within one.

The LSTM worker's labels are forwarded from its own PUB socket to the cluster's label proxy, so
the supervisor loop watches its pipeline exactly as on one host. Every cell has an `lstm`, a
`features:0` and a `supervisor`: their stats go out as `cell-1:lstm` and so on, so a dashboard
on the one endpoint tells the cells' counters apart (a capture's name, `capture:STREAM`, is one
stream's wherever it runs, and stays).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import ray
import zmq

from configs.settings import Config, build_config, replace
from streamer.ops.supervisor import (Child, capture_child, pipeline_log_dir, prepare, shutdown, start_child,
                                     supervise)
from streamer.runtime.logs import setup_logging
from streamer.transport import wire
from streamer.transport.sockets import StopFlag, free_ports, make_socket

log = logging.getLogger("cell")


def cell_config(config: Config, cell: str) -> Config:
    """The cluster's config with this cell's own loopback ports and log folder."""
    frames, features, labels, previews = (f"tcp://127.0.0.1:{port}" for port in free_ports(4))
    config = replace(config, "endpoints", frames=frames, features=features, labels=labels, previews=previews)
    return replace(config, "supervisor", log_dir=str(Path(config.supervisor.log_dir) / cell))


class Cell:
    """The actor (made remote by the coordinator, pinned to its node)."""

    def __init__(self, cell: str, values: dict, coordinator_name: str):
        setup_logging("cell")
        self.cell = cell
        self.cluster_config = build_config(values)
        self.coordinator_name = coordinator_name
        self.stop = StopFlag(hard_exit_s=0, signals=False)  # set by shutdown(); the actor's signals stay Ray's
        self.thread: threading.Thread | None = None
        self.starting = threading.Lock()  # ensure_running calls may overlap (the actor serves calls in threads)
        self.children: list[Child] = []
        self.epoch = 0  # the newest assignment epoch received
        self.wanted: dict[str, str] = {}  # stream -> source spec at that epoch
        self.asked: ray.ObjectRef | None = None
        self.asked_at = 0.0
        self.told_at = 0.0
        self.told_epoch = -1

    def ensure_running(self) -> int:
        """Start the cell's loop unless it runs (the coordinator calls this every poll). Its pid.

        A loop that ended (its pipeline could not start, e.g. a port taken meanwhile) starts again
        on fresh ports."""
        with self.starting:
            if not self.stop and (self.thread is None or not self.thread.is_alive()):
                self.thread = threading.Thread(target=self._run, name=f"cell-{self.cell}", daemon=True)
                self.thread.start()
        return os.getpid()

    def processes(self) -> dict[str, int]:
        """The pids of this cell: the actor itself and each running child."""
        pids = {"cell": os.getpid()}
        for child in list(self.children):
            if child.process is not None and child.exit_code() is None:
                pids[child.name] = child.process.pid
        return pids

    def shutdown(self) -> None:
        """Stop the children (captures first) and the loop."""
        self.stop.set()
        if self.thread is not None:
            self.thread.join(60)

    # --------------------------------------------------------------------------- the loop

    def _run(self) -> None:
        try:
            self._run_pipeline()
        except Exception:  # e.g. a port taken meanwhile: the coordinator's next ensure_running starts it again
            log.exception("cell %s: its pipeline stopped", self.cell)

    def _run_pipeline(self) -> None:
        self.told_epoch = -1  # a new LSTM worker: tell it at once
        config = cell_config(self.cluster_config, self.cell)
        # Popen from this thread: the children stop when it ends (streamer/runtime/lifetime.py)
        self.children = prepare(config, [])
        self.config_path = pipeline_log_dir(config) / "up-config.toml"
        self.config = config
        done = threading.Event()  # this pipeline ended (stopped, or it could not start): its forwarder too
        forwarder = threading.Thread(target=forward_labels,
                                     args=(config, self.cell, lambda: bool(self.stop) or done.is_set()), daemon=True)
        forwarder.start()
        log.info("cell %s: pipeline on %s, labels forwarded to %s", self.cell, config.endpoints.labels,
                 config.cluster.labels_in)
        try:
            supervise(self.children, config, self.stop, 0.0, adjust=self._adjust)
        finally:
            done.set()
            forwarder.join(5)

    def _adjust(self, children: list[Child], ready: bool, control: zmq.Socket) -> None:
        self._ask_coordinator()
        now = time.monotonic()
        if self.epoch and (self.told_epoch != self.epoch or now - self.told_at >= self.config.cluster.poll_interval_s):
            try:  # first: the LSTM worker fences the streams taken away before anything else changes
                wire.send(control, wire.Assignment(cell=self.cell, epoch=self.epoch, streams=sorted(self.wanted)),
                          flags=zmq.NOBLOCK)
                self.told_epoch, self.told_at = self.epoch, now
            except zmq.Again:
                return  # the LSTM worker is not connected yet: nothing changes before it knows
        # A process per stream here: a stream moved to another cell stops without disturbing the others.
        going = [c for c in children if c.is_capture and not set(c.streams) <= set(self.wanted)]
        if going:
            for child in going:
                children.remove(child)
            log.info("cell %s, epoch %d: stopping %s", self.cell, self.epoch, [c.name for c in going])
            shutdown(going, grace_s=2.0)
        if not ready:
            return  # captures start once the workers have loaded their models
        running = {stream for c in children if c.is_capture for stream in c.streams}
        for stream, spec in self.wanted.items():
            if stream not in running:
                child = capture_child(self.config, [(stream, spec)], self.config_path)
                children.append(child)
                start_child(child)

    def _ask_coordinator(self) -> None:
        """The cell's streams, asked without waiting: the answer is taken on a later round."""
        if self.asked is not None:
            done, _ = ray.wait([self.asked], timeout=0)
            if not done:
                return
            try:
                epoch, streams = ray.get(done[0])
            except ray.exceptions.RayError as error:  # the coordinator is being restarted by Ray
                log.warning("cell %s: no assignment this time (%s)", self.cell, type(error).__name__)
            else:
                if epoch > self.epoch:
                    log.info("cell %s: epoch %d, %d stream(s)", self.cell, epoch, len(streams))
                    self.epoch, self.wanted = epoch, dict(streams)
            self.asked = None
        if time.monotonic() - self.asked_at >= self.cluster_config.cluster.poll_interval_s:
            self.asked_at = time.monotonic()
            try:
                coordinator = ray.get_actor(self.coordinator_name, namespace=self.cluster_config.cluster.namespace)
                self.asked = coordinator.assignment.remote(self.cell)
            except ValueError:  # not registered again yet after a restart
                pass


def forward_labels(config: Config, cell: str, stopped: Callable[[], bool]) -> None:
    """Everything the cell's LSTM worker publishes, into the cluster's label proxy (topics unchanged,
    but the cell's own workers' stats named for the cell: `named_for_cell`)."""
    context = zmq.Context()
    inbound = make_socket(context, zmq.SUB, config.endpoints.labels, bind=False, security=config.security,
                          hwm=10000)
    inbound.setsockopt(zmq.SUBSCRIBE, b"")
    outbound = make_socket(context, zmq.PUB, config.cluster.labels_in, bind=False, security=config.security,
                           server_curve=False, hwm=10000)
    try:
        while not stopped():
            if not inbound.poll(200):
                continue
            for _ in range(1000):
                try:
                    outbound.send_multipart(named_for_cell(inbound.recv_multipart(zmq.NOBLOCK, copy=False), cell),
                                            copy=False)
                except zmq.Again:
                    break
    finally:
        inbound.close(linger=0)
        outbound.close(linger=0)
        context.term()


def named_for_cell(parts: list, cell: str) -> list:
    """A published message as it came, unless it is the stats of one of the cell's workers: those
    go out as `CELL:NAME` (its topic with it). A malformed one goes as it came, for the subscribers
    to count, and so does one whose new name would break the wire's rule for names (a long node name)."""
    topic = parts[0].bytes if isinstance(parts[0], zmq.Frame) else bytes(parts[0])
    if not topic.startswith(b"stats/"):
        return parts
    try:
        stats = wire.unpack_published(parts)
    except wire.WireError:
        return parts
    if stats.process.startswith("capture:"):
        return parts
    named = f"{cell}:{stats.process}"
    if not wire.is_stream_name(named):  # (a process name ends up in a topic: the stream names' rule)
        return parts
    return wire.pack_published(wire.Stats(process=named, t=stats.t, counters=stats.counters))
