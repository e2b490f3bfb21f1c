"""The README stays true: its settings and exit-code tables are generated from the code, the
dashboard snippet works, and the commands of the blocks marked as run by the tests (those that
finish by themselves in under a minute) run as written."""

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

from configs import reference, settings
from configs.exit_codes import ExitCode
from configs.settings import Config
from streamer.transport import wire
from tests.conftest import endpoint_overrides, loopback_endpoints
from tests.support.pipeline import free_port

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
RUN_BY_TESTS = "<!-- the tests run every command of this block -->"


def test_the_settings_and_exit_code_tables_are_what_the_code_says():
    assert reference.rewrite(README) == README, "the README is stale: run python -m configs.reference --write README.md"


def test_each_setting_has_a_comment_of_its_own():
    """One comment per field: no two settings of a section share a meaning (a shared comment once
    described four different `sequence` settings as 'stride between windows')."""
    settings_file = Path(settings.__file__)
    for section in dataclasses.fields(Config):
        section_type = type(getattr(Config(), section.name))
        meanings = [reference.comment(settings_file, section_type.__name__, key.name)
                    for key in dataclasses.fields(section_type)]
        shared = {meaning for meaning in meanings if meanings.count(meaning) > 1}
        assert not shared, f"[{section.name}]: several settings share the comment {shared}"


def test_a_stale_readme_is_caught(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(README.replace("| `window_stride` | `4` | ", "| `window_stride` | `8` | "))
    assert reference.main(["--check", str(readme)]) == 1
    assert reference.main(["--write", str(readme)]) == 0
    assert readme.read_text() == README


def test_choices_are_listed_and_exit_codes_named():
    assert '| `backend` | `"auto"` | ' in README and '`"auto"`, `"torch"`, `"openvino"`' in README
    for code in ExitCode:
        assert f"| {code.value} | `{code.name}` |" in README


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
