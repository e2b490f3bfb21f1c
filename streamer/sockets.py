"""Making ZeroMQ sockets the same way everywhere: endpoints, limits, linger, and CURVE security.

An endpoint is one string per socket (`tcp://127.0.0.1:5555`); a comma-separated list means
"connect to each" (a capture pushing to several feature workers). Every receiving socket gets a
maximum message size, so a peer that declares a huge message is disconnected instead of
exhausting memory. Binding anywhere but loopback without CURVE prints a warning.
"""

from __future__ import annotations

import ipaddress
import logging
import signal
import threading
from urllib.parse import urlparse

import zmq

from configs.settings import Security

log = logging.getLogger(__name__)


def split_endpoints(endpoints: str) -> list[str]:
    return [e.strip() for e in endpoints.split(",") if e.strip()]


def is_loopback(endpoint: str) -> bool:
    parsed = urlparse(endpoint)
    if parsed.scheme in ("ipc", "inproc"):
        return True
    host = parsed.hostname or ""
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # an interface name or a wildcard such as '*'


def make_socket(context: zmq.Context, kind: int, endpoints: str, *, bind: bool, security: Security,
                hwm: int | None = None, server_curve: bool | None = None) -> zmq.Socket:
    """A socket bound or connected to `endpoints`, with limits and (when configured) CURVE.

    `server_curve`: which side holds the CURVE server role; by default the binding side.
    """
    socket = context.socket(kind)
    socket.setsockopt(zmq.LINGER, 0)  # never hang on exit with unsent messages
    if kind in (zmq.PULL, zmq.SUB, zmq.XSUB):
        socket.setsockopt(zmq.MAXMSGSIZE, security.max_message_bytes)
    if hwm is not None:
        socket.setsockopt(zmq.SNDHWM if kind in (zmq.PUSH, zmq.PUB) else zmq.RCVHWM, hwm)
    if security.curve:
        from streamer.security import apply_curve  # only needed when CURVE is on

        apply_curve(socket, security, server=bind if server_curve is None else server_curve)
    for endpoint in split_endpoints(endpoints):
        if bind:
            if not security.curve and not is_loopback(endpoint):
                log.warning("binding %s beyond loopback WITHOUT authentication: anyone who can reach it can "
                            "send or read data. Turn on CURVE with --set security.curve=true (keys: run.py keys)",
                            endpoint)
            try:
                socket.bind(endpoint)
            except zmq.ZMQError as error:
                socket.close()
                raise OSError(f"cannot bind {endpoint}: {error}. Is another process using it? "
                              f"Pick another port with --set endpoints.<name>=...") from None
        else:
            socket.connect(endpoint)
    return socket


class StopFlag:
    """Set by SIGINT or SIGTERM, so Ctrl-C and `kill` take the same shutdown path."""

    def __init__(self) -> None:
        self._event = threading.Event()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._handle)
            signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame) -> None:
        self._event.set()

    def set(self) -> None:
        self._event.set()

    def wait(self, seconds: float) -> bool:
        return self._event.wait(seconds)

    def __bool__(self) -> bool:
        return self._event.is_set()
