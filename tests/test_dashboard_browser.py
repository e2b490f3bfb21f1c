"""The dashboard in a real browser (Debian's chromium, headless) against real processes."""

from __future__ import annotations

import os
import signal
import time

import zmq

from configs.settings import Security
from streamer.transport import wire
from streamer.transport.sockets import make_socket
from tests.conftest import wait_until
from tests.support.browser import Dashboard, chromium_page, http_get, metric_samples
from tests.support.pipeline import Listener, Pipeline, free_port, is_event

PREVIEW_TOPICS = (b"label/", b"event/", b"stats/", b"preview/")




def _card(page, stream: str):
    return page.locator(f'.card[data-stream="{stream}"]')


def _seq(page, stream: str) -> int:
    text = _card(page, stream).locator(".facts b").nth(5).text_content()  # the "seq" fact
    return int(text) if text.isdigit() else -1


def test_cards_labels_previews_events_and_metrics_of_a_running_pipeline(tmp_path):
    # A capture process per camera, so one can be stopped while the other goes on.
    pipeline = Pipeline(tmp_path / "pipeline", ["a=synthetic", "b=synthetic"],
                        sets=["capture.preview_fps=4", "capture.cameras_per_process=1"])
    endpoint_sets = [f"endpoints.{name}={value}" for name, value in pipeline.endpoints.items()]
    # The dashboard and a plain subscriber both listen before anything is published.
    with Dashboard(tmp_path, endpoint_sets) as dashboard, \
            Listener(pipeline.endpoints["labels"], topics=PREVIEW_TOPICS) as listener, chromium_page() as page:
        page.goto(dashboard.address)
        assert page.locator("#empty").is_visible()
        with pipeline:
            for stream in ("a", "b"):
                card = _card(page, stream)
                card.locator(".label").filter(has_not_text="-").wait_for(timeout=180_000)
            # Labels keep changing in the page: each card's sequence number moves on.
            first = {stream: _seq(page, stream) for stream in ("a", "b")}
            page.wait_for_function("""(first) => ['a', 'b'].every((s) => {
                const seq = document.querySelectorAll(`.card[data-stream="${s}"] .facts b`)[5].textContent;
                return Number(seq) > first[s]; })""", arg=first, timeout=60_000)
            assert all(_seq(page, stream) > first[stream] for stream in ("a", "b"))
            assert _card(page, "a").locator(".bar").count() >= 2  # top-k bars
            # The thumbnail is a JPEG the capture sent, through the LSTM worker, to the page.
            page.wait_for_function("""() => ['a', 'b'].every((s) => {
                const image = document.querySelector(`.card[data-stream="${s}"] img`);
                return !image.hidden && image.complete && image.naturalWidth > 0; })""", timeout=60_000)
            listener.pump(0.5)
            assert any(isinstance(item.message, wire.Preview) for item in listener.history)

            # A capture stopped with `kill`: its end shows in the event log and on its card.
            since = time.monotonic()
            os.kill(pipeline.pid("capture:b"), signal.SIGTERM)
            listener.wait_for(is_event("b", wire.StreamEnd), 30, "stream end of b", since=since, pipeline=pipeline)
            page.locator("#events li").filter(has_text="b").filter(has_text="ended (stopped)").wait_for()
            _card(page, "b").locator(".badge").filter(has_text="ended: stopped").wait_for()
            assert _card(page, "a").locator(".badge").text_content() == "live"
            page.locator("#processes tbody tr").filter(has_text="capture:a").wait_for()
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        listener.pump(3.0)  # `up` stopped: every message is out

        # /metrics against what the plain subscriber counted.
        labels = {stream: len(listener.labels(stream)) for stream in ("a", "b")}
        assert all(count > 0 for count in labels.values())
        samples: dict = {}

        def metrics_caught_up() -> bool:
            samples.update(metric_samples(dashboard.metrics()))
            return all(samples.get(("streamer_labels_total", (("stream", s),))) == n for s, n in labels.items())

        wait_until(metrics_caught_up, 15, what=f"/metrics counting the labels the subscriber got ({labels})")
        for stream, count in labels.items():
            assert samples[("streamer_latency_seconds_count", (("stream", stream),))] == count
            stats = listener.stats[f"capture:{stream}"]
            assert samples[("streamer_frames_total", (("process", f"capture:{stream}"), ("what", "sent")))] == \
                stats["frames_sent"]
            assert samples.get(("streamer_dropped_total", (("process", f"capture:{stream}"), ("reason", "stale"))),
                               0) == stats["dropped_stale"]
            assert samples[("streamer_restarts_total", (("process", f"capture:{stream}"),))] == 0
        assert samples[("streamer_frames_total", (("process", "lstm"), ("what", "labelled")))] == \
            listener.stats["lstm"]["labels"]
        ended: dict[str, bool] = {}  # b ended; a too unless `up` stopped its feature worker before a's end passed
        for item in listener.history:
            if isinstance(item.message, (wire.Label, wire.StreamStart, wire.StreamEnd)):
                ended[item.message.stream] = isinstance(item.message, wire.StreamEnd)
        assert ended["b"]
        assert samples[("streamer_streams_live", ())] == sum(not gone for gone in ended.values())
        model_id = listener.labels("a")[-1].message.model_id
        backend = next(key.split("=", 1)[1] for key in listener.stats["features:0"] if key.startswith("backend="))
        assert samples[("streamer_model_info", (("backend", backend), ("model_id", model_id)))] == 1
        assert ("streamer_stage_seconds_count", (("stage", "cnn"),)) in samples
        assert samples[("streamer_malformed_messages_total", ())] == 0
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000


def test_text_from_the_pipeline_is_shown_as_text_and_a_token_guards_everything(tmp_path, zmq_context):
    """Stream names cannot hold markup (the wire refuses them); every other text that reaches the page is
    published here with markup in it, by a real PUB socket, to a dashboard that requires a token."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    publisher = make_socket(zmq_context, zmq.PUB, endpoint, bind=True, security=Security())
    markup = "<b>x</b>"
    messages = [
        wire.StreamStart(stream="cam9", source=f"{markup}<img src=x onerror=window.pwned=1>", fps=15.0, width=64,
                         height=64, t=time.time()),
        wire.Label(stream="cam9", seq=40, t_capture=time.time(), t_publish=time.time(), label=markup, score=0.9,
                   top_k=[(markup, 0.9), ("<i>y</i>", 0.1)], warming=False, frames_in_window=8,
                   model_id="<script>window.pwned=2</script>", stages={}, truth="<script>window.pwned=3</script>",
                   truth_since=0),
        wire.Label(stream=markup, seq=1, t_capture=1.0, t_publish=1.0, label="a", score=1.0, top_k=[("a", 1.0)],
                   warming=False, frames_in_window=8, model_id="m", stages={}),  # refused by the dashboard
        wire.StreamEnd(stream="cam9", reason=markup, t=time.time()),
    ]
    try:
        with Dashboard(tmp_path, [f"endpoints.labels={endpoint}"], token="t0ken") as dashboard, \
                chromium_page() as page:
            assert http_get(dashboard.address + "metrics")[0] == 401
            assert http_get(dashboard.address)[0] == 401
            page.goto(dashboard.address + "?token=t0ken")
            assert page.url == dashboard.address  # the token moved into a cookie
            card = _card(page, "cam9")
            deadline = time.monotonic() + 30
            while card.count() == 0 or "ended" not in (card.locator(".badge").text_content() or ""):
                assert time.monotonic() < deadline, "the published messages never reached the page"
                for message in messages:  # again until the subscription is through (slow joiner)
                    publisher.send_multipart(wire.pack_published(message))
                page.wait_for_timeout(300)
            assert card.locator(".label").text_content() == markup
            assert card.locator(".bar .name").first.text_content() == markup
            assert card.locator(".badge").text_content() == f"ended: {markup}"
            assert markup in card.locator(".source").text_content()
            assert "<script>window.pwned=3</script>" in card.text_content()  # the truth
            assert page.locator("#model").text_content() == "model <script>window.pwned=2</script>"
            page.locator("#events li").filter(has_text=f"ended ({markup})").wait_for()
            assert page.evaluate("""() => ({
                pwned: window.pwned === undefined,
                markup: [...document.querySelectorAll('b, i, img, script')].every(
                    (node) => !['x', 'y'].includes(node.textContent) && !(node.tagName === 'IMG' && node.src.endsWith('/x'))
                              && !(node.tagName === 'SCRIPT' && node.textContent.includes('pwned'))),
                cards: document.querySelectorAll('.card').length})""") == {"pwned": True, "markup": True, "cards": 1}
            samples = metric_samples(dashboard.metrics())
            assert samples[("streamer_malformed_messages_total", ())] >= 1  # the label of stream "<b>x</b>"
            page.screenshot(path=str(tmp_path / "markup.png"))
    finally:
        publisher.close()
