"""A configuration that cannot work stops `run.py up` before anything starts, with one clear message.

Unknown keys, wrong types, unusable checkpoints (corrupt, weights that do not fit their class
list, an LSTM for another feature size, a preset the capture does not make), sources that cannot
work, missing CURVE keys and taken ports: exit code 2, the problem and what to do named, no
traceback, no child process started, no log folder written.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import zmq

from configs.settings import ConfigError, load_config
from models import bundle
from models.networks import FrameCNN, SequenceLSTM
from models.presets import Preset
from streamer.transport.sockets import bind_problem
from streamer.ops.supervisor import run_up
from tests.support.pipeline import RUN_PY, free_endpoints

CLASSES = [f"class{i}" for i in range(8)]


def up(tmp_path: Path, *sets: str, sources: tuple[str, ...] = ("synthetic",), config_file: Path | None = None):
    """`run.py up` that must refuse to start; returns (exit code, stderr, seconds it took)."""
    argv = [sys.executable, str(RUN_PY), "up", "--seconds", "30"]
    if config_file:
        argv += ["--config", str(config_file)]
    for source in sources:
        argv += ["--source", source]
    endpoints = [f"endpoints.{name}={value}" for name, value in free_endpoints().items()]
    for item in endpoints + [f"supervisor.log_dir={tmp_path / 'logs'}", *sets]:
        argv += ["--set", item]
    started = time.monotonic()
    result = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    return result.returncode, result.stderr, time.monotonic() - started


def assert_refused(tmp_path: Path, code: int, stderr: str, *expected: str) -> None:
    assert code == 2, stderr
    assert "Traceback" not in stderr, stderr
    for text in expected:
        assert text in stderr, f"{text!r} not in:\n{stderr}"
    assert not (tmp_path / "logs").exists(), "something was started or written before the config was checked"


@pytest.mark.parametrize("sets, expected", [
    (["capture.fpz=3"], ["unknown key capture.fpz", "known keys in [capture]: fps"]),
    (["capture.fps=fast"], ["capture.fps must be float, got str 'fast'"]),
    (["capturing.fps=3"], ["unknown section [capturing]"]),
    (["features.backend=typo"], ['features.backend must be one of "auto", "torch", "openvino"', "got 'typo'"]),
    (["features.device=gpu"], ['features.device must be one of "auto", "cpu", "cuda"', "got 'gpu'"]),
    (["features.precision=bf16"], ['features.precision must be one of "auto", "fp32", "reduced"']),
    (["cnn.weights=imagenet1k"], ['cnn.weights must be one of "imagenet", "none"']),
])
def test_unknown_keys_and_wrong_types_stop_up_at_once(tmp_path, sets, expected):
    code, stderr, seconds = up(tmp_path, *sets)
    assert_refused(tmp_path, code, stderr, *expected)
    assert seconds < 20


def test_a_choice_outside_its_values_in_a_config_file_names_the_file_and_the_values(tmp_path):
    config = tmp_path / "site.toml"
    config.write_text('[sequence]\ninputs = "diffs"\n')
    code, stderr, _ = up(tmp_path, config_file=config)
    assert_refused(tmp_path, code, stderr, f"run.py up: error: {config}: sequence.inputs must be one of "
                   '"features", "differences"; got \'diffs\'')


def test_a_bad_value_in_a_config_file_names_the_file(tmp_path):
    config = tmp_path / "site.toml"
    config.write_text("[capture]\nfps = 10\nloop = \"yes\"\n")
    code, stderr, _ = up(tmp_path, config_file=config)
    assert_refused(tmp_path, code, stderr, str(config), "capture.loop must be bool")


def test_sources_that_cannot_work_are_all_named_before_anything_starts(tmp_path):
    corrupt = tmp_path / "corrupt.avi"
    corrupt.write_bytes(b"RIFF" + bytes(range(256)) * 40)
    code, stderr, _ = up(tmp_path, sources=("door=missing/clip.mp4", "yard=ftp://camera/stream", f"hall={corrupt}",
                                            "synthetic"))
    assert_refused(tmp_path, code, stderr, "nothing started, because:",
                   "source door: 'missing/clip.mp4': no such file or folder",
                   "source yard: 'ftp://camera/stream': unsupported scheme 'ftp'",
                   f"source hall: {corrupt}: OpenCV cannot open this file")


# ------------------------------------------------------------------------------------ checkpoints


def cnn_checkpoint(path: Path, classes: list[str], preset: Preset = Preset(resize=72, crop=64)) -> Path:
    torch.manual_seed(0)
    bundle.save_cnn(path, FrameCNN(num_classes=8), classes, preset, metrics={})
    return path


def lstm_checkpoint(path: Path, input_size: int = 512) -> Path:
    torch.manual_seed(0)
    bundle.save_lstm(path, SequenceLSTM(num_classes=8, hidden=8, layers=1, input_size=input_size), CLASSES, 8, {})
    return path


SMALL = ["capture.crop=64", "capture.resize=72"]


def refuse_in_process(tmp_path: Path, *sets: str) -> str:
    """run_up itself (what `run.py up` calls) must raise before starting anything."""
    config = load_config(None, [f"supervisor.log_dir={tmp_path / 'logs'}", *SMALL,
                                *[f"endpoints.{k}={v}" for k, v in free_endpoints().items()], *sets])
    with pytest.raises(ConfigError) as error:
        run_up(config, ["synthetic"], seconds=1)
    assert not (tmp_path / "logs").exists()
    return str(error.value)


def test_a_corrupt_checkpoint_stops_up_with_one_message(tmp_path):
    corrupt = tmp_path / "bundle.pt"
    corrupt.write_bytes(b"\x80\x02not a checkpoint" * 100)
    code, stderr, _ = up(tmp_path, f"features.bundle={corrupt}", f"lstm.bundle={corrupt}", *SMALL)
    assert_refused(tmp_path, code, stderr, f"features.bundle: checkpoint {corrupt} cannot be read",
                   f"lstm.bundle: checkpoint {corrupt} cannot be read", "it may be truncated")


def test_weights_that_do_not_fit_their_class_list_are_refused(tmp_path):
    wrong = cnn_checkpoint(tmp_path / "cnn.pt", CLASSES[:5])  # 8 outputs saved beside 5 class names
    message = refuse_in_process(tmp_path, f"features.bundle={wrong}")
    assert f"features.bundle: {wrong}: weights do not fit the model described beside them" in message


def test_an_lstm_for_another_feature_size_is_refused(tmp_path):
    lstm = lstm_checkpoint(tmp_path / "lstm.pt", input_size=256)
    message = refuse_in_process(tmp_path, f"lstm.bundle={lstm}")
    assert "takes 256-d features" in message and "makes 512-d" in message and "train-lstm" in message


def test_a_checkpoint_trained_on_another_preset_is_refused(tmp_path):
    cnn = cnn_checkpoint(tmp_path / "cnn.pt", CLASSES, Preset(resize=256, crop=224))
    message = refuse_in_process(tmp_path, f"features.bundle={cnn}")
    assert "set capture.crop=224 capture.resize=256" in message


def test_matching_checkpoints_pass_the_check(tmp_path):
    """The same checks pass a bundle that fits, so the refusals above are about the faults."""
    from streamer.ops.supervisor import check_bundles

    good = tmp_path / "bundle.pt"
    bundle.save_bundle(good, cnn_checkpoint(tmp_path / "cnn.pt", CLASSES), lstm_checkpoint(tmp_path / "lstm.pt"))
    config = load_config(None, [*SMALL, f"features.bundle={good}", f"lstm.bundle={good}"])
    assert check_bundles(config) == []


# ---------------------------------------------------------------------------- keys and ports


def test_curve_without_keys_says_how_to_make_them(tmp_path):
    message = refuse_in_process(tmp_path, "security.curve=true", f"security.keys_dir={tmp_path / 'nokeys'}")
    assert "server.key_secret does not exist" in message and "python run.py keys" in message


def test_a_port_already_taken_is_named(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        message = refuse_in_process(tmp_path, f"endpoints.labels=tcp://127.0.0.1:{port}")
    assert f"endpoints.labels: cannot bind tcp://127.0.0.1:{port}" in message
    assert "--set endpoints.labels=" in message



def test_a_port_held_by_a_running_publisher_is_named():
    context = zmq.Context()
    publisher = context.socket(zmq.PUB)
    try:
        port = publisher.bind_to_random_port("tcp://127.0.0.1")
        assert "in use" in bind_problem(f"tcp://127.0.0.1:{port}")
    finally:
        publisher.close(linger=0)
        context.term()
    assert bind_problem(f"tcp://127.0.0.1:{port}") is None  # and free again once it is gone


def test_the_port_check_never_accepts_a_connection():
    """A dashboard that connects before `up` starts must never meet the port check: ZeroMQ gives up
    for good on a connection whose handshake met the wrong kind of socket, so it would stay deaf."""
    endpoint = free_endpoints()["labels"]
    port = int(endpoint.rsplit(":", 1)[1])
    accepted = 0
    probing = True

    def knock() -> None:
        nonlocal accepted
        while probing:
            with socket.socket() as client:
                accepted += client.connect_ex(("127.0.0.1", port)) == 0

    knocker = threading.Thread(target=knock)
    knocker.start()
    try:
        for _ in range(300):
            assert bind_problem(endpoint) is None
    finally:
        probing = False
        knocker.join()
    assert accepted == 0, f"{accepted} connections reached the port check"


def test_an_ipc_path_in_use_is_named_and_left_to_its_owner(tmp_path):
    endpoint = f"ipc://{tmp_path / 'labels.sock'}"
    context = zmq.Context()
    publisher, subscriber = context.socket(zmq.PUB), context.socket(zmq.SUB)
    try:
        publisher.bind(endpoint)
        assert bind_problem(endpoint) == "a process is listening on this path"
        subscriber.setsockopt(zmq.SUBSCRIBE, b"")
        subscriber.connect(endpoint)  # the path still reaches the publisher after the check
        deadline = time.monotonic() + 10
        while not subscriber.poll(50) and time.monotonic() < deadline:
            publisher.send(b"still mine")
        assert subscriber.recv(zmq.NOBLOCK) == b"still mine"
    finally:
        publisher.close(linger=0)
        subscriber.close(linger=0)
        context.term()
    assert bind_problem(endpoint) is None  # a stale socket file left behind does not count
