"""Preview thumbnails: their wire kind, and the capture's sender that never waits for anyone."""

from __future__ import annotations

import cv2
import msgpack
import numpy as np
import pytest
import zmq

from configs.settings import Config, Security, load_config
from streamer.capture.previews import PreviewSender
from streamer.transport import wire
from streamer.transport.sockets import make_socket
from tests.support.pipeline import free_port


def _jpeg(side: int = 8) -> bytes:
    return cv2.imencode(".jpg", np.zeros((side, side, 3), np.uint8))[1].tobytes()


def test_preview_round_trips_and_is_published_on_its_own_topic():
    preview = wire.Preview(stream="cam0", seq=12, t_capture=5.0, jpeg=_jpeg())
    parts = [bytes(memoryview(p)) for p in wire.pack_published(preview)]
    assert parts[0] == b"preview/cam0/"
    assert wire.unpack_published(parts) == preview


@pytest.mark.parametrize("body, reason", [(b"GIF89a....", "value"), (b"\xff\xd8" + bytes(wire.MAX_PREVIEW_BYTES), "size")])
def test_a_preview_that_is_not_a_small_jpeg_is_refused(body, reason):
    header = wire.pack(wire.Preview(stream="cam0", seq=1, t_capture=1.0, jpeg=_jpeg()))[0]
    with pytest.raises(wire.WireError) as refused:
        wire.unpack([header, body])
    assert refused.value.reason == reason
    with pytest.raises(wire.WireError):
        wire.unpack([header])  # without its buffer


def test_a_stream_named_like_markup_never_gets_past_the_wire():
    header = msgpack.packb({"v": wire.SCHEMA_VERSION, "kind": "preview", "stream": "<b>x</b>", "seq": 0,
                            "t_capture": 1.0})
    with pytest.raises(wire.WireError) as refused:
        wire.unpack([header, _jpeg()])
    assert refused.value.reason == "stream"


def _config(endpoint: str, **capture) -> Config:
    sets = [f"endpoints.previews={endpoint}"] + [f"capture.{k}={v}" for k, v in capture.items()]
    return load_config(None, sets)


def test_sender_sends_at_most_its_rate_a_scaled_jpeg_with_the_right_colours(zmq_context):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    receiver = make_socket(zmq_context, zmq.PULL, endpoint, bind=True, security=Security())
    sender = PreviewSender(zmq_context, _config(endpoint, preview_fps=0.5, preview_size=32), "cam0")
    try:
        red_rgb = np.zeros((64, 64, 3), np.uint8)
        red_rgb[..., 0] = 255
        for _ in range(50):  # until the connection is up (before it, a preview is dropped: nobody to take it)
            sender.next_due = 0.0
            sender.offer(red_rgb, 0, 10.0)
            if receiver.poll(100):
                break
        preview = wire.unpack(receiver.recv_multipart())
        dropped = sender.counters()["previews_dropped"]
        for seq in range(1, 5):  # the next is due only in 2 s: these are not even encoded
            sender.offer(red_rgb, seq, 10.0)
        assert not receiver.poll(200)
        assert sender.counters() == {"previews_sent": 1, "previews_dropped": dropped}
        assert isinstance(preview, wire.Preview) and preview.stream == "cam0" and preview.seq == 0
        image = cv2.imdecode(np.frombuffer(preview.jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (32, 32, 3)
        assert image[..., 2].mean() > 200 and image[..., 0].mean() < 50  # red, in OpenCV's BGR
    finally:
        sender.close()
        receiver.close()


def test_with_nobody_to_take_it_a_preview_is_dropped_and_counted_at_once(zmq_context):
    sender = PreviewSender(zmq_context, _config(f"tcp://127.0.0.1:{free_port()}", preview_fps=1000.0), "cam0")
    try:
        image = np.zeros((16, 16, 3), np.uint8)
        sender.next_due = 0.0
        sender.offer(image, 0, 1.0)
        assert sender.counters() == {"previews_sent": 0, "previews_dropped": 1}
    finally:
        sender.close()
