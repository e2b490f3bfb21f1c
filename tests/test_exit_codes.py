"""Exit codes that tell the truth, and user errors as one message without a traceback.

- `up` exits non-zero when every source failed for good (real child processes, the real loop);
- a standalone worker whose port is taken names the real setting, with no traceback;
- a checkpoint with a key missing is a preflight message, not a traceback;
- stream names: Unicode names are taken, a name that breaks the rule is an error naming the rule.
"""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
import torch

from configs.settings import load_config
from models import bundle
from configs.exit_codes import ExitCode
from streamer.ops.supervisor import Child, parse_source, supervise
from streamer.transport import wire
from streamer.transport.sockets import StopFlag
from tests.support.pipeline import ROOT, RUN_PY
from tests.test_config_errors import CLASSES, refuse_in_process


def capture(name: str, code: int, tmp_path) -> Child:
    return Child(name, [sys.executable, "-c", f"import sys; sys.exit({code})"], tmp_path / f"{name}.log",
                 is_capture=True)


@pytest.mark.parametrize("codes, expected", [((2, 2), ExitCode.USER_ERROR), ((0, 2), 0), ((0, 0), 0)])
def test_up_fails_when_every_source_failed_for_good(tmp_path, codes, expected):
    config = load_config(None, ["endpoints.features=tcp://127.0.0.1:1"])
    children = [capture(f"capture:cam{i}", code, tmp_path) for i, code in enumerate(codes)]
    assert supervise(children, config, StopFlag(), seconds=60.0) == expected


def test_a_standalone_worker_on_a_taken_port_names_the_setting_without_a_traceback():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, str(RUN_PY), "lstm", "--set", f"endpoints.features=tcp://127.0.0.1:{port}",
                                 "--set", "lstm.bundle=absent.pt"], cwd=ROOT, capture_output=True, text=True,
                                timeout=300)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert f"cannot bind tcp://127.0.0.1:{port}" in result.stderr
    assert "--set endpoints.features=" in result.stderr and "endpoints.<name>" not in result.stderr


def test_a_checkpoint_missing_a_key_is_a_preflight_message(tmp_path):
    incomplete = tmp_path / "bundle.pt"
    torch.save({"format": bundle.FORMAT, "part": "bundle", "model_id": "m", "cnn": {"classes": CLASSES},
                "lstm": {"classes": CLASSES}}, incomplete)
    message = refuse_in_process(tmp_path, f"features.bundle={incomplete}", f"lstm.bundle={incomplete}")
    assert f"features.bundle: {incomplete} lacks 'feature_dim'" in message
    assert f"lstm.bundle: {incomplete} lacks 'hidden'" in message


def test_stream_names_in_any_script_are_taken_and_a_bad_one_names_the_rule():
    assert parse_source("κάμερα=synthetic:2", 0) == ("κάμερα", "synthetic:2")
    assert parse_source("rtsp://h/x?token=a=b", 3) == ("cam3", "rtsp://h/x?token=a=b")
    for bad in ("my cam=synthetic", "-x=synthetic", "a\n=synthetic"):
        with pytest.raises(wire.StreamNameError, match="not starting with '-'"):
            parse_source(bad, 0)
    for bad in ("cam\n", "-cam", "a/b", "", "x" * 65, "lstm/../"):
        assert not wire.is_stream_name(bad), bad
    assert wire.is_stream_name("カメラ_1:front.door-2")
