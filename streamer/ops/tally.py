"""What `run.py up` sees of its own pipeline on the labels endpoint, like any dashboard: when the
first label left (the "ready" line), and per stream the frames, labels, drops by reason and
latency that the summary shows when it stops. `summary()` is pure, so it is tested with a string
console."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
from rich.markup import escape
from rich.table import Table

from streamer.transport import wire

# Capture counters that are frames lost, with the words the summary uses for them.
CAPTURE_DROPS = {"dropped_stale": "stale", "send_failures": "send failed"}
# Latencies kept per stream for the summary's percentiles: the newest ones, so an `up` that runs for
# days does not grow (100,000 labels is about an hour of a 30 fps camera).
LATENCY_SAMPLES = 100_000


@dataclass
class StreamTally:
    labels: int = 0
    # capture -> label received by `up`, the newest LATENCY_SAMPLES
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))
    capture: dict[str, float] = field(default_factory=dict)  # the capture's latest counters
    ended: str | None = None  # the reason of its last stream_end, None while live


@dataclass
class Tally:
    streams: dict[str, StreamTally] = field(default_factory=dict)
    workers: dict[str, dict[str, float]] = field(default_factory=dict)  # latest counters of each worker
    first_label_at: float | None = None
    malformed: int = 0

    def stream(self, name: str) -> StreamTally:
        return self.streams.setdefault(name, StreamTally())

    def take(self, message: wire.Message | None, received: float) -> None:
        """One message off the labels endpoint (None: a malformed one)."""
        if message is None:
            self.malformed += 1
        elif isinstance(message, wire.Label):
            item = self.stream(message.stream)
            item.labels += 1
            item.latencies_ms.append((received - message.t_capture) * 1000)
            item.ended = None
            if self.first_label_at is None:
                self.first_label_at = received
        elif isinstance(message, wire.StreamEnd):
            self.stream(message.stream).ended = message.reason
        elif isinstance(message, wire.Stats) and message.process.startswith("capture:"):
            self.stream(message.process.removeprefix("capture:")).capture = dict(message.counters)
        elif isinstance(message, wire.Stats) and message.process != "supervisor":
            self.workers[message.process] = dict(message.counters)

    def summary(self, title: str) -> Table:
        """Per stream: frames read and sent, labels, drops by reason, latency p50/p99."""
        table = Table(title=title)
        for column in ("stream", "frames", "labels", "dropped", "p50 ms", "p99 ms"):
            table.add_column(column, justify="left" if column in ("stream", "dropped") else "right",
                             overflow="fold")
        for name in sorted(self.streams):
            item = self.streams[name]
            capture = item.capture
            frames = f"{capture.get('frames_read', 0):.0f} read, {capture.get('frames_sent', 0):.0f} sent"
            p50, p99 = np.percentile(item.latencies_ms, [50, 99]) if item.latencies_ms else (None, None)
            table.add_row(escape(name), frames if capture else "-", str(item.labels),
                          _drops({words: capture.get(key, 0) for key, words in CAPTURE_DROPS.items()}),
                          "-" if p50 is None else f"{p50:.1f}", "-" if p99 is None else f"{p99:.1f}")
        workers = "; ".join(f"{escape(name)} {_drops(_by_reason(counters))}"
                            for name, counters in sorted(self.workers.items()))
        notes = ["frames: read from the source / sent to the feature workers (counters of the capture's "
                 "last report); dropped: frames the capture replaced with a newer one (stale) or could "
                 "not send; latency: camera frame -> label received"]
        if workers:
            notes.append(f"dropped messages in the workers: {workers}")
        if self.first_label_at is None:
            notes.append("no label arrived: the models may still have been loading (`up` says 'ready' when the "
                         "first label leaves), or see the warnings above")
        if self.malformed:
            notes.append(f"{self.malformed} malformed messages on the labels endpoint")
        table.caption = "\n".join(notes)
        return table


def _by_reason(counters: dict[str, float]) -> dict[str, float]:
    return {key.removeprefix("dropped_"): value for key, value in counters.items() if key.startswith("dropped_")}


def _drops(by_reason: dict[str, float]) -> str:
    found = {reason: count for reason, count in by_reason.items() if count}
    return ", ".join(f"{count:.0f} {escape(reason)}" for reason, count in sorted(found.items())) or "none"
