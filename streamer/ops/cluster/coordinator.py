"""The coordinator: the camera list, which cell labels which stream, and the epoch of that assignment.

A detached Ray actor that Ray restarts when it dies. Membership is Ray's: every
`cluster.poll_interval_s` it reads Ray's list of live nodes (Ray's health checks decide who is
alive). One cell runs per live node, a detached actor pinned to that node. When the set of nodes
changes, the streams are reassigned by rendezvous hashing with bounded loads (models/rendezvous.py:
a node that leaves moves only its streams, one that joins takes its fair share) under a new epoch.
The epoch and the assignment are kept in Ray's key-value store, so a restarted coordinator goes on
from them and epochs only grow. Cells ask for their streams (`assignment`); nothing is pushed.
"""

from __future__ import annotations

import json
import logging
import threading
import time

import ray
from ray.experimental import internal_kv
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from configs.settings import build_config
from models.rendezvous import rebalance, streams_of
from streamer.ops.cluster.cell import Cell
from streamer.runtime.logs import setup_logging

log = logging.getLogger("coordinator")

COORDINATOR = "coordinator"  # its actor name in the cluster's namespace


def cell_names(nodes: list[dict]) -> dict[str, str]:
    """Cell name -> node id for Ray's live nodes: the node's name (its IP unless set), or its id when shared."""
    alive = [node for node in nodes if node["Alive"]]
    names = [node["NodeName"] for node in alive]
    return {(node["NodeName"] if names.count(node["NodeName"]) == 1 else node["NodeID"][:12]): node["NodeID"]
            for node in alive}


class Coordinator:
    def __init__(self, sources: list[tuple[str, str]], values: dict):
        setup_logging("coordinator")
        self.sources = dict(sources)  # stream -> source spec
        self.values = values
        self.config = build_config(values)
        self.key = f"{self.config.cluster.namespace}/assignment".encode()
        saved = internal_kv._internal_kv_get(self.key)
        state = json.loads(saved) if saved else {"epoch": 0, "owners": {}, "members": []}
        self.epoch: int = state["epoch"]
        self.owners: dict[str, str] = state["owners"]
        self.members: list[str] = state["members"]
        self.moves: list[dict] = []  # per epoch: when, members, streams moved
        self.cells: dict[str, ray.actor.ActorHandle] = {}  # node id -> its cell
        self.lock = threading.Lock()
        self.stopping = False
        if saved:
            log.info("restarted at epoch %d with %d cell(s)", self.epoch, len(self.members))
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def assignment(self, cell: str) -> tuple[int, list[tuple[str, str]]]:
        """The current epoch and the cell's streams with their sources."""
        with self.lock:
            return self.epoch, [(stream, self.sources[stream]) for stream in streams_of(self.owners, cell)]

    def status(self) -> dict:
        """Epoch, members, stream -> cell, and what each epoch moved."""
        with self.lock:
            return {"epoch": self.epoch, "members": list(self.members), "owners": dict(self.owners),
                    "moves": list(self.moves)}

    def shutdown_cells(self) -> None:
        """Every cell stops its processes (before `up` ends)."""
        self.stopping = True
        self.thread.join(10)
        refs = [cell.shutdown.remote() for cell in self.cells.values()]
        ray.wait(refs, num_returns=len(refs), timeout=60)
        for cell in self.cells.values():
            ray.kill(cell)

    def _watch(self) -> None:
        while not self.stopping:
            try:
                self._tick()
            except Exception:  # a failed read of the node list must not end the watch
                log.exception("coordinator round failed; trying again")
            time.sleep(self.config.cluster.poll_interval_s)

    def _tick(self) -> None:
        live = cell_names(ray.nodes())
        if sorted(live) != self.members and live:
            owners = rebalance(self.owners, list(self.sources), list(live))
            moved = sorted(s for s in owners if self.owners.get(s) != owners[s])
            with self.lock:
                self.epoch += 1
                self.owners, self.members = owners, sorted(live)
                self.moves.append({"epoch": self.epoch, "t": time.time(), "members": self.members, "moved": moved})
            internal_kv._internal_kv_put(self.key, json.dumps({"epoch": self.epoch, "owners": owners,
                                                               "members": self.members}), overwrite=True)
            log.info("epoch %d: cells %s, %d stream(s) moved", self.epoch, self.members, len(moved))
        for name, node in live.items():
            if node not in self.cells:
                self.cells[node] = ray.remote(Cell).options(
                    name=f"cell:{name}:{node[:12]}", namespace=self.config.cluster.namespace, get_if_exists=True,
                    lifetime="detached", max_restarts=-1, max_concurrency=8, num_cpus=0,
                    scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote(
                        name, self.values, COORDINATOR)
            self.cells[node].ensure_running.remote()  # starts it after a restart of the cell's actor
        for node in [n for n in self.cells if n not in live.values()]:
            del self.cells[node]  # its node is gone, and the actor with it
