"""Video files are not cameras: every sampled frame is labelled once, the end follows the last label,
and `run.py up` with only files stops by itself. Real files in the formats people bring (written by
tests/support/clips.py), real processes, real sockets.
"""

from __future__ import annotations

import re
import time

import pytest

from streamer.transport import wire
from tests.support.credit_worker import CreditingFrames, PushedFrames
from tests.support.clips import Clip, decodable_frames, format_clips, write_opencv
from tests.support.pipeline import Listener, Pipeline, free_port, run_py, stop_process

CAPTURE_FPS = 15  # at or above every format clip's own rate: each of their frames is sampled
STRIDED_FPS, STRIDED_FRAMES = 25, 50  # a 25 fps clip sampled at 15: about 30 of its 50 frames


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Clip]:
    folder = tmp_path_factory.mktemp("clips")
    strided = write_opencv(folder / "strided.avi", "MJPG", 320, 240, STRIDED_FPS, STRIDED_FRAMES)
    return format_clips(folder) + [Clip("strided", strided, STRIDED_FPS)]


@pytest.fixture(scope="module")
def up_run(clips, tmp_path_factory):
    """One `run.py up` over every clip at once, listened to from before it starts until it stops itself."""
    folder = tmp_path_factory.mktemp("up")
    sources = [f"{clip.name}={clip.path}" for clip in clips]
    with Pipeline(folder, sources, sets=[f"capture.fps={CAPTURE_FPS}"]) as pipeline, \
            Listener(pipeline.endpoints["labels"], topics=(b"label/", b"event/", b"activity/")) as listener:
        pipeline.listen_until_it_stops(listener)
        yield pipeline, listener


def _expected_frames(clip: Clip) -> int:
    return decodable_frames(clip.path)


@pytest.mark.parametrize("name", ["xvid_audio", "mjpg", "h264", "mkv", "full_hd", "one_second", "corrupt_tail"])
def test_up_labels_every_frame_of_a_file_exactly_once(up_run, clips, name):
    pipeline, listener = up_run
    clip = next(c for c in clips if c.name == name)
    seqs = [item.message.seq for item in listener.labels(name)]
    expected = _expected_frames(clip)
    assert expected > 0
    assert seqs == list(range(expected)), f"{name}: {len(seqs)} labels for {expected} frames\n{pipeline.log_tails()}"


def test_a_faster_file_is_sampled_at_the_capture_rate_without_gaps(up_run):
    pipeline, listener = up_run
    seqs = [item.message.seq for item in listener.labels("strided")]
    assert abs(len(seqs) - STRIDED_FRAMES * CAPTURE_FPS / STRIDED_FPS) <= 1, len(seqs)
    assert seqs == list(range(len(seqs)))


def test_the_corrupt_tail_clip_really_has_a_corrupt_tail(clips):
    clip = next(c for c in clips if c.name == "corrupt_tail")
    assert 0 < decodable_frames(clip.path) < 30


def test_source_ended_follows_the_last_label_of_each_file(up_run, clips):
    pipeline, listener = up_run
    history = [item.message for item in listener.history]
    for clip in clips:
        ends = [i for i, m in enumerate(history) if isinstance(m, wire.StreamEnd) and m.stream == clip.name]
        labels = [i for i, m in enumerate(history) if isinstance(m, wire.Label) and m.stream == clip.name]
        assert [history[i].reason for i in ends] == ["source ended"], clip.name
        assert labels and ends[0] > labels[-1], f"{clip.name}: the end came before its last label"


def test_up_with_only_files_stops_after_the_last_label(up_run):
    pipeline, _ = up_run
    assert pipeline.process.returncode == 0, pipeline.log_tails()
    log = pipeline.log()
    ready = log.index("pipeline ready")
    assert all(log.index(f"started capture:{name}") > ready for name in ("mjpg", "h264")), log
    assert "every source has ended and its last label is out; stopping" in log, log
    for name in ("xvid_audio", "full_hd", "corrupt_tail"):
        done = re.search(r"(\d+) read, (\d+) sent, (\d+) dropped", pipeline.log(f"capture-{name}.log"))
        assert done is not None and done.group(3) == "0" and done.group(1) == done.group(2), done


def _capture_into(tmp_path, zmq_context, clip_path, sets, read_after_s: float, read_interval_s: float):
    """A real capture process sending a file to a stand-in worker that grants credit as slowly as it reads;
    every message it got."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    push = "capture.dispatch=push" in sets
    frames_in = (PushedFrames if push else CreditingFrames)(zmq_context, endpoint)
    log_path = tmp_path / "capture.log"
    capture = run_py(["capture", "--source", str(clip_path), "--stream", "file"],
                     [f"endpoints.frames={endpoint}", "capture.resize=72", "capture.crop=64",
                      "features.bundle=absent.pt"] + sets, log_path)
    messages = []
    try:
        time.sleep(read_after_s)  # a pipeline still loading its model
        deadline = time.monotonic() + 60
        while not (messages and isinstance(messages[-1], wire.StreamEnd)):
            assert time.monotonic() < deadline, log_path.read_text()
            message = frames_in.recv(1000)
            if message is not None:
                messages.append(message)
                time.sleep(read_interval_s)
        capture.wait(20)
    finally:
        stop_process(capture)
        frames_in.close()
    return messages, log_path.read_text()


@pytest.mark.parametrize("dispatch", ["credit", "push"])
def test_a_file_waits_for_a_slow_pipeline_and_loses_no_frame(tmp_path, zmq_context, dispatch):
    clip = write_opencv(tmp_path / "clip.avi", "MJPG", 160, 120, 15, 30)
    messages, log = _capture_into(tmp_path, zmq_context, clip, ["capture.fps=15", f"capture.dispatch={dispatch}"],
                                  read_after_s=3.0, read_interval_s=0.05)
    seqs = [m.seq for m in messages if isinstance(m, wire.Frame)]
    assert seqs == list(range(30)), log
    assert messages[-1].reason == "source ended"
    assert "30 read, 30 sent, 0 dropped" in log


def test_files_as_live_replays_a_file_as_a_camera_that_drops_stale_frames(tmp_path, zmq_context):
    clip = write_opencv(tmp_path / "clip.avi", "MJPG", 160, 120, 30, 60)
    messages, log = _capture_into(tmp_path, zmq_context, clip, ["capture.fps=30", "capture.files_as_live=true"],
                                  read_after_s=1.5, read_interval_s=0.0)
    frames = [m for m in messages if isinstance(m, wire.Frame)]
    dropped = int(re.search(r"(\d+) dropped", log).group(1))
    assert dropped > 0 and len(frames) + dropped == 60, log
    assert [f.seq for f in frames] == list(range(len(frames)))


def test_with_two_feature_workers_every_frame_of_each_file_is_still_labelled(clips, tmp_path):
    chosen = [c for c in clips if c.name in ("h264", "one_second", "full_hd", "corrupt_tail")]
    with Pipeline(tmp_path, [f"{c.name}={c.path}" for c in chosen],
                  sets=[f"capture.fps={CAPTURE_FPS}", "supervisor.feature_workers=2"]) as pipeline, \
            Listener(pipeline.endpoints["labels"], topics=(b"label/", b"event/")) as listener:
        pipeline.listen_until_it_stops(listener)
    for clip in chosen:
        seqs = [item.message.seq for item in listener.labels(clip.name)]
        assert seqs == list(range(_expected_frames(clip))), f"{clip.name}\n{pipeline.log_tails()}"


def test_a_file_goes_to_one_feature_worker_and_a_camera_to_all(tmp_path):
    from configs.settings import load_config
    from streamer.capture.process import frames_endpoints

    clip = write_opencv(tmp_path / "clip.avi", "MJPG", 64, 48, 15, 3)
    workers = "tcp://127.0.0.1:7001,tcp://127.0.0.1:7002,tcp://127.0.0.1:7003"
    config = load_config(None, [f'endpoints.frames="{workers}"'])
    chosen = {frames_endpoints(str(clip), f"file{i}", config)[0] for i in range(12)}
    assert all(len(frames_endpoints(str(clip), f"file{i}", config)) == 1 for i in range(12))
    assert len(chosen) > 1  # several files spread over the workers
    assert frames_endpoints("synthetic", "cam0", config) == workers.split(",")
    live = load_config(None, [f'endpoints.frames="{workers}"', "capture.files_as_live=true"])
    assert frames_endpoints(str(clip), "file0", live) == workers.split(",")
