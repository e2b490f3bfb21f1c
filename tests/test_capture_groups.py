"""Several live cameras in one capture process (`capture.cameras_per_process`): how `up` groups its
sources, and what a group does when one of its cameras fails or asks for a fresh process.

A group's restart after `kill -9` is tested with the whole pipeline in tests/test_faults.py.
"""

from __future__ import annotations

import threading
import time

import pytest

from configs.exit_codes import ExitCode
from configs.settings import ConfigError, load_config
from streamer.capture import process as capture_process
from streamer.capture.sources import SOURCE_VARIABLE
from streamer.ops.supervisor import plan
from streamer.transport import wire
from streamer.transport.sockets import StopFlag
from tests.support.camera import write_clip
from tests.support.credit_worker import CreditingFrames
from tests.support.pipeline import free_port, run_py, stop_process


def test_live_sources_share_a_process_in_order_and_a_file_keeps_its_own(tmp_path):
    folder = tmp_path / "clip"
    write_clip(folder, frames=2)
    config = load_config(None, ["capture.cameras_per_process=2"])
    sources = ["synthetic", "door=rtsp://127.0.0.1:1/x", str(folder), "synthetic", "synthetic"]
    captures = [child for child in plan(config, sources, tmp_path / "up-config.toml") if child.is_capture]
    assert [child.streams for child in captures] == [["cam0", "door"], ["cam2"], ["cam3", "cam4"]]
    assert [child.name for child in captures] == ["capture:cam0+door", "capture:cam2", "capture:cam3+cam4"]
    first = captures[0]
    # the sources by environment, one a line, in the order of the --stream arguments
    assert first.env == {SOURCE_VARIABLE: "synthetic:0\nrtsp://127.0.0.1:1/x"}
    assert [arg for arg in first.argv if arg.startswith("--stream")] == ["--stream=cam0", "--stream=door"]
    assert first.log_path.name == "capture-cam0+door.log"

    alone = plan(load_config(None, ["capture.cameras_per_process=1"]), sources[:2], tmp_path / "up-config.toml")
    assert [child.streams for child in alone if child.is_capture] == [["cam0"], ["door"]]


def test_a_group_of_long_stream_names_gets_a_log_file_name_that_fits(tmp_path):
    names = [f"{index}" + "x" * 63 for index in range(8)]  # 64 characters each, the longest allowed
    capture = next(child for child in plan(load_config(), [f"{name}=synthetic" for name in names],
                                           tmp_path / "up-config.toml") if child.is_capture)
    assert capture.streams == names
    assert capture.log_path.name == f"capture-{names[0]}+7-more.log"
    (tmp_path / capture.log_path.name).write_text("")  # the file system takes the name


def test_a_group_size_below_one_is_named_with_what_to_set(tmp_path):
    with pytest.raises(ConfigError, match=r"capture.cameras_per_process is 0; it must be at least 1"):
        plan(load_config(None, ["capture.cameras_per_process=0"]), ["synthetic"], tmp_path / "up-config.toml")


def _frames_by_stream(frames_in: CreditingFrames, until: float) -> tuple[dict[str, int], list[wire.StreamEnd]]:
    counts: dict[str, int] = {}
    ends = []
    while time.monotonic() < until:
        message = frames_in.recv(200)
        if isinstance(message, wire.Frame):
            counts[message.stream] = counts.get(message.stream, 0) + 1
        elif isinstance(message, wire.StreamEnd):
            ends.append(message)
    return counts, ends


def test_a_camera_failing_for_good_ends_alone_and_the_others_keep_sending(tmp_path, zmq_context):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    frames_in = CreditingFrames(zmq_context, endpoint)
    capture = run_py(["capture", "--stream=good", "--source", "synthetic", "--stream=bad", "--source", "synthetic:x"],
                     [f"endpoints.frames={endpoint}", "capture.resize=72", "capture.crop=64", "capture.fps=20",
                      "features.bundle=absent.pt"], tmp_path / "capture.log")
    try:
        started, _ = _frames_by_stream(frames_in, time.monotonic() + 20)
        assert started.get("good", 0) >= 5, (started, (tmp_path / "capture.log").read_text())
        assert "synthetic camera takes an integer seed" in (tmp_path / "capture.log").read_text()
        later, _ = _frames_by_stream(frames_in, time.monotonic() + 2)
        assert capture.poll() is None and later.get("good", 0) >= 10 and "bad" not in later
        code = stop_process(capture)
        _, ends = _frames_by_stream(frames_in, time.monotonic() + 2)
    finally:
        stop_process(capture)
        frames_in.close()
    assert code == ExitCode.OK
    assert [(end.stream, end.reason) for end in ends] == [("good", "stopped")]


def test_a_group_whose_every_camera_failed_for_good_exits_with_the_user_error_code(tmp_path):
    capture = run_py(["capture", "--stream=a", "--source", "synthetic:x", "--stream=b", "--source", "webcam:y"],
                     ["capture.resize=72", "capture.crop=64", "features.bundle=absent.pt"], tmp_path / "capture.log")
    assert capture.wait(60) == ExitCode.USER_ERROR
    log = (tmp_path / "capture.log").read_text()
    assert "integer seed" in log and "webcam is given by index" in log


def test_sources_and_stream_names_that_do_not_pair_up_are_named(tmp_path):
    capture = run_py(["capture", "--stream=a", "--stream=b", "--source", "synthetic"], [], tmp_path / "capture.log")
    assert capture.wait(60) == ExitCode.USER_ERROR
    assert "1 source(s) for 2 stream name(s)" in (tmp_path / "capture.log").read_text()


def test_a_camera_asking_for_a_fresh_process_stops_its_group(monkeypatch):
    # Unit test: the cameras are stand-ins; what is tested is how the group reacts to their exit codes.
    stopped: dict[str, float] = {}

    def camera(spec, stream, config, stop, context):
        if stream == "stuck":
            time.sleep(0.3)
            return ExitCode.RESTART_ME
        stop.wait(30)
        stopped[stream] = time.monotonic()
        return ExitCode.OK

    monkeypatch.setattr(capture_process, "run_capture", camera)
    started = time.monotonic()
    code = capture_process.run_cameras([("stuck", "synthetic"), ("fine", "synthetic")], load_config(),
                                       StopFlag(signals=False))
    assert code == ExitCode.RESTART_ME
    assert stopped["fine"] - started < 5  # stopped because of its neighbour, not after its own 30 s


def test_a_crashing_camera_is_logged_and_restarts_its_group(monkeypatch, caplog):
    def camera(spec, stream, config, stop, context):
        if stream == "broken":
            raise RuntimeError("a bug")
        stop.wait(30)
        return ExitCode.OK

    monkeypatch.setattr(capture_process, "run_capture", camera)
    outcome: list[int] = []
    thread = threading.Thread(target=lambda: outcome.append(capture_process.run_cameras(
        [("broken", "synthetic"), ("fine", "synthetic")], load_config(), StopFlag(signals=False))))
    thread.start()
    thread.join(10)
    assert outcome == [ExitCode.RESTART_ME]
    assert "the capture of broken failed" in caplog.text and "a bug" in caplog.text
