"""Preview thumbnails for dashboards, kept off the frame path.

At most `capture.preview_fps` times a second the capture scales its newest preprocessed frame
down to `capture.preview_size` pixels, encodes it as a JPEG and pushes it, without blocking, on its
own socket (send high-water mark 1) to `endpoints.previews`, which the LSTM worker republishes as
`preview/<stream>/`. When nobody can take it right now the preview is dropped and counted: a
thumbnail never delays a frame, and the frames socket never carries one.
"""

from __future__ import annotations

import time

import cv2
import numpy as np
import zmq

from configs.settings import Config
from streamer.transport import wire
from streamer.transport.sockets import make_socket


def thumbnail(image_rgb: np.ndarray, size: int, quality: int) -> bytes | None:
    """A JPEG of the frame scaled down to `size` pixels on its longer side (never up); None if encoding fails."""
    scale = size / max(image_rgb.shape[:2])
    small = cv2.resize(image_rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else image_rgb
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return jpeg.tobytes() if ok else None


class PreviewSender:
    def __init__(self, context: zmq.Context, config: Config, stream: str):
        capture = config.capture
        self.stream, self.size, self.quality = stream, capture.preview_size, capture.preview_quality
        self.interval_s = 1.0 / capture.preview_fps
        self.socket = make_socket(context, zmq.PUSH, config.endpoints.previews, bind=False,
                                  security=config.security, hwm=1)
        self.next_due = 0.0
        self.sent = self.dropped = 0

    def offer(self, image_rgb: np.ndarray, seq: int, t_capture: float) -> None:
        """Send a preview of this frame if one is due; cheap (one comparison) when it is not."""
        now = time.monotonic()
        if now < self.next_due:
            return
        self.next_due = now + self.interval_s
        jpeg = thumbnail(image_rgb, self.size, self.quality)
        if jpeg is None:
            self.dropped += 1
            return
        try:
            wire.send(self.socket, wire.Preview(stream=self.stream, seq=seq, t_capture=t_capture,
                                                jpeg=jpeg), flags=zmq.NOBLOCK)
            self.sent += 1
        except zmq.Again:
            self.dropped += 1  # the LSTM worker is busy or away: this thumbnail is skipped

    def counters(self) -> dict[str, float]:
        return {"previews_sent": self.sent, "previews_dropped": self.dropped}

    def close(self) -> None:
        self.socket.close()
