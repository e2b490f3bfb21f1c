"""`run.py up --cluster local:3` with 30 synthetic streams: a node joins, then one is killed with kill -9.

Real Ray nodes on loopback (`ray.cluster_utils.Cluster`, started by `up`; the fourth node joins
as `ray start --address` would), real cells running today's processes, one label proxy.
The test listens on the one label endpoint and also connects to Ray itself, to read the
coordinator's assignment and to find the victim node's processes. It checks:

- a killed coordinator is restarted by Ray and keeps the epoch and the assignment;
- a joining node takes at most 1.5x its fair share of the streams, and only it takes any;
- after the kill, every stream's labels resume (the recovery times are printed: README's
  reliability table), and only the dead node's streams moved;
- a moved stream says `warming` until its window is full and its seq starts again at 0; for the two
  streams that replay a video file (every frame sent, so a seq is the same frame on every cell; a
  synthetic camera keeps only its newest frame and under load may skip one) the labels after the
  move equal those the same frames got before it (the model as on one host);
- under each epoch a stream's labels come from one cell: seq only grows, never repeats;
- each cell's LSTM worker's stats come named for the cell (`cell-0:lstm`, ...), not all as `lstm`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # this test's Ray stays on loopback

import pytest  # noqa: E402
import ray  # noqa: E402 - the cluster extra; missing, this test fails (CI installs it)
import zmq  # noqa: E402

from streamer.ops.cluster.coordinator import COORDINATOR, cell_names  # noqa: E402
from streamer.transport import wire  # noqa: E402
from tests.support.clips import write_opencv  # noqa: E402
from tests.support.pipeline import FAST, Listener, free_endpoints, free_port, run_py, stop_process  # noqa: E402

STREAMS = 30
WINDOW = 8  # lstm.random_window in FAST
RESUME_LIMIT_S = 30.0  # the test fails after this (measured: 4-5 s to the first label); the times are printed
NAMESPACE = "cluster-test"
# Streams replaying a video file; by the hashing of these names over cell-0..cell-3, cam5 moves to the joining
# node and cam1 is on the killed one.
FILE_STREAMS = ("cam1", "cam5")


def descendants(root: int) -> list[int]:
    """`root` and every process below it (by parent pid, whatever their session)."""
    children = defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as file:
                    parent = int(file.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children[parent].append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def raylet_of(node_name: str) -> int:
    """The pid of the raylet serving the Ray node named `node_name` on this machine."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"/raylet") and f"--node-name={node_name}".encode() in argv:
            return int(entry)
    pytest.fail(f"no raylet for node {node_name}")


def kill_node(node_name: str) -> list[int]:
    """kill -9 every process of a node: its raylet, Ray's workers (our cell) and the cell's children."""
    pids = descendants(raylet_of(node_name))
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return pids


def join_node(address: str, name: str):
    """A new Ray node on this machine joining the cluster at `address` (what `ray start --address` does,
    on loopback as `up`'s local nodes are)."""
    from ray._private.node import Node
    from ray._private.parameter import RayParams

    params = RayParams(gcs_address=address, node_ip_address="127.0.0.1", node_name=name, num_cpus=1, num_gpus=0,
                       object_store_memory=150 * 1024 * 1024, min_worker_port=0, max_worker_port=0,
                       include_log_monitor=False, node_manager_port=0)
    params.dashboard_agent_listen_port = None
    return Node(params, head=False, shutdown_at_exit=False, spawn_reaper=False)


def status_of(coordinator) -> dict | None:
    """The coordinator's status, or None while Ray is restarting it."""
    try:
        return ray.get(coordinator.status.remote(), timeout=5)
    except ray.exceptions.RayError:
        return None


class Labels:
    """Every label on the one endpoint, by stream, with its arrival time."""

    def __init__(self, listener: Listener):
        self.listener = listener

    def of(self, stream: str, epoch: int | None = None) -> list[tuple[float, wire.Label]]:
        return [(item.wall, item.message) for item in self.listener.history
                if isinstance(item.message, wire.Label) and item.message.stream == stream
                and (epoch is None or item.message.epoch == epoch)]

    def wait(self, condition, what: str, up: subprocess.Popen, log: Path, timeout_s: float = 240.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if up.poll() is not None:
                pytest.fail(f"up exited with {up.returncode}:\n{log.read_text(errors='replace')[-6000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"{what} not within {timeout_s:.0f} s:\n{log.read_text(errors='replace')[-6000:]}")
            self.listener.pump(0.5)


def test_thirty_streams_on_three_cells_survive_a_join_and_a_kill(tmp_path):
    endpoints = free_endpoints()
    labels_in = f"tcp://127.0.0.1:{free_port()}"
    sets = [f"endpoints.labels={endpoints['labels']}", f"cluster.labels_in={labels_in}",
            f"cluster.namespace={NAMESPACE}", f"supervisor.log_dir={tmp_path / 'logs'}", "capture.preview_fps=0",
            "capture.fps=4", "cluster.poll_interval_s=0.25",
            # float32, one frame per CNN call: a frame gets the same features, to the bit, on every feature worker
            "features.max_batch=1", "features.precision=fp32", "lstm.top_k=8", "capture.loop=true"] + [s for s in FAST if not s.startswith("capture.fps")]
    args = ["up", "--cluster", "local:3", "--seconds", "600"]
    clip = write_opencv(tmp_path / "moving.avi", "MJPG", 96, 72, 4.0, 60)
    for index in range(STREAMS):
        args += ["--source", f"cam{index}={clip}" if f"cam{index}" in FILE_STREAMS else "synthetic"]
    up_log = tmp_path / "up.log"
    up = run_py(args, sets, up_log, cwd=tmp_path)
    streams = [f"cam{i}" for i in range(STREAMS)]
    joined = None
    listener = Listener(endpoints["labels"], topics=(b"label/", b"stats/lstm", b"stats/cell-"))
    labels = Labels(listener)
    try:
        # 1. every stream labelled with a full window on three cells
        labels.wait(lambda: all(any(not l.warming and l.epoch >= 1 for _, l in labels.of(s)) for s in streams),
                    "a full window for every stream", up, up_log)
        address = next(line.split(" at ")[1].split(" ")[0] for line in up_log.read_text().splitlines()
                       if "local Ray cluster of 3 nodes at" in line)
        ray.init(address=address, namespace=NAMESPACE, logging_level="ERROR", log_to_driver=False)
        coordinator = ray.get_actor(COORDINATOR, namespace=NAMESPACE)
        first = ray.get(coordinator.status.remote())
        assert first["members"] == ["cell-0", "cell-1", "cell-2"] and sorted(first["owners"]) == sorted(streams)

        # the coordinator is killed: Ray restarts it, and it goes on from the epoch and assignment it kept
        ray.kill(coordinator, no_restart=False)
        time.sleep(1.0)
        labels.wait(lambda: status_of(coordinator) is not None, "the coordinator back", up, up_log, timeout_s=60)
        again = status_of(coordinator)
        assert again["moves"] == []  # a new instance: what it logged in memory is gone
        assert (again["epoch"], again["owners"]) == (first["epoch"], first["owners"])

        # 2. a fourth node joins: it takes at most 1.5x its fair share, nothing else moves
        joined = join_node(address, "cell-3")
        labels.wait(lambda: ray.get(coordinator.status.remote())["epoch"] > first["epoch"], "a new epoch", up, up_log)
        second = ray.get(coordinator.status.remote())
        moved = [s for s in streams if second["owners"][s] != first["owners"][s]]
        assert moved and all(second["owners"][s] == "cell-3" for s in moved) and "cam5" in moved
        assert len(moved) <= 1.5 * STREAMS / 4, moved
        labels.wait(lambda: all(any(not l.warming for _, l in labels.of(s, second["epoch"])) for s in streams),
                    "a full window for every stream after the join", up, up_log)

        # 3. kill -9 every process of one node
        victim = "cell-2"
        cell_pids = ray.get(ray.get_actor(next(name for name in ray.util.list_named_actors(all_namespaces=True)
                                                   if isinstance(name, dict) and name["name"].startswith(f"cell:{victim}:"))["name"],
                                          namespace=NAMESPACE).processes.remote())
        lost = [s for s in streams if second["owners"][s] == victim]
        assert "cam1" in lost
        killed_at = time.time()
        killed = kill_node(victim)
        assert set(cell_pids.values()) <= set(killed), (cell_pids, killed)
        labels.wait(lambda: ray.get(coordinator.status.remote())["epoch"] > second["epoch"], "the epoch after the kill",
                    up, up_log)
        third = ray.get(coordinator.status.remote())
        assert third["members"] == ["cell-0", "cell-1", "cell-3"]
        assert sorted(s for s in streams if third["owners"][s] != second["owners"][s]) == sorted(lost)
        labels.wait(lambda: all(any(not l.warming for _, l in labels.of(s, third["epoch"])) for s in streams),
                    "a full window for every stream after the kill", up, up_log, timeout_s=RESUME_LIMIT_S)
        listener.pump(2.0)
    finally:
        ray.shutdown()
        code = stop_process(up, timeout_s=120)
        if joined is not None:
            try:
                kill_node("cell-3")
            except BaseException:
                pass
        listener.close()
    log = up_log.read_text(errors="replace")
    assert code == 0, log[-6000:]
    assert "up stopped: 30 stream(s)" in log, log[-6000:]
    assert {"cell-0:lstm", "cell-1:lstm", "cell-2:lstm", "cell-3:lstm"} <= set(listener.stats), sorted(listener.stats)
    assert "lstm" not in listener.stats

    # every stream resumed: the first label after the kill, and for a moved stream its first at the new epoch
    resumed = {}
    for stream in streams:
        after = [t for t, l in labels.of(stream) if t > killed_at and (stream not in lost or l.epoch == third["epoch"])]
        resumed[stream] = after[0] - killed_at
    print(f"\nrecovery after kill -9 of {victim} ({len(lost)} streams moved): "
          f"moved streams' first label at the new epoch after {min(resumed[s] for s in lost):.1f} to "
          f"{max(resumed[s] for s in lost):.1f} s; full window after "
          f"{max(next(t for t, l in labels.of(s, third['epoch']) if not l.warming) for s in lost) - killed_at:.1f} s; "
          f"other streams' first label after {max(resumed[s] for s in streams if s not in lost):.1f} s at most")
    assert max(resumed.values()) <= RESUME_LIMIT_S

    for stream in streams:
        by_epoch = defaultdict(list)
        for _, label in labels.of(stream):
            by_epoch[label.epoch].append(label)
        for epoch, got in by_epoch.items():
            seqs = [label.seq for label in got]
            # one cell per stream and epoch: a second cell would start its own seq from 0 again
            assert seqs == sorted(set(seqs)), f"{stream} at epoch {epoch}: seq {seqs}"
        restarted = [e for e in (second["epoch"], third["epoch"])
                     if e in by_epoch and (stream in moved and e == second["epoch"] or stream in lost and e == third["epoch"])]
        for epoch in restarted:
            got = by_epoch[epoch]
            assert got[0].seq == 0, f"{stream} moved at epoch {epoch} but did not start again"
            assert [l.warming for l in got[:WINDOW + 2]] == [l.seq < WINDOW - 1 for l in got[:WINDOW + 2]]
            if stream not in FILE_STREAMS:
                continue
            # the same frames as before the move (the file plays again from its first frame): the same labels,
            # as the model gives on one host
            before = {l.seq: l for e, earlier in by_epoch.items() if e < epoch for l in earlier}
            common = [l for l in got if l.seq in before]
            assert len(common) >= WINDOW + 2, f"{stream}: too few frames seen both before and after the move"
            for label in common:
                old = before[label.seq]
                assert label.warming == old.warming and label.frames_in_window == old.frames_in_window
                assert label.label == old.label
                assert max(abs(p - dict(old.top_k)[name]) for name, p in label.top_k) <= 1e-4


def test_up_on_one_host_never_imports_ray():
    probe = ("import sys, run; from streamer.ops import supervisor; "
             "supervisor.add_arguments(__import__('argparse').ArgumentParser()); print('ray' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stdout + result.stderr


@pytest.mark.parametrize("address", ["local:0", "local:x", "local:17"])
def test_a_bad_local_cluster_size_is_a_user_error(address, capsys):
    import run

    assert run.main(["up", "--cluster", address, "--set", "features.bundle=absent.pt"]) == 2
    assert "local:N takes 1 to 16 nodes" in capsys.readouterr().err


def test_cells_are_named_after_their_nodes_or_their_ids_when_names_repeat():
    nodes = [{"NodeName": "10.0.0.1", "NodeID": "a" * 56, "Alive": True},
             {"NodeName": "10.0.0.2", "NodeID": "b" * 56, "Alive": True},
             {"NodeName": "10.0.0.2", "NodeID": "c" * 56, "Alive": True},
             {"NodeName": "10.0.0.3", "NodeID": "d" * 56, "Alive": False}]
    assert cell_names(nodes) == {"10.0.0.1": "a" * 56, "b" * 12: "b" * 56, "c" * 12: "c" * 56}


def test_cells_reach_a_proxy_bound_on_every_interface_at_its_node_address():
    from streamer.ops.cluster.proxy import connect_address

    assert connect_address("tcp://0.0.0.0:5559", "10.1.2.3") == "tcp://10.1.2.3:5559"
    assert connect_address("tcp://*:5559", "10.1.2.3") == "tcp://10.1.2.3:5559"
    assert connect_address("tcp://127.0.0.1:5559", "10.1.2.3") == "tcp://127.0.0.1:5559"
    assert connect_address("tcp://head.example:5559", "10.1.2.3") == "tcp://head.example:5559"


def test_a_cells_worker_stats_are_named_for_the_cell_and_everything_else_passes_as_it_came():
    from streamer.ops.cluster.cell import named_for_cell

    lstm = wire.pack_published(wire.Stats(process="lstm", t=1.0, counters={"labels": 3.0}))
    capture = wire.pack_published(wire.Stats(process="capture:cam0", t=1.0, counters={"frames_sent": 5.0}))
    label = wire.pack_published(wire.Label(stream="cam0", seq=0, t_capture=1.0, t_publish=1.1, label="a", score=1.0,
                                           top_k=[("a", 1.0)], warming=True, frames_in_window=1, model_id="m",
                                           stages={}))
    renamed = named_for_cell([zmq.Frame(part) for part in lstm], "cell-1")  # as the forwarder receives them
    assert renamed[0] == b"stats/cell-1:lstm/"
    assert wire.unpack_published(renamed) == wire.Stats(process="cell-1:lstm", t=1.0, counters={"labels": 3.0})
    assert named_for_cell(capture, "cell-1") is capture and named_for_cell(label, "cell-1") is label
    broken = [b"stats/lstm/", b"not msgpack"]
    assert named_for_cell(broken, "cell-1") is broken
    assert named_for_cell(lstm, "x" * 70) is lstm  # a name past the wire's limit: as it came
