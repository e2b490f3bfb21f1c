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
import socket
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
    curve_server = bind if server_curve is None else server_curve
    socket_class = zmq.Socket
    if security.curve and curve_server:
        from streamer.transport.security import ServerSocket  # keeps the ZAP authenticator alive while open

        socket_class = ServerSocket
    socket = context.socket(kind, socket_class=socket_class)
    try:
        _configure(socket, kind, bind=bind, security=security, hwm=hwm, curve_server=curve_server)
        for endpoint in split_endpoints(endpoints):
            _attach(socket, endpoint, bind=bind, security=security)
    except BaseException:
        socket.close()
        raise
    return socket


def _configure(socket: zmq.Socket, kind: int, *, bind: bool, security: Security, hwm: int | None,
               curve_server: bool) -> None:
    socket.setsockopt(zmq.LINGER, 0)  # never hang on exit with unsent messages
    if kind in (zmq.PULL, zmq.SUB, zmq.XSUB):
        # Per message part: a bigger one makes ZeroMQ drop the connection before allocating it.
        socket.setsockopt(zmq.MAXMSGSIZE, security.max_message_bytes)
    if kind == zmq.PUSH and not bind:
        # Queue only for peers that are really connected: while a worker is down its share of
        # frames is not parked in a dead pipe (to arrive stale later), the send fails and is counted.
        socket.setsockopt(zmq.IMMEDIATE, 1)
    if hwm is not None:
        sending = kind in (zmq.PUSH, zmq.PUB)
        if security.curve and not sending and hwm < 2:
            # libzmq 4.3.5 with a ZAP authenticator never delivers a message into a receive queue of
            # one (checked on loopback: 2 sent, 0 received; 2 and more work). Keep the latest-frame
            # intent as close as CURVE allows.
            hwm = 2
        socket.setsockopt(zmq.SNDHWM if sending else zmq.RCVHWM, hwm)
    if security.curve:
        from streamer.transport.security import apply_curve  # only needed when CURVE is on

        apply_curve(socket, security, server=curve_server)


def warn_if_exposed(endpoint: str, security: Security) -> bool:
    """Log a warning (and return True) when `endpoint` would be bound beyond loopback without CURVE."""
    if security.curve or is_loopback(endpoint):
        return False
    log.warning("binding %s beyond loopback WITHOUT authentication: anyone who can reach it can "
                "send or read data. Turn on CURVE: make keys with `python run.py keys`, then "
                "--set security.curve=true", endpoint)
    return True


def _attach(socket: zmq.Socket, endpoint: str, *, bind: bool, security: Security) -> None:
    if bind:
        bind_endpoint(socket, endpoint, security)
    else:
        socket.connect(endpoint)


def bind_endpoint(socket: zmq.Socket, endpoint: str, security: Security, setting: str = "endpoints.<name>") -> None:
    """Bind, warning when beyond loopback without CURVE; a port in use is an OSError naming `setting`."""
    warn_if_exposed(endpoint, security)
    try:
        socket.bind(endpoint)
    except zmq.ZMQError as error:
        raise OSError(f"cannot bind {endpoint}: {error}. Is another process using it? "
                      f"Pick another port with --set {setting}=...") from None


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


def free_port() -> int:
    """A loopback TCP port nobody listens on right now (the bench's own pipeline, tests)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def bind_problem(endpoint: str) -> str | None:
    """Why `endpoint` cannot be bound now (another process holds it), or None when it can.

    The probe must never be reachable. A ZeroMQ socket bound as a probe accepts connections, and a
    peer of the wrong kind that reaches it (a dashboard's SUB meeting the probe) fails its
    handshake; ZeroMQ treats that as a protocol error and never retries the connection, so the
    dashboard would stay deaf once the real publisher binds. So TCP is probed with a plain socket
    that binds but never listens, and IPC by connecting (binding would take the path over).
    """
    parsed = urlparse(endpoint)
    if parsed.scheme == "ipc":
        return _ipc_problem(endpoint[len("ipc://"):])
    if parsed.scheme != "tcp":
        return None  # inproc lives inside one process: no other process can hold it
    host = parsed.hostname
    try:
        found = socket.getaddrinfo(None if host in (None, "*") else host, parsed.port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except (socket.gaierror, ValueError):
        return None  # an interface name (tcp://eth0:5555), which only ZeroMQ resolves: the bind will tell
    family, kind, protocol, _, address = found[0]
    with socket.socket(family, kind, protocol) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as ZeroMQ binds: TIME_WAIT is no obstacle
        try:
            probe.bind(address)
        except OSError as error:
            return error.strerror or str(error)
    return None


def _ipc_problem(path: str) -> str | None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        if probe.connect_ex(path) == 0:
            return "a process is listening on this path"
    return None
