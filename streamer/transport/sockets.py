"""Making ZeroMQ sockets the same way everywhere: endpoints, limits, linger, and CURVE security.

An endpoint is one string per socket (`tcp://127.0.0.1:5555`); a comma-separated list means
"connect to each" (a capture pushing to several feature workers; with credit dispatch a capture
makes one DEALER per worker instead, so it knows whose credit it spends). Every receiving socket gets a
maximum message size, so a peer that declares a huge message is disconnected instead of
exhausting memory. Binding anywhere but loopback without CURVE prints a warning.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import random
import select
import signal
import socket
import threading
from pathlib import Path
from urllib.parse import urlparse

import zmq

from configs.settings import ActionableError, Security

log = logging.getLogger(__name__)

HARD_EXIT_S = 10.0  # after the first SIGINT/SIGTERM a process has this long to stop before the kernel ends it


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


def poll_ms(seconds: float) -> int:
    """A ZeroMQ poll timeout for `seconds`, rounded up: pyzmq truncates a float to whole
    milliseconds, so the last millisecond of every wait would be a busy loop of poll(0)."""
    return max(0, math.ceil(seconds * 1000))


def make_socket(context: zmq.Context, kind: int, endpoints: str, *, bind: bool, security: Security,
                hwm: int | None = None, server_curve: bool | None = None, max_message_bytes: int | None = None,
                setting: str = "endpoints.<name>") -> zmq.Socket:
    """A socket bound or connected to `endpoints`, with limits and (when configured) CURVE.

    `server_curve`: which side holds the CURVE server role; by default the binding side.
    `max_message_bytes`: largest message part received (default: `security.max_label_message_bytes`
    for a subscriber, `security.max_message_bytes` for any other receiving socket).
    `setting`: the config key of `endpoints`, named when a port is taken.
    """
    curve_server = bind if server_curve is None else server_curve
    socket_class = zmq.Socket
    if security.curve and curve_server:
        from streamer.transport.security import ServerSocket  # keeps the ZAP authenticator alive while open

        socket_class = ServerSocket
    socket = context.socket(kind, socket_class=socket_class)
    try:
        _configure(socket, kind, bind=bind, security=security, hwm=hwm, curve_server=curve_server,
                   max_message_bytes=max_message_bytes)
        for endpoint in split_endpoints(endpoints):
            if bind:
                bind_endpoint(socket, endpoint, security, setting)
            else:
                socket.connect(endpoint)
    except BaseException:
        socket.close()
        raise
    return socket


def _configure(socket: zmq.Socket, kind: int, *, bind: bool, security: Security, hwm: int | None,
               curve_server: bool, max_message_bytes: int | None) -> None:
    socket.setsockopt(zmq.LINGER, 0)  # never hang on exit with unsent messages
    if kind in (zmq.PULL, zmq.SUB, zmq.XSUB, zmq.ROUTER, zmq.DEALER):
        if max_message_bytes is None:
            subscriber = kind in (zmq.SUB, zmq.XSUB)
            max_message_bytes = security.max_label_message_bytes if subscriber else security.max_message_bytes
        # Per message part: a bigger one makes ZeroMQ drop the connection before allocating it.
        socket.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
    if kind in (zmq.PUSH, zmq.DEALER) and not bind:
        # Queue only for peers that are really connected: while a worker is down its share of
        # frames is not parked in a dead pipe (to arrive stale later), the send fails and is counted.
        socket.setsockopt(zmq.IMMEDIATE, 1)
    if hwm is not None:
        sending = kind in (zmq.PUSH, zmq.PUB, zmq.DEALER)  # a capture's DEALER: frames out, credits in
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


class PortInUseError(ActionableError, OSError):
    """An endpoint this process must bind cannot be bound (another process holds it)."""


def bind_endpoint(socket: zmq.Socket, endpoint: str, security: Security, setting: str = "endpoints.<name>") -> None:
    """Bind, warning when beyond loopback without CURVE; a port in use is a PortInUseError naming `setting`."""
    warn_if_exposed(endpoint, security)
    try:
        socket.bind(endpoint)
    except zmq.ZMQError as error:
        raise PortInUseError(f"cannot bind {endpoint}: {error}. Is another process using it? "
                             f"Pick another port with --set {setting}=tcp://127.0.0.1:PORT") from None


class StopFlag:
    """Set by SIGINT or SIGTERM, so Ctrl-C and `kill` take the same shutdown path, and that path ends.

    The signal handler only sets a flag and writes a byte to a pipe (which wakes every `wait`):
    it takes no lock, so it cannot deadlock with the code it interrupts, even when a second signal
    arrives while the first is being handled (a `threading.Event` did: its `set()` waits for the
    lock the interrupted `wait()` holds). A second signal exits at once, and `hard_exit_s` after
    the first the kernel ends the process (SIGALRM, default action) whatever it is stuck in.
    """

    def __init__(self, hard_exit_s: float = HARD_EXIT_S, signals: bool = True) -> None:
        self._stopped = False
        self._signalled = False
        self._hard_exit_s = hard_exit_s
        self._reader, self._writer = os.pipe()
        for fd in (self._reader, self._writer):
            os.set_blocking(fd, False)
        if signals and threading.current_thread() is threading.main_thread():  # signals=False: set() only
            signal.signal(signal.SIGINT, self._handle)
            signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame) -> None:
        if self._signalled:  # asked twice: leave now
            os.write(2, f"{signal.Signals(signum).name} again: exiting at once\n".encode())
            os._exit(128 + signum)
        self._signalled = True
        if self._hard_exit_s > 0:
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.setitimer(signal.ITIMER_REAL, self._hard_exit_s)
        self.set()

    def set(self) -> None:
        self._stopped = True
        try:
            os.write(self._writer, b"\0")
        except (BlockingIOError, OSError):
            pass  # the pipe already holds a byte (or is closed): waiters wake anyway

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`, returning early (True) once stopped. Safe from any thread."""
        if not self._stopped:
            poller = select.poll()  # one per call: a poll object must not be shared between threads
            poller.register(self._reader, select.POLLIN)
            poller.poll(max(0.0, seconds) * 1000)
        return self._stopped

    def fileno(self) -> int:
        """Readable once stopped (the byte is never drained), for a loop's poller."""
        return self._reader

    def __bool__(self) -> bool:
        return self._stopped

    def __del__(self) -> None:
        for fd in (getattr(self, "_reader", None), getattr(self, "_writer", None)):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass


LOWEST_FREE_PORT = 10_000  # free_ports picks from here to the start of the kernel's ephemeral range


def free_ports(count: int) -> list[int]:
    """`count` different loopback TCP ports nobody listens on right now (the bench's own pipeline, a
    cluster cell's, tests), below the kernel's ephemeral range. A port from that range (what binding
    port 0 gives) can be taken before its server binds it by the local end of an outgoing connection,
    even one to that very port (TCP self-connect): a capture retrying every 100 ms to reach a feature
    worker that is still starting can take its port, and the worker then cannot bind it."""
    low = _ephemeral_range_start()
    ports: list[int] = []
    for port in random.sample(range(LOWEST_FREE_PORT, low), min(low - LOWEST_FREE_PORT, 50 * count + 100)):
        if bind_problem(f"tcp://127.0.0.1:{port}") is None:
            ports.append(port)
        if len(ports) == count:
            return ports
    raise ActionableError(f"no {count} free loopback TCP ports between {LOWEST_FREE_PORT} and {low}; "
                          f"set the endpoints (endpoints.*) to ports you know are free")


def free_port() -> int:
    """One port as `free_ports` gives them."""
    return free_ports(1)[0]


def _ephemeral_range_start() -> int:
    try:  # Linux; elsewhere IANA's dynamic range
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 49152


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
