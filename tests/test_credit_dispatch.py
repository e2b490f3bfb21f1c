"""Credit dispatch between captures and feature workers, with real processes and sockets.

- Two feature workers, one slowed ten times (`features.slowdown`), three synthetic cameras: the
  fast worker takes most frames (its credits come back sooner and the cameras leave the slow
  one's unused), and every frame sent is accounted for.
- `kill -9` of one of two feature workers while cameras stream (its restart held back): labels of
  frames captured after the kill keep coming on every stream, and each capture counts the worker
  as gone once its lease ran out, so no credit of it strands a frame.
- `kill -9` of the only feature worker in the middle of a file: `up` restarts it, the capture sends
  the frames the dead worker never acknowledged again, and every frame gets exactly one label.
- A camera waiting for a credit that does not come sleeps in its poll, with no busy loop.
- A camera's socket holds every frame its credits allow, with its stats beside them, while the
  worker is too busy to read: none is refused (and dropped, its credits voided).
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import zmq

from configs.settings import load_config
from streamer.capture.dispatch import CAMERA_CREDITS, CreditLink
from streamer.transport import wire
from workers.feature_worker import bind_frames_socket
from tests.support.clips import write_opencv
from tests.support.pipeline import (FAST, Listener, Pipeline, free_port, free_ports, is_label, is_stats, run_py,
                                    stop_process)

CAMERAS = 3


def _counters(features_in: zmq.Socket, seconds: float) -> dict[str, dict[str, float]]:
    """The newest stats of every process that reached the features socket within `seconds`."""
    stats: dict[str, dict[str, float]] = {}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if features_in.poll(200):
            message = wire.unpack(features_in.recv_multipart())
            if isinstance(message, wire.Stats):
                stats[message.process] = message.counters
    return stats


def test_the_fast_worker_takes_most_frames_from_a_slow_one(tmp_path, zmq_context):
    fast, slow, features = (f"tcp://127.0.0.1:{port}" for port in free_ports(3))
    features_in = zmq_context.socket(zmq.PULL)  # stands in for the LSTM worker
    features_in.bind(features)
    common = FAST + [f"endpoints.features={features}", "capture.fps=30"]
    processes = [run_py(["features", "--name", "fast"], common + [f"endpoints.frames={fast}"],
                        tmp_path / "fast.log"),
                 run_py(["features", "--name", "slow"], common + [f"endpoints.frames={slow}",
                                                                 "features.slowdown=10"], tmp_path / "slow.log")]
    try:
        for index in range(CAMERAS):
            processes.append(run_py(["capture", "--source", f"synthetic:{index}", "--stream", f"cam{index}"],
                                    common + [f"endpoints.frames={fast},{slow}"],
                                    tmp_path / f"capture{index}.log"))
        stats: dict[str, dict[str, float]] = {}
        deadline = time.monotonic() + 120
        while stats.get("features:fast", {}).get("frames", 0) < 300:
            assert time.monotonic() < deadline, f"too few frames processed: {stats}"
            stats.update(_counters(features_in, 1.0))
        stats.update(_counters(features_in, 2.0))
    finally:
        for process in processes:
            stop_process(process)
        features_in.close(linger=0)
    fast_frames, slow_frames = stats["features:fast"]["frames"], stats["features:slow"].get("frames", 0)
    assert fast_frames >= 4 * slow_frames, stats
    assert stats["features:fast"]["credits_granted"] > 0 and stats["features:slow"]["credits_granted"] > 0, stats
    for index in range(CAMERAS):
        capture = stats[f"capture:cam{index}"]
        assert capture["frames_sent"] > 0 and capture["credits_received"] > 0, capture
    print(f"\nframes: fast worker {fast_frames:.0f}, slow (10x) worker {slow_frames:.0f}")


def test_a_killed_worker_strands_no_frame_labels_keep_coming_from_the_other(tmp_path):
    # The killed worker stays down for the whole test: labels can only come through the other one.
    sets = ["supervisor.feature_workers=2", "supervisor.restart_delay_s=120", "supervisor.restart_max_delay_s=120",
            "capture.fps=15"]
    streams = [f"cam{index}" for index in range(CAMERAS)]
    with Pipeline(tmp_path, [f"{s}=synthetic:{i}" for i, s in enumerate(streams)], sets) as pipeline, \
            Listener(pipeline.endpoints["labels"]) as listener:
        for stream in streams:
            listener.wait_for(is_label(stream), 120, f"a label of {stream}", since=0, pipeline=pipeline)
        killed_at = time.time()
        os.kill(pipeline.pid("features:0"), signal.SIGKILL)
        after = time.monotonic()
        for stream in streams:
            listener.wait_for(lambda m, s=stream: is_label(s)(m) and m.t_capture > killed_at + 1, 60,
                              f"a label of {stream} captured after the kill", since=after, pipeline=pipeline)
            # Gone once silent for 5 leases (features.credit_lease_s = 1 s): the captures stop counting on it.
            listener.wait_for(is_stats(f"capture:{stream}", lambda c: c.get("workers_lost", 0) >= 1), 60,
                              f"capture:{stream} counting the killed worker as gone", since=after, pipeline=pipeline)
        late = time.monotonic()
        for stream in streams:  # and labels still come, well after the killed worker's credits expired
            listener.wait_for(is_label(stream), 30, f"a label of {stream} after the lease", since=late,
                              pipeline=pipeline)
        assert "features:0 died (killed by SIGKILL)" in pipeline.log()


def test_a_file_loses_no_frame_when_its_worker_is_killed(tmp_path):
    frames = 900
    clip = write_opencv(tmp_path / "long.avi", "MJPG", 160, 120, 15, frames)
    with Pipeline(tmp_path / "up", [f"long={clip}"], ["capture.fps=15"]) as pipeline, \
            Listener(pipeline.endpoints["labels"], topics=(b"label/", b"event/", b"stats/")) as listener:
        listener.wait_for(is_label("long"), 120, "a label of the file", since=0, pipeline=pipeline)
        os.kill(pipeline.pid("features:0"), signal.SIGKILL)
        pipeline.listen_until_it_stops(listener)
    seqs = [item.message.seq for item in listener.labels("long")]
    assert "features:0 died (killed by SIGKILL)" in pipeline.log()
    assert seqs == list(range(frames)), f"{len(seqs)} labels for {frames} frames\n{pipeline.log_tails()}"
    capture = listener.stats["capture:long"]
    assert capture["frames_resent"] > 0 and capture["workers_lost"] >= 1, capture  # the kill came mid-file
    print(f"\nfile of {frames} frames, worker killed mid-file: every frame labelled once; "
          f"{capture.get('frames_resent', 0):.0f} frames sent again")


def test_a_camera_waiting_for_credit_sleeps_instead_of_polling_in_a_loop(zmq_context):
    """pyzmq truncates a float poll timeout to whole milliseconds, so a wait that rounded down
    would end each `ready()` in a busy loop of poll(0) (16 cameras spent ~25% of a core on it)."""
    worker = zmq_context.socket(zmq.ROUTER)  # a worker that hears the hellos and grants nothing
    port = worker.bind_to_random_port("tcp://127.0.0.1")
    link = CreditLink(zmq_context, [f"tcp://127.0.0.1:{port}"], load_config(None, []), "cam", keep=False, pinned=None)
    timeouts: list[int] = []
    poll = link.poller.poll
    link.poller.poll = lambda timeout: timeouts.append(timeout) or poll(timeout)
    try:
        for _ in range(20):
            assert not link.ready(7.9)  # no credit comes
    finally:
        link.close(0)
        worker.close(0)
    assert timeouts and 0 not in timeouts, f"polls with no wait while waiting for credit: {timeouts}"
    assert len(timeouts) <= 2 * 20, f"{len(timeouts)} polls for 20 waits"


def test_a_busy_worker_is_sent_every_frame_its_credits_allow_with_no_refusal(zmq_context):
    """The worker's frames socket as it is made (one message per capture queued, 64 KiB kernel
    buffers) and a worker busy with a batch, reading nothing: lecture-size frames (150 KB) against
    the camera's credits, and its stats, all find room in the camera's socket. At the old
    capture.send_hwm of 2 the stats were refused here; in the bench, now and then a frame, whose
    credits the camera then voided."""
    config = load_config(None, [f"endpoints.frames=tcp://127.0.0.1:{free_port()}"])
    worker = bind_frames_socket(zmq_context, config)
    link = CreditLink(zmq_context, [config.endpoints.frames], config, "cam", keep=False, pinned=None)
    try:
        assert not link.ready(200)  # says hello; no credit yet
        assert worker.poll(5000), "no hello from the camera"
        identity, *parts = worker.recv_multipart()
        assert isinstance(wire.unpack(parts), wire.Hello)
        worker.send_multipart([identity, *wire.pack(wire.Credit(worker=7, grant=CAMERA_CREDITS, lease_ms=5000,
                                                                eta_ms=40.0))])
        image = np.zeros((224, 224, 3), np.uint8)
        for seq in range(CAMERA_CREDITS):
            assert link.ready(2000), f"no credit for frame {seq}"
            assert link.send_frame(wire.Frame(stream="cam", seq=seq, t_capture=time.time(), image=image,
                                              session=1)), f"frame {seq} refused by the camera's own socket"
        assert link.send_control(wire.Stats(process="capture:cam", t=time.time(), counters={"frames_read": 2.0}))
        time.sleep(0.5)  # the busy worker reads nothing meanwhile; then it takes everything
        kinds = []
        while worker.poll(1000):
            kinds.append(type(wire.unpack(worker.recv_multipart()[1:])).__name__)
        assert kinds.count("Frame") == CAMERA_CREDITS and "Stats" in kinds, kinds
        assert link.counters()["credits_held"] == 0
    finally:
        link.close(0)
        worker.close(0)
