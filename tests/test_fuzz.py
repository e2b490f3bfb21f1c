"""Malformed messages on every receiving socket, drawn by hypothesis and sent over real sockets.

Every malformed message is built broken (tests/support/garbage.py: a well-formed message with
one thing wrong, so the reason it must be dropped for is known without asking the parser).
First `wire.unpack` itself must refuse each one for that reason, and anything it accepts from
random input must survive a round trip. Then a real pipeline (`run.py up` with one synthetic
camera, `good`) runs while more than 10,000 of them go to the feature worker's frames socket
and the LSTM worker's features socket, and 2,000 more to a real `run.py subscribe`. Nothing
crashes; every message is dropped and counted under its reason, the totals match what was
sent, and the good stream's labels keep coming with its window intact. Messages above
`security.max_message_bytes` never reach the workers at all.
"""

from __future__ import annotations

import dataclasses
import queue
import subprocess
import sys
import threading
import time
from collections import Counter

import msgpack
import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from streamer.transport import wire
from tests.support.garbage import arbitrary_parts, broken, invalid, misrouted, published_invalid
from tests.support.pipeline import ROOT, RUN_PY, Listener, Pipeline, free_port, is_label, is_stats

BATCHES = 700  # hypothesis examples per worker socket, each a batch of 5 to 15 messages (~6,000 in all)
MAX_MESSAGE = 200_000  # security.max_message_bytes in this pipeline


def fast(examples: int) -> settings:
    """Many examples quickly: no deadline per example, no example database, no health checks."""
    return settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))


PROCESSES = {"frames": "features:0", "features": "lstm"}


# ------------------------------------------------------------------------------- the parser


@fast(2000)
@given(case=broken())
def test_unpack_refuses_each_broken_message_for_its_reason(case):
    parts, reason = case
    with pytest.raises(wire.WireError) as refused:
        wire.unpack(parts)
    assert refused.value.reason == reason, f"refused for {refused.value}, built broken for {reason!r}"


@pytest.mark.parametrize("socket_name", PROCESSES)
def test_misrouted_messages_are_well_formed(socket_name):
    """The wire format takes them: refusing them is the worker's job (checked by the flood below)."""
    @fast(300)
    @given(case=misrouted(socket_name))
    def check(case: tuple[list[bytes], str]) -> None:
        wire.unpack(case[0])

    check()


def _same(a: wire.Message, b: wire.Message) -> bool:
    """Equal messages; NaN equals NaN, and t_sent is left out (packing stamps the send time)."""
    if type(a) is not type(b):
        return False
    for item in dataclasses.fields(a):
        x, y = getattr(a, item.name), getattr(b, item.name)
        if isinstance(x, np.ndarray):
            if x.shape != y.shape or x.dtype != y.dtype or x.tobytes() != y.tobytes():
                return False
        elif item.name != "t_sent" and repr(x) != repr(y):
            return False
    return True


@fast(2000)
@given(parts=arbitrary_parts())
def test_whatever_unpack_accepts_survives_a_round_trip(parts):
    try:
        message = wire.unpack(parts)
    except wire.WireError:
        return
    again = wire.unpack([bytes(part) for part in wire.pack(message)])
    assert _same(message, again), f"{message!r} came back as {again!r}"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    with Pipeline(tmp_path_factory.mktemp("fuzz"), ["good=synthetic"],
                  [f"security.max_message_bytes={MAX_MESSAGE}"]) as pipeline, \
            Listener(pipeline.endpoints["labels"]) as listener:
        listener.wait_for(is_label("good", warming=False), 120, "warm label of the good stream", since=0,
                          pipeline=pipeline)
        yield pipeline, listener


def drop_counters(listener: Listener, process: str) -> Counter:
    """The process's dropped_<reason> counters from a stats message sent after now."""
    counters = listener.wait_for(is_stats(process), 10, f"{process} stats").message.counters
    return Counter({key.removeprefix("dropped_"): value for key, value in counters.items()
                    if key.startswith("dropped_")})


def flood(socket_name: str, endpoint: str, listener: Listener) -> Counter:
    """Send hypothesis-drawn malformed messages; returns how many were sent per drop reason."""
    context = zmq.Context()
    # A plain peer: blocking sends, so nothing is lost on our side (a DEALER for a feature worker's ROUTER).
    push = context.socket(zmq.DEALER if socket_name == "frames" else zmq.PUSH)
    push.connect(endpoint)
    sent: Counter = Counter()

    # Batches: hypothesis's cost is per example, so ten messages per example flood ~4x faster.
    @fast(BATCHES)
    @given(batch=st.lists(invalid(socket_name), min_size=5, max_size=15))
    def send_batch(batch: list[tuple[list[bytes], str]]) -> None:
        for parts, reason in batch:
            push.send_multipart(parts)
            sent[reason] += 1
        listener.pump(0)  # keep receiving the good stream's labels during the flood

    try:
        send_batch()
    finally:
        push.close(linger=5000)  # blocking until everything left
        context.term()
    return sent


def test_ten_thousand_malformed_messages_are_dropped_counted_and_the_good_stream_flows(live):
    pipeline, listener = live
    before = {name: drop_counters(listener, process) for name, process in PROCESSES.items()}
    started = time.monotonic()
    sent = {name: flood(name, pipeline.endpoints[name], listener) for name in PROCESSES}
    flooded = time.monotonic()
    total = sum(sum(counts.values()) for counts in sent.values())
    assert total >= 10_000

    for name, process in PROCESSES.items():
        expected = sent[name]

        def counted(message, process=process, name=name, expected=expected) -> bool:
            if not is_stats(process)(message):
                return False
            got = Counter({key.removeprefix("dropped_"): value for key, value in message.counters.items()
                           if key.startswith("dropped_")})
            return sum(got[reason] - before[name][reason] for reason in expected) >= sum(expected.values())

        stats = listener.wait_for(counted, 60, f"{process} counting {sum(expected.values())} drops", since=flooded)
        got = Counter({key.removeprefix("dropped_"): value for key, value in stats.message.counters.items()
                       if key.startswith("dropped_")})
        deltas = {reason: got[reason] - before[name][reason] for reason in expected}
        assert deltas == dict(expected), f"{process}: counted {deltas}, sent {dict(expected)}"
        print(f"\n{name} socket ({process}): sent {sum(expected.values())} malformed, counted "
              f"{sum(deltas.values())}: {dict(expected)}")

    good = listener.labels("good", started, flooded)
    assert len(good) >= (flooded - started) * 2, f"only {len(good)} good labels in {flooded - started:.0f} s of flood"
    assert not any(item.message.warming for item in good), "the good stream's window restarted"
    supervisor = listener.wait_for(is_stats("supervisor"), 10, "supervisor stats")
    assert supervisor.message.counters["restarts"] == 0, "a process crashed"
    pipeline.assert_running()
    print(f"flood of {total} messages took {flooded - started:.1f} s; {len(good)} good labels meanwhile")


def test_messages_above_the_size_limit_never_reach_a_worker(live):
    """A frame (features socket: a feature) too big for the model is dropped and counted when it
    arrives; one above security.max_message_bytes must not even arrive: ZeroMQ cuts the peer off."""
    pipeline, listener = live
    cases = {"frames": ("frame_size", lambda side: _frame(side), 300, 100),  # 270 kB vs 30 kB
             "features": ("feature_size", lambda dim: _feature(dim), 60_000, 5_000)}  # 240 kB vs 20 kB
    context = zmq.Context()
    try:
        for name, (reason, make, oversized, fitting) in cases.items():
            process = PROCESSES[name]
            before = drop_counters(listener, process)[reason]
            for size, copies in ((oversized, 3), (fitting, 2)):  # each on its own connection
                push = context.socket(zmq.DEALER if name == "frames" else zmq.PUSH)
                push.connect(pipeline.endpoints[name])
                for _ in range(copies):
                    parts = make(size)
                    assert (len(parts[1]) > MAX_MESSAGE) == (size == oversized)
                    push.send_multipart(parts)
                push.close(linger=2000)
            listener.wait_for(is_stats(process, lambda c, r=reason, b=before: c.get(f"dropped_{r}", 0) >= b + 2), 20,
                              f"{process} counting the two messages that fit")
            listener.pump(1.5)  # time for anything else to arrive
            after = drop_counters(listener, process)[reason]
            assert after - before == 2, f"{process}: {after - before} counted; the oversized ones got through"
        pipeline.assert_running()
    finally:
        context.destroy(linger=0)


def _frame(side: int) -> list[bytes]:
    image = bytes(side * side * 3)
    header = {"v": wire.SCHEMA_VERSION, "kind": wire.FRAME, "stream": "big", "seq": 0, "t_capture": 1.0,
              "t_sent": 1.0, "truth": None, "truth_since": -1, "stages": {}, "session": 1, "shape": [side, side, 3]}
    return [msgpack.packb(header), image]


def _feature(dim: int) -> list[bytes]:
    header = {"v": wire.SCHEMA_VERSION, "kind": wire.FEATURE, "stream": "big", "seq": 0, "t_capture": 1.0,
              "t_sent": 1.0, "truth": None, "truth_since": -1, "stages": {}, "session": 1, "dim": dim}
    return [msgpack.packb(header), bytes(dim * 4)]


# ------------------------------------------------------------------------------- subscribers

# A well-formed feature under a label topic: features travel PUSH sockets only, never PUB.
NEVER_PUBLISHED = [wire.label_topic("cam0")] + [bytes(part) for part in wire.pack(
    wire.Feature(stream="cam0", seq=0, t_capture=1.0, vector=np.zeros(4, np.float32)))]


@fast(1000)
@given(parts=published_invalid())
@example(parts=NEVER_PUBLISHED)
def test_unpack_published_refuses_garbage_with_a_wire_error(parts):
    with pytest.raises(wire.WireError):
        wire.unpack_published(parts)


def _label(stream: str, seq: int) -> list:
    return wire.pack_published(wire.Label(stream=stream, seq=seq, t_capture=time.time(), t_publish=time.time(),
                                          label="a", score=1.0, top_k=[("a", 1.0)], warming=False,
                                          frames_in_window=1, model_id="m", stages={}))


def test_a_subscriber_ignores_and_counts_garbage(tmp_path):
    """2,000 garbage messages to a real `run.py subscribe --json`: it survives and counts them all."""
    port = free_port()
    context = zmq.Context()
    pub = context.socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, 0)  # no drops on our side: the count must be exact
    pub.bind(f"tcp://127.0.0.1:{port}")
    process = subprocess.Popen([sys.executable, str(RUN_PY), "subscribe", "--json", "--set",
                                f"endpoints.labels=tcp://127.0.0.1:{port}"], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()

    def publish_until_printed(stream: str) -> None:
        deadline = time.monotonic() + 30
        for seq in range(10_000):
            if process.poll() is not None:
                pytest.fail(f"the subscriber died (exit {process.returncode}):\n{process.stderr.read()[-3000:]}")
            assert time.monotonic() < deadline, f"the subscriber printed no {stream!r} label in 30 s"
            pub.send_multipart(_label(stream, seq))
            try:
                while stream not in lines.get(timeout=0.2):
                    pass
                return
            except queue.Empty:
                continue

    sent = [0]

    @fast(200)
    @given(batch=st.lists(published_invalid(), min_size=8, max_size=15))  # at least 1,600 in all
    @example(batch=[NEVER_PUBLISHED])
    def send_garbage(batch: list[list[bytes]]) -> None:
        for parts in batch:
            pub.send_multipart(parts)
            sent[0] += 1

    try:
        publish_until_printed("hello")  # connected (the slow joiner is past)
        send_garbage()
        publish_until_printed("goodbye")  # everything before it has arrived
        assert process.poll() is None, "the subscriber crashed on garbage"
        process.terminate()
        _, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
        pub.close()
        context.term()
    assert process.returncode == 0, stderr
    assert f"{sent[0]} malformed messages ignored" in stderr, stderr
    assert sent[0] >= 1500
