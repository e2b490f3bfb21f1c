"""Shared test helpers: loopback ports and endpoints, sockets that never hang a test."""

from __future__ import annotations

import time

import pytest
import zmq

from tests.support.pipeline import free_endpoints


def loopback_endpoints() -> dict[str, str]:
    return free_endpoints()


def endpoint_overrides(endpoints: dict[str, str]) -> list[str]:
    return [f"endpoints.{name}={value}" for name, value in endpoints.items()]


def recv_published(sub: zmq.Socket, timeout_s: float) -> list:
    """The next message on a SUB socket, or a test failure after `timeout_s` (never a hang)."""
    if not sub.poll(timeout_s * 1000):
        pytest.fail(f"no message within {timeout_s} s")
    return sub.recv_multipart()


def wait_until(predicate, timeout_s: float, interval_s: float = 0.05, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval_s)
    pytest.fail(f"{what} not reached within {timeout_s} s")


@pytest.fixture
def zmq_context():
    context = zmq.Context()
    yield context
    context.destroy(linger=0)
