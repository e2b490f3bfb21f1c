"""`run.py up --cluster ADDRESS`: the pipeline as one cell per Ray node, behind one label endpoint.

ADDRESS is `auto` (the Ray cluster this machine belongs to), `ray://HOST:PORT` (Ray Client), or
`local:N`: a test cluster of N nodes on this machine (`ray.cluster_utils.Cluster`, loopback only,
no Ray dashboard, Ray's health check every `cluster.health_check_period_s`), named cell-0 ...

`up` checks the sources and checkpoints as on one host, starts the label proxy and the
coordinator (both on the head node; streamer/ops/cluster/), which starts a cell on every live
node and assigns the streams. Then it subscribes to its own label endpoint like a dashboard: it
says "ready: labels on ..." when the first label arrives, logs each new epoch with the streams it
moved, and when it stops (Ctrl-C, SIGTERM, `--seconds`) stops the cells, the coordinator and the
proxy, and prints the same per-stream summary as on one host.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time

import zmq
from rich.console import Console

from configs.settings import Config, ConfigError, replace
from streamer.ops.supervisor import PipelineWatch, UP_HARD_EXIT_S, named_sources, preflight, subscribe_command
from streamer.ops.tally import Tally
from streamer.transport.sockets import StopFlag, bind_problem

log = logging.getLogger("up")

LOCAL = "local:"
HEAD = {"node:__internal_head__": 0.001}  # Ray's resource that only the head node has


def run_cluster(config: Config, sources: list[str], address: str, seconds: float = 0.0,
                stop: StopFlag | None = None, console: Console | None = None) -> int:
    sources = sources or ["synthetic"]
    from models.capture_preset import fit_capture

    fitted = fit_capture(config)
    config = fitted.config  # every cell gets the resolved capture
    if fitted.note:
        log.info("%s", fitted.note)
    nodes = local_nodes(address)
    preflight(config, sources, ports=False)  # each cell checks its own ports on its node
    if nodes:  # the proxy binds on this machine
        check_proxy_ports(config)
    named = named_sources(config, sources)
    if not nodes and "://127.0.0.1:" in config.cluster.labels_in:
        log.warning("cluster.labels_in is %s: cells on other nodes cannot reach it; across nodes use "
                    "--set cluster.labels_in=tcp://0.0.0.0:5559", config.cluster.labels_in)
    ray, cluster = connect(address, nodes, config)
    # after Ray: its driver installs a SIGTERM handler of its own (which aborts), this one replaces it
    stop = StopFlag(hard_exit_s=UP_HARD_EXIT_S) if stop is None else stop
    from ray.experimental import internal_kv

    from streamer.ops.cluster.coordinator import COORDINATOR, Coordinator
    from streamer.ops.cluster.proxy import PROXY, LabelProxy

    namespace = config.cluster.namespace
    values = dataclasses.asdict(config)
    tally = Tally()
    for stream, _ in named:
        tally.stream(stream)
    proxy = coordinator = None
    context = zmq.Context()
    watch = PipelineWatch(context, config, everything=True)
    try:
        try:
            ray.get_actor(COORDINATOR, namespace=namespace)
        except ValueError:
            pass
        else:
            raise ConfigError(f"a pipeline already runs in Ray namespace {namespace!r} on this cluster; stop it, or "
                              f"start this one with --set cluster.namespace=ANOTHER and other ports")
        internal_kv._internal_kv_del(f"{namespace}/assignment".encode())  # a fresh pipeline starts at epoch 1
        proxy = ray.remote(LabelProxy).options(name=PROXY, namespace=namespace, lifetime="detached", max_restarts=-1,
                                               num_cpus=0, resources=HEAD).remote(values)
        # cells on other nodes reach the proxy at its node's address when labels_in binds every interface
        values = dataclasses.asdict(replace(config, "cluster", labels_in=ray.get(proxy.ready.remote(), timeout=120)))
        coordinator = ray.remote(Coordinator).options(
            name=COORDINATOR, namespace=namespace, lifetime="detached", max_restarts=-1, max_concurrency=8,
            num_cpus=0, resources=HEAD).remote(named, values)
        log.info("labels will be published on %s (subscribe: %s)", config.endpoints.labels,
                 subscribe_command(config))
        watch_cluster(watch, coordinator, tally, config, stop, seconds)
    finally:
        if coordinator is not None:
            log.info("stopping the cells")
            try:
                ray.get(coordinator.shutdown_cells.remote(), timeout=90)
            except ray.exceptions.RayError as error:
                log.warning("the cells did not all stop cleanly (%s)", type(error).__name__)
            ray.kill(coordinator)
        if proxy is not None:
            while watch.socket.poll(200):  # what the cells said while stopping
                for message, received in watch.read(limit=1000):
                    tally.take(message, received)
            ray.kill(proxy)
        watch.close()
        context.term()
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
    (console or Console()).print(tally.summary(f"up stopped: {len(tally.streams)} stream(s), "
                                               f"{sum(s.labels for s in tally.streams.values())} labels"))
    return 0


def watch_cluster(watch: PipelineWatch, coordinator, tally: Tally, config: Config, stop: StopFlag,
                  seconds: float) -> None:
    """Take the cluster's labels into the tally and log each new epoch, until stopped."""
    import ray

    deadline = time.monotonic() + seconds if seconds else float("inf")
    status, epoch = None, 0
    while not stop and time.monotonic() < deadline:
        if watch.socket.poll(100):
            labelled = tally.first_label_at is not None
            for message, received in watch.read(limit=1000):
                tally.take(message, received)
            if not labelled and tally.first_label_at is not None:
                log.info("ready: labels on %s (watch them: %s)", config.endpoints.labels, subscribe_command(config))
        if status is None:
            status = coordinator.status.remote()
        done, _ = ray.wait([status], timeout=0)
        if done:
            try:
                state = ray.get(status)
            except ray.exceptions.RayError:
                state = None  # the coordinator is being restarted
            status = None
            for move in state["moves"] if state else []:
                if move["epoch"] > epoch:
                    epoch = move["epoch"]
                    log.info("epoch %d: cells %s; %d stream(s) moved %s", epoch, move["members"],
                             len(move["moved"]), move["moved"])


def local_nodes(address: str) -> int:
    """N for `local:N` (0 for a real cluster's address)."""
    if not address.startswith(LOCAL):
        return 0
    count = address[len(LOCAL):]
    if not count.isdigit() or not 1 <= int(count) <= 16:
        raise ConfigError(f"--cluster {address}: local:N takes 1 to 16 nodes, e.g. local:3")
    return int(count)


def check_proxy_ports(config: Config) -> None:
    problems = [f"{name}: cannot bind {endpoint} ({problem}); pick another port with --set {name}=tcp://HOST:PORT"
                for name, endpoint in (("endpoints.labels", config.endpoints.labels),
                                       ("cluster.labels_in", config.cluster.labels_in))
                if (problem := bind_problem(endpoint)) is not None]
    if problems:
        raise ConfigError("; ".join(problems))


def connect(address: str, nodes: int, config: Config):
    """Ray, connected to the cluster (started here for `local:N`): (the ray module, the local cluster or None)."""
    if nodes:
        # Ray would otherwise advertise this machine's outside address; a test cluster stays on loopback.
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    try:
        import ray
    except ModuleNotFoundError as error:
        if error.name != "ray":
            raise
        raise ConfigError("--cluster needs Ray: pip install -e '.[cluster]'") from None
    if not nodes:
        ray.init(address=address, namespace=config.cluster.namespace, logging_level="WARNING", log_to_driver=False)
        return ray, None
    from ray.cluster_utils import Cluster

    period_ms = int(config.cluster.health_check_period_s * 1000)
    started = time.monotonic()
    common = {"num_cpus": config.cluster.local_node_cpus, "node_ip_address": "127.0.0.1"}
    cluster = Cluster(initialize_head=True, head_node_args={
        **common, "node_name": "cell-0", "include_dashboard": False,
        "_system_config": {"health_check_period_ms": period_ms, "health_check_timeout_ms": period_ms,
                           "health_check_failure_threshold": 2, "health_check_initial_delay_ms": 0}})
    for index in range(1, nodes):
        cluster.add_node(**common, node_name=f"cell-{index}")
    ray.init(address=cluster.address, namespace=config.cluster.namespace, logging_level="WARNING",
             log_to_driver=False)
    log.info("local Ray cluster of %d nodes at %s in %.1f s (another node joins with: RAY_ENABLE_WINDOWS_OR_OSX_"
             "CLUSTER=0 ray start --address=%s --node-ip-address=127.0.0.1 --node-name=cell-%d)", nodes,
             cluster.address, time.monotonic() - started, cluster.address, nodes)
    return ray, cluster
