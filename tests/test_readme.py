"""The README stays true: every config key is documented, and the dashboard snippet works."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import time
from pathlib import Path

import zmq

from configs.settings import Config
from streamer.transport import wire
from tests.conftest import free_port

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


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
