"""The dashboard as a CURVE client: with security on, it reads the label topic with its own key."""

from __future__ import annotations

import time

import zmq

from configs.settings import Security
from streamer.transport import wire
from streamer.transport.sockets import make_socket
from tests.support.browser import Dashboard, metric_samples
from tests.support.pipeline import free_port
from tests.test_security import make_keys


def test_dashboard_reads_an_encrypted_label_topic_with_its_client_key(tmp_path):
    keys = tmp_path / "keys"
    assert make_keys(keys, "dashboard").returncode == 0
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    context = zmq.Context()
    publisher = make_socket(context, zmq.PUB, endpoint, bind=True, security=Security(curve=True, keys_dir=str(keys)))
    sets = [f"endpoints.labels={endpoint}", "security.curve=true", f"security.keys_dir={keys}",
            "security.client_key=dashboard"]
    label = wire.Label(stream="cam0", seq=1, t_capture=time.time(), t_publish=time.time(), label="FadeIn", score=0.9,
                       top_k=[("FadeIn", 0.9)], warming=False, frames_in_window=8, model_id="m", stages={})
    try:
        with Dashboard(tmp_path, sets) as dashboard:
            deadline = time.monotonic() + 30
            while metric_samples(dashboard.metrics()).get(("streamer_labels_total", (("stream", "cam0"),)), 0) == 0:
                assert time.monotonic() < deadline, f"no label got through:\n{dashboard.log_path.read_text()}"
                wire.publish(publisher, label)  # again until the encrypted subscription is through
                time.sleep(0.3)
    finally:
        publisher.close()
        context.term()
