"""A feature worker's frames socket without the model, for tests of a capture on its own (`PushedFrames`:
the same for push dispatch).

It binds a ROUTER as a feature worker does with credit dispatch, answers a capture's hello with
one credit (again once that one's lease is over), and grants one more (acknowledging the frame)
each time a frame is taken with `recv`, so a test that reads slowly is a slow pipeline. Messages other than hellos are returned.
"""

from __future__ import annotations

import time

import zmq

from streamer.transport import wire

LEASE_MS = 1000.0


class CreditingFrames:
    def __init__(self, context: zmq.Context, endpoint: str):
        self.socket = context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.RCVHWM, 1)
        self.socket.setsockopt(zmq.RCVBUF, 65536)
        self.socket.bind(endpoint)
        self.granted: dict[bytes, float] = {}  # captures holding a credit -> when it was granted

    def recv(self, timeout_ms: int) -> wire.Message | None:
        """The next frame, stream event or stats message (None after `timeout_ms` without one)."""
        while self.socket.poll(timeout_ms):
            identity, *parts = self.socket.recv_multipart()
            message = wire.unpack(parts)
            if isinstance(message, wire.Hello):
                if time.monotonic() - self.granted.get(identity, float("-inf")) > LEASE_MS / 1000:
                    self._grant(identity, [])
                continue
            if isinstance(message, wire.Frame):
                self._grant(identity, [message.seq])
            return message
        return None

    def _grant(self, identity: bytes, done: list[int]) -> None:
        credit = wire.Credit(worker=1, grant=1, lease_ms=LEASE_MS, eta_ms=0.0, done=done)
        self.socket.send_multipart([identity, *wire.pack(credit)])
        self.granted[identity] = time.monotonic()

    def close(self) -> None:
        self.socket.close(linger=0)


class PushedFrames:
    """The same for push dispatch: the PULL socket a feature worker binds then, read as slowly."""

    def __init__(self, context: zmq.Context, endpoint: str):
        self.socket = context.socket(zmq.PULL)
        self.socket.setsockopt(zmq.RCVHWM, 1)
        self.socket.setsockopt(zmq.RCVBUF, 65536)
        self.socket.bind(endpoint)

    def recv(self, timeout_ms: int) -> wire.Message | None:
        return wire.unpack(self.socket.recv_multipart()) if self.socket.poll(timeout_ms) else None

    def close(self) -> None:
        self.socket.close(linger=0)
