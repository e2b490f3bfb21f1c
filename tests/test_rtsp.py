"""A real RTSP camera (GStreamer on loopback) read by a real capture under `run.py up`.

The camera is killed mid-stream, and frozen with its sockets open; each time the capture reports
the outage, reconnects with capped backoff in a new session, the LSTM window starts again
(labels go back to warming), and a synthetic stream beside it never notices.
Installed by `.ci/install-system-deps.sh`; if GStreamer is missing these tests fail, saying so.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from streamer.transport import wire
from streamer.capture.sources import SourceError, open_source
from tests.support.camera import RtspCamera, SilentServer, require_gstreamer, write_clip
from tests.support.pipeline import Listener, Pipeline, free_port, is_event, is_label, is_stats, run_py, stop_process

RETRY_MAX_S = 2.0
STALL_S = 2.0
WINDOW = 8  # lstm.random_window in tests.support.pipeline.FAST


@pytest.fixture(scope="module")
def camera(tmp_path_factory):
    require_gstreamer()
    folder = tmp_path_factory.mktemp("rtsp")
    server = RtspCamera(write_clip(folder / "clip"), free_port(), folder / "server.log")
    server.start()
    yield server
    server.kill()


@pytest.fixture(scope="module")
def live(camera, tmp_path_factory):
    """`run.py up` with the RTSP camera as `cam` and a synthetic camera as `syn`, and a listener."""
    sets = [f"capture.stall_timeout_s={STALL_S}", "capture.retry_initial_s=0.25", f"capture.retry_max_s={RETRY_MAX_S}"]
    with Pipeline(tmp_path_factory.mktemp("up"), [f"cam={camera.url}", "syn=synthetic"], sets) as pipeline:
        with Listener(pipeline.endpoints["labels"]) as listener:
            listener.wait_for(is_label("cam", warming=False), 120, "warm label from the RTSP camera",
                              since=0, pipeline=pipeline)
            yield pipeline, listener


def ensure_camera_flowing(camera: RtspCamera, pipeline: Pipeline, listener: Listener) -> None:
    if camera.process is None or camera.process.poll() is not None:
        camera.start()
    listener.wait_for(is_label("cam", warming=False), 30, "warm label from the RTSP camera", pipeline=pipeline)


def assert_unaffected(listener: Listener, stream: str, since: float, until: float) -> None:
    """The stream kept its window (never warming again) and its labels kept coming, in order."""
    labels = listener.labels(stream, since, until)
    assert len(labels) >= (until - since) * 1.5, f"{stream}: only {len(labels)} labels in {until - since:.1f} s"
    assert not any(item.message.warming for item in labels), f"{stream}: its window restarted"
    seqs = [item.message.seq for item in labels]
    assert seqs == sorted(seqs)
    gaps = np.diff([since] + [item.at for item in labels] + [until])
    assert gaps.max() < 2.0, f"{stream}: no label for {gaps.max():.1f} s"


def outage_and_recovery(camera, pipeline, listener, break_camera, mend_camera, detect_within_s: float) -> dict:
    """Break the camera, check the outage is reported, mend it, check labels resume warming."""
    ensure_camera_flowing(camera, pipeline, listener)
    t_break = time.monotonic()
    break_camera()
    lost = listener.wait_for(is_event("cam", wire.StreamEnd, "source lost"), detect_within_s + 5,
                             "stream-end 'source lost' for the camera", since=t_break)
    detected_s = lost.at - t_break
    assert detected_s <= detect_within_s, f"outage reported after {detected_s:.1f} s"
    listener.pump(1.5)  # the camera stays down a little while
    t_back = mend_camera()
    first = listener.wait_for(is_label("cam"), RETRY_MAX_S + 5, "camera label after it came back", since=t_back)
    resumed_s = first.at - t_back
    # A new session: the window starts again, so the first label is warming on a single frame.
    assert first.message.warming and first.message.frames_in_window == 1, first.message
    warm = listener.wait_for(is_label("cam", warming=False), 20, "warm camera label after the outage", since=first.at)
    assert warm.message.frames_in_window == WINDOW
    assert_unaffected(listener, "syn", t_break, time.monotonic())
    pipeline.assert_running()
    return {"detected_s": detected_s, "resumed_s": resumed_s}


def test_camera_killed_mid_stream_reconnects_and_restarts_the_window(camera, live):
    pipeline, listener = live
    figures = outage_and_recovery(camera, pipeline, listener, camera.kill, camera.start, detect_within_s=3.0)
    print(f"\nRTSP server killed: outage reported after {figures['detected_s']:.2f} s; "
          f"labels resumed {figures['resumed_s']:.2f} s after the server was back")
    log = pipeline.capture_log("cam")
    assert "nothing listens on 127.0.0.1" in log and "retrying in" in log, log[-3000:]
    stats = listener.wait_for(is_stats("capture:cam", lambda c: c["outages"] >= 1 and c["connected"] == 1), 5,
                              "capture stats counting the outage")
    assert stats.message.counters["connect_failures"] >= 1
    supervisor = listener.wait_for(is_stats("supervisor"), 5, "supervisor stats")
    assert supervisor.message.counters["restarts"] == 0, "a process crashed during the outage"


def test_camera_that_stalls_with_its_socket_open_is_detected(camera, live):
    pipeline, listener = live

    def thaw() -> float:
        camera.thaw()
        return time.monotonic()

    # Frozen (SIGSTOP): connections stay open and nothing arrives; the capture's watchdog must
    # notice within stall_timeout_s (FFmpeg alone took ~3x its read timeout).
    figures = outage_and_recovery(camera, pipeline, listener, camera.freeze, thaw, detect_within_s=STALL_S + 2)
    print(f"\nRTSP server frozen: outage reported after {figures['detected_s']:.2f} s; "
          f"labels resumed {figures['resumed_s']:.2f} s after it thawed")
    assert f"no frame for {STALL_S:.1f} s" in pipeline.capture_log("cam"), "the watchdog did not fire"
    stats = listener.wait_for(is_stats("capture:cam", lambda c: c["stalls"] >= 1), 5, "capture stats counting the stall")
    assert stats.message.counters["stuck_readers"] <= 1
    supervisor = listener.wait_for(is_stats("supervisor"), 5, "supervisor stats")
    assert supervisor.message.counters["restarts"] == 0


# ----------------------------------------------------------------------- errors that say what to do


def test_network_failures_are_diagnosed_and_retryable(camera):
    closed = free_port()
    with pytest.raises(SourceError) as refused:
        open_source(f"rtsp://127.0.0.1:{closed}/cam", timeout_s=1.0)
    assert refused.value.retry and f"nothing listens on 127.0.0.1:{closed}" in str(refused.value)

    with pytest.raises(SourceError) as wrong_path:
        open_source(f"rtsp://127.0.0.1:{camera.port}/nope", timeout_s=2.0)
    assert wrong_path.value.retry
    assert "no stream at '/nope' (404" in str(wrong_path.value) and "check the path" in str(wrong_path.value)

    silent = SilentServer()
    try:
        started = time.monotonic()
        with pytest.raises(SourceError) as hung:
            open_source(f"rtsp://user:secret@127.0.0.1:{silent.port}/cam", timeout_s=1.0)
        assert time.monotonic() - started < 8, "the open timeout did not fire"
    finally:
        silent.close()
    message = str(hung.value)
    assert hung.value.retry and "accepts connections but answers nothing" in message
    assert "secret" not in message and "user" not in message, "credentials must never reach a log"
    assert f"rtsp://127.0.0.1:{silent.port}/cam" in message


def test_capture_retries_a_dead_camera_with_capped_backoff(tmp_path):
    url = f"rtsp://127.0.0.1:{free_port()}/cam"
    log = tmp_path / "capture.log"
    process = run_py(["capture", "--source", url, "--stream", "cam"],
                     [f"endpoints.frames=tcp://127.0.0.1:{free_port()}", "capture.retry_initial_s=0.2",
                      "capture.retry_max_s=0.8", "capture.stall_timeout_s=1"], log)
    try:
        deadline = time.monotonic() + 40
        while log.read_text().count("retrying in") < 5 and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            time.sleep(0.2)
        assert process.poll() is None, "a camera that is down must be retried, not given up"
    finally:
        code = stop_process(process)
    text = log.read_text()
    delays = [float(line.rsplit("retrying in ", 1)[1].split(" s")[0]) for line in text.splitlines()
              if "retrying in" in line]
    assert delays[:5] == [0.2, 0.4, 0.8, 0.8, 0.8], text
    assert "nothing listens on" in text and url in text
    assert code == 0, text


@pytest.mark.parametrize("spec, expected", [
    ("no/such/clip.avi", "no such file or folder"),
    ("ftp://camera.local/stream", "unsupported scheme 'ftp'"),
    ("webcam:first", "a webcam is given by index"),
    ("synthetic:x", "takes an integer seed"),
])
def test_specs_that_cannot_work_fail_at_once_and_are_not_retried(spec, expected):
    with pytest.raises(SourceError) as error:
        open_source(spec)
    assert not error.value.retry and expected in str(error.value) and spec.split("/")[0] in str(error.value)


def test_a_corrupt_video_is_a_clear_error(tmp_path):
    corrupt = tmp_path / "broken.avi"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    with pytest.raises(SourceError) as error:
        open_source(str(corrupt))
    assert not error.value.retry and str(corrupt) in str(error.value)
    assert "corrupt" in str(error.value) and "re-encode" in str(error.value)
