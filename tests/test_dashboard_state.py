"""The dashboard without a browser: its state and throttling, its metrics, its token gate."""

from __future__ import annotations

import socket

import cv2
import numpy as np
import pytest
from starlette.testclient import TestClient

from configs.settings import ActionableError, Config, Dashboard, replace
from streamer.apps.dashboard.metrics import DashboardMetrics
from streamer.apps.dashboard.server import COOKIE, build_app, exposure_warning, serve
from streamer.apps.dashboard.state import DashboardState, latency_chart, process_rows
from streamer.transport import wire
from streamer.transport.sockets import free_port
from tests.support.browser import metric_samples


def _label(stream: str, seq: int, label: str = "FadeIn", truth: str | None = "FadeIn", t_capture: float = 100.0,
           warming: bool = False) -> wire.Label:
    return wire.Label(stream=stream, seq=seq, t_capture=t_capture, t_publish=t_capture + 0.02, label=label, score=0.7,
                      top_k=[(label, 0.7), ("Other", 0.2)], warming=warming, frames_in_window=8, model_id="m-1",
                      stages={"cnn": 12.0, "lstm": 1.0}, truth=truth, truth_since=0)


def _jpeg() -> bytes:
    return cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes()


def test_a_browser_gets_each_streams_newest_state_once_per_look_however_many_labels_came():
    state = DashboardState(Dashboard(), clock=lambda: 101.0)
    seen: dict = {}
    for seq in range(50):  # a burst between two looks of the browser
        state.take(_label("cam0", seq), received=100.05)
    state.take(_label("cam1", 0, warming=True), received=100.04)
    first = state.changes(seen)
    assert sorted(card["stream"] for card in first["cards"]) == ["cam0", "cam1"]
    cam0 = next(card for card in first["cards"] if card["stream"] == "cam0")
    assert cam0["label"]["seq"] == 49 and cam0["labels"] == 50  # the newest, not a queue of 50
    assert cam0["label"]["latency_ms"] == pytest.approx(50.0)
    assert first["log_size"] == Dashboard().event_log_size
    assert state.changes(seen) == {}  # nothing new: nothing sent
    state.take(_label("cam1", 1), received=100.1)
    assert [card["stream"] for card in state.changes(seen)["cards"]] == ["cam1"]  # only what changed


def test_live_accuracy_counts_settled_labels_against_the_truth():
    state = DashboardState(Dashboard(), clock=lambda: 101.0)
    state.take(_label("cam0", 20, label="FadeIn", truth="FadeIn"), 100.1)
    state.take(_label("cam0", 21, label="Spin", truth="FadeIn"), 100.1)
    state.take(_label("cam0", 3, truth="FadeIn", warming=True), 100.1)  # warming: not judged
    state.take(_label("cam0", 22, truth=None), 100.1)  # no truth: not judged
    card = state.changes({})["cards"][0]
    assert card["judged"] == 2 and card["accuracy"] == 0.5


def test_events_tell_starts_ends_reconnects_and_restarts_once_each():
    state = DashboardState(Dashboard(), clock=lambda: 10.0)
    seen: dict = {}
    state.take(wire.StreamStart(stream="door", source="rtsp://cam/1", fps=15.0, width=224, height=224, t=1.0), 1.0)
    state.take(wire.Stats(process="capture:door", t=2.0, counters={"reconnects": 0}), 2.0)
    state.take(wire.Stats(process="capture:door", t=3.0, counters={"reconnects": 1}), 3.0)
    state.take(wire.Stats(process="capture:door", t=4.0, counters={"reconnects": 1}), 4.0)  # unchanged: no line
    state.take(wire.Stats(process="supervisor", t=5.0, counters={"restarts_capture:door": 1, "restarts": 1}), 5.0)
    state.take(wire.StreamEnd(stream="door", reason="evicted", t=6.0), 6.0)
    texts = [(event["stream"], event["text"]) for event in state.changes(seen)["events"]]
    assert texts == [("door", "started (rtsp://cam/1, 15 fps)"), ("door", "reconnecting (attempt 1)"),
                     ("capture:door", "process restarted (restart #1)"), ("door", "ended (evicted)")]
    assert "events" not in state.changes(seen)
    state.take(wire.StreamEnd(stream="door", reason="stopped", t=7.0), 7.0)
    assert [event["text"] for event in state.changes(seen)["events"]] == ["ended (stopped)"]


def test_event_log_keeps_the_newest_lines_only():
    state = DashboardState(Dashboard(event_log_size=3))
    for index in range(5):
        state.take(wire.StreamEnd(stream=f"s{index}", reason="stopped", t=float(index)), 0.0)
    assert [event["stream"] for event in state.changes({})["events"]] == ["s2", "s3", "s4"]


def test_latency_chart_splits_the_window_into_slices_with_p50_and_p99():
    latencies = [(30.0, 999.0)] + [(50.0 + 0.1 * i, 10.0) for i in range(50)] + [(95.0, 100.0)]
    chart = latency_chart(latencies, now=100.0, window_s=60.0, points=12)  # slices of 5 s from 40 s
    assert chart["chart"][0] is None and chart["chart"][1] is None  # nothing in 40..50 s
    assert chart["chart"][2] == [10.0, 10.0] and chart["chart"][11] == [100.0, 100.0]
    assert chart["p50_ms"] == 10.0 and 10.0 < chart["p99_ms"] <= 100.0  # the label at 30 s is out of the window


def test_process_panel_rows_show_frames_drops_queues_restarts_and_backend():
    rows = process_rows({
        "capture:cam0": {"frames_read": 30, "frames_sent": 20, "dropped_stale": 10, "reconnects": 0,
                         "previews_sent": 3, "previews_dropped": 1},
        "features:0": {"frames": 20, "sent": 25, "dropped": 1, "dropped_size": 1, "backend=openvino-cpu-bf16": 1},
        "lstm": {"labels": 19, "held_for_order": 2, "ready_queue": 0, "dropped_late": 0},
        "supervisor": {"restarts_capture:cam0": 2, "restarts": 2},
    })
    assert [row["process"] for row in rows] == ["capture:cam0", "features:0", "lstm"]
    capture, features, lstm = rows
    assert capture["frames"] == {"read": 30, "sent": 20} and capture["dropped"] == {"stale": 10, "preview": 1}
    assert capture["restarts"] == 2 and features["restarts"] == 0
    assert features["frames"] == {"processed": 20} and features["dropped"] == {"size": 1}
    assert features["backend"] == ["openvino-cpu-bf16"]
    assert lstm["queues"] == {"held_for_order": 2, "ready_queue": 0} and lstm["dropped"] == {}




def _scrape(metrics: DashboardMetrics) -> dict:
    from prometheus_client import generate_latest

    return metric_samples(generate_latest(metrics.registry).decode())


def test_metrics_count_labels_latency_stages_and_read_the_processes_stats():
    state = DashboardState(Dashboard())
    metrics = DashboardMetrics(state)
    messages = [(_label("cam0", 0, t_capture=100.0), 100.03), (_label("cam0", 1, t_capture=100.1), 100.4),
                (_label("cam1", 0, t_capture=100.0), 100.02), (None, 100.5),
                (wire.Stats(process="capture:cam0", t=1.0, counters={"frames_read": 9, "frames_sent": 7,
                                                                     "dropped_stale": 2}), 101.0),
                (wire.Stats(process="features:0", t=1.0, counters={"frames": 7, "backend=torch-cpu-fp32": 1}), 101.0),
                (wire.Stats(process="lstm", t=1.0, counters={"labels": 3, "held_for_order": 1}), 101.0),
                (wire.Stats(process="supervisor", t=1.0, counters={"restarts_capture:cam0": 1}), 101.0),
                (wire.StreamEnd(stream="cam1", reason="stopped", t=1.0), 101.0)]
    for message, received in messages:
        state.take(message, received)
        metrics.observe(message, received)
    samples = _scrape(metrics)
    assert samples[("streamer_labels_total", (("stream", "cam0"),))] == 2
    assert samples[("streamer_labels_total", (("stream", "cam1"),))] == 1
    assert samples[("streamer_latency_seconds_count", (("stream", "cam0"),))] == 2
    assert samples[("streamer_latency_seconds_sum", (("stream", "cam0"),))] == pytest.approx(0.33)
    assert samples[("streamer_latency_seconds_bucket", (("le", "0.05"), ("stream", "cam0")))] == 1  # 30 ms
    assert samples[("streamer_latency_seconds_bucket", (("le", "0.5"), ("stream", "cam0")))] == 2  # and 300 ms
    assert samples[("streamer_stage_seconds_sum", (("stage", "cnn"),))] == pytest.approx(0.036)
    assert samples[("streamer_malformed_messages_total", ())] == 1
    assert samples[("streamer_frames_total", (("process", "capture:cam0"), ("what", "sent")))] == 7
    assert samples[("streamer_frames_total", (("process", "features:0"), ("what", "processed")))] == 7
    assert samples[("streamer_dropped_total", (("process", "capture:cam0"), ("reason", "stale")))] == 2
    assert samples[("streamer_restarts_total", (("process", "capture:cam0"),))] == 1
    assert samples[("streamer_queue_depth", (("process", "lstm"), ("queue", "held_for_order")))] == 1
    assert samples[("streamer_streams_live", ())] == 1  # cam1 ended
    assert samples[("streamer_model_info", (("backend", "torch-cpu-fp32"), ("model_id", "m-1")))] == 1


def _client(token: str = "") -> tuple[TestClient, DashboardState]:
    state = DashboardState(Dashboard(token=token))
    state.take(wire.Preview(stream="cam0", seq=4, t_capture=1.0, jpeg=_jpeg()), 1.0)
    return TestClient(build_app(state, DashboardMetrics(state), state.settings)), state


def test_page_static_files_previews_and_metrics_are_served_from_the_package():
    client, _ = _client()
    page = client.get("/")
    assert page.status_code == 200 and "static/app.js" in page.text
    assert "textContent" in client.get("/static/app.js").text
    assert client.get("/static/style.css").status_code == 200
    preview = client.get("/preview/cam0")
    assert preview.headers["content-type"] == "image/jpeg" and preview.content == _jpeg()
    assert client.get("/preview/nobody").status_code == 404
    assert "streamer_streams_live" in client.get("/metrics").text


def test_with_a_token_nothing_is_served_without_it():
    client, _ = _client(token="s3cret")
    for path in ("/", "/static/app.js", "/events", "/preview/cam0", "/metrics"):
        assert client.get(path).status_code == 401, path
        assert client.get(path, params={"token": "wrong"}).status_code == 401, path
        assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401, path
    assert client.get("/metrics", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert client.get("/metrics", params={"token": "s3cret"}).status_code == 200
    # The page with ?token= sets a cookie and drops the token from the address; the cookie then opens the rest.
    opened = client.get("/", params={"token": "s3cret"}, follow_redirects=False)
    assert opened.status_code == 303 and opened.headers["location"] == "/"
    assert COOKIE in opened.headers["set-cookie"] and "HttpOnly" in opened.headers["set-cookie"]
    assert client.get("/").status_code == 200  # TestClient keeps the cookie
    assert client.get("/preview/cam0").status_code == 200


def test_listening_beyond_loopback_without_a_token_is_warned_about():
    assert exposure_warning(Dashboard()) is None  # 127.0.0.1
    assert exposure_warning(Dashboard(host="localhost")) is None
    assert exposure_warning(Dashboard(host="0.0.0.0", token="s3cret")) is None
    warning = exposure_warning(Dashboard(host="0.0.0.0"))
    assert "WITHOUT a token" in warning and "token" in warning.split("Set one")[1]


def test_a_taken_port_is_an_error_naming_the_setting():
    port = free_port()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        with pytest.raises(ActionableError, match="dashboard.port"):
            serve(replace(Config(), "dashboard", port=port))
