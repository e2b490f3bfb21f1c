"""Secrets never leave the process that needs them.

A live pipeline runs a synthetic camera and a camera whose URL holds a password and a token,
`rtsp://user:p@ss@127.0.0.1:1/x?token=s3cret` (nothing listens on port 1, so the capture keeps
diagnosing and retrying: the path that used to log the raw URL). The URL is handed to `up` in a
0600 file (`--source @FILE`) and by `up` to the capture in its environment. Neither secret may
appear in any process's command line (`ps`), in any log, or in any message on any topic; the log
files are 0600.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from configs.settings import load_config
from streamer.capture import process as capture_process
from streamer.capture.sources import SOURCE_VARIABLE, _redact
from streamer.ops.supervisor import plan
from tests.support.pipeline import Listener, Pipeline, is_label, is_stats

URL = "rtsp://user:p@ss@127.0.0.1:1/x?token=s3cret"
SECRETS = ("p@ss", "s3cret", "user:")


def leaked(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


def test_redaction_keeps_only_scheme_host_port_and_path():
    assert _redact(URL) == "rtsp://127.0.0.1:1/x"
    assert _redact("rtsp://[::1]:8554/a/b?x=1#y") == "rtsp://[::1]:8554/a/b"
    assert _redact("http://cam.local/stream") == "http://cam.local/stream"
    assert not leaked(_redact("rtsp://user:p@ss@bad:port/x?token=s3cret"))


def test_up_hands_a_capture_its_source_by_environment_not_argv(tmp_path):
    children = plan(load_config(), [f"door={URL}"], tmp_path / "up-config.toml")
    capture = next(child for child in children if child.is_capture)
    assert capture.env == {SOURCE_VARIABLE: URL}
    assert not any(leaked(" ".join(child.argv)) for child in children)
    assert "--stream=door" in capture.argv


def test_an_unexpected_driver_error_is_logged_without_the_secrets(caplog):
    with caplog.at_level(logging.ERROR, logger="capture"):
        error = capture_process._as_source_error(RuntimeError(f"driver failed on {URL} (token=s3cret)"), URL)
    assert not leaked(caplog.text) and not leaked(str(error))
    assert "rtsp://127.0.0.1:1/x" in caplog.text and "RuntimeError" in caplog.text


def all_command_lines() -> str:
    lines = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                lines.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                continue  # gone meanwhile
    return "\n".join(lines)


def test_neither_secret_appears_in_ps_logs_or_topics(tmp_path):
    sources = tmp_path / "sources.txt"
    sources.write_text(f"real=synthetic\nlocked={URL}\n")
    sources.chmod(0o600)
    with Pipeline(tmp_path / "run", [f"@{sources}"], ["capture.retry_initial_s=0.2", "capture.retry_max_s=0.5"]) \
            as pipeline, Listener(pipeline.endpoints["labels"]) as listener:
        listener.wait_for(is_label("real"), 180, "a label of the real stream", since=0, pipeline=pipeline)
        listener.wait_for(is_stats("capture:locked", lambda c: c["connect_failures"] >= 2), 60,
                          "the locked camera's capture failing to connect twice", since=0, pipeline=pipeline)
        command_lines = all_command_lines()
        assert "capture" in command_lines and not leaked(command_lines), leaked(command_lines)
        logs = {path: path.read_text(errors="replace") for path in
                [pipeline.up_log, *sorted(pipeline.log_dir.iterdir())]}
        capture_log = pipeline.capture_log("locked")
        assert "rtsp://127.0.0.1:1/x" in capture_log and "connection refused" in capture_log, capture_log[-2000:]
        for path, text in logs.items():
            assert not leaked(text), f"{path} holds {leaked(text)}"
        for path in pipeline.log_dir.iterdir():
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, f"{path} is {oct(os.stat(path).st_mode)}"
        published = "\n".join(repr(item.message) for item in listener.history)
        assert "capture:locked" in published and not leaked(published), leaked(published)
    print(f"\n{len(listener.history)} messages, {len(logs)} logs and every command line checked: no secret")
