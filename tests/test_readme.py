"""The README stays true: every config key is documented, the dashboard snippet works, and the
commands of the blocks marked as run by the tests (those that finish by themselves in under a
minute) run as written."""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import zmq

from configs.settings import Config
from streamer.transport import wire
from tests.conftest import endpoint_overrides, free_port, loopback_endpoints

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
RUN_BY_TESTS = "<!-- the tests run every command of this block -->"


def test_every_config_key_is_documented():
    config = Config()
    for section in dataclasses.fields(config):
        assert f"**[{section.name}]**" in README, section.name
        for key in dataclasses.fields(getattr(config, section.name)):
            assert f"| `{key.name}` |" in README, f"{section.name}.{key.name} is not in the README"


def test_the_dashboard_snippet_prints_labels_of_its_stream_only(zmq_context):
    snippet = re.search(r"A dashboard in ten lines:\n\n```python\n(.*?)```", README, re.S).group(1)
    assert len(snippet.strip().splitlines()) <= 10
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    pub = zmq_context.socket(zmq.PUB)
    pub.bind(endpoint)
    process = subprocess.Popen([sys.executable, "-c", snippet.replace("tcp://127.0.0.1:5557", endpoint)],
                               stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)  # the subscriber starts and its subscription reaches us
        for seq in range(3):
            for stream in ("cam0", "cam01"):
                wire.publish(pub, wire.Label(stream=stream, seq=seq, t_capture=1.0, t_publish=1.0, label="FadeIn",
                                             score=0.75, top_k=[("FadeIn", 0.75)], warming=seq < 2,
                                             frames_in_window=seq + 1, model_id="m", stages={}))
        time.sleep(1.0)
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=10)
    lines = output.strip().splitlines()
    assert [line.split()[:3] for line in lines] == [["cam0", "0", "FadeIn"], ["cam0", "1", "FadeIn"],
                                                    ["cam0", "2", "FadeIn"]]
    assert "warming up" in lines[0] and "warming up" not in lines[2]


def test_the_readme_commands_marked_for_the_tests_run_as_written(tmp_path):
    """Each command of a marked block, from a fresh folder (no trained bundle there: random weights).
    `up` gets free ports added, because another pipeline on this machine may hold the defaults."""
    blocks = re.findall(re.escape(RUN_BY_TESTS) + r"\n```bash\n(.*?)```", README, re.S)
    commands = [shlex.split(line, comments=True) for block in blocks for line in block.splitlines() if line.strip()]
    assert len(commands) >= 2, "the README lost its blocks marked for the tests"
    for command in commands:
        assert command[:2] == ["python", "run.py"], command
        argv = [sys.executable, str(ROOT / "run.py"), *command[2:]]
        if command[2] == "up":
            argv += [item for override in endpoint_overrides(loopback_endpoints()) for item in ("--set", override)]
        done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=180,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert done.returncode == 0, f"{' '.join(command)} exited with {done.returncode}:\n{done.stdout}\n{done.stderr}"
        if command[2] == "up":  # (labels, and the ready line, may need longer than 20 s on a busy machine)
            assert "up stopped: " in done.stdout and "labels will be published on" in done.stderr, done.stdout
