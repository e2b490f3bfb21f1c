"""What the dashboard shows, as plain data: one card per stream, the event log, the process panel.

The subscriber thread feeds every message to `DashboardState.take`; each browser connection asks
`changes(seen)` for what changed since it last looked, at most `dashboard.updates_per_s` times a
second. Every card carries a version, so a browser gets each stream's newest state once per tick
however many labels arrived in between, and a slow browser simply gets fewer, newer snapshots:
nothing queues up for it, and the subscriber never waits for a browser.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from configs.settings import Dashboard
from streamer.apps.subscriber import is_settled, latency_ms
from streamer.transport import wire

CHART_POINTS = 12  # points of each card's p50/p99 latency chart over dashboard.latency_window_s
# Process counters that are depths of a queue (shown in the panel, exported as gauges).
QUEUE_COUNTERS = ("held_for_order", "ready_queue")
# Process counters that count frames, and what each says happened to them.
FRAME_COUNTERS = {"frames_read": "read", "frames_sent": "sent", "frames": "processed",
                  "labels": "labelled"}
# Drops counted under their own name rather than `dropped_<reason>`, and the reason to show them under.
OTHER_DROPS = {"previews_dropped": "preview"}
RESTART_PREFIX = "restarts_"  # the supervisor's per-process restart counters


@dataclass
class Card:
    stream: str
    version: int = 0
    label: wire.Label | None = None
    received: float = 0.0  # wall clock when the latest label arrived here
    labels: int = 0
    correct: int = 0  # settled labels that matched the source's ground truth
    judged: int = 0
    latencies: deque[tuple[float, float]] = field(default_factory=deque)  # (received, ms)
    source: str = ""
    ended: str | None = None  # the reason, once the stream ended
    preview: bytes | None = None
    preview_seq: int = -1
    previews: int = 0  # previews received, so the page reloads the thumbnail only when it changed
    chart: tuple[int, dict] = (-1, {})  # (second it was computed, latency_chart): at most once a second


@dataclass
class Event:
    id: int
    t: float
    stream: str
    text: str


class DashboardState:
    def __init__(self, settings: Dashboard, clock=time.time):
        self.settings = settings
        self.clock = clock
        self.lock = threading.Lock()
        self.cards: dict[str, Card] = {}
        self.events: deque[Event] = deque(maxlen=settings.event_log_size)
        self.stats: dict[str, dict[str, float]] = {}
        self.stats_version = 0
        self.malformed = 0
        self._version = 0
        self._event_id = 0

    # ----------------------------------------------------------------------------- feeding

    def take(self, message: wire.Message | None, received: float) -> None:
        """One message off the label socket (None: a malformed one, counted)."""
        with self.lock:
            if message is None:
                self.malformed += 1
            elif isinstance(message, wire.Label):
                self._label(message, received)
            elif isinstance(message, wire.Preview):
                card = self._card(message.stream)
                card.preview, card.preview_seq = message.jpeg, message.seq
                card.previews += 1
            elif isinstance(message, wire.StreamStart):
                card = self._card(message.stream)
                card.source, card.ended = message.source, None
                self._event(message.stream, f"started ({message.source}, {message.fps:g} fps)", message.t)
            elif isinstance(message, wire.StreamEnd):
                self._card(message.stream).ended = message.reason
                self._event(message.stream, f"ended ({message.reason})", message.t)
            elif isinstance(message, wire.Stats):
                self._stats(message)

    def _bump(self) -> int:
        self._version += 1
        return self._version

    def _card(self, stream: str) -> Card:
        card = self.cards.get(stream)
        if card is None:
            card = self.cards[stream] = Card(stream)
        card.version = self._bump()
        return card

    def _label(self, label: wire.Label, received: float) -> None:
        card = self._card(label.stream)
        card.label, card.received, card.ended = label, received, None
        card.labels += 1
        if is_settled(label):
            card.judged += 1
            card.correct += int(label.label == label.truth)
        card.latencies.append((received, latency_ms(label, received)))
        horizon = received - self.settings.latency_window_s
        while card.latencies and card.latencies[0][0] < horizon:
            card.latencies.popleft()

    def _event(self, stream: str, text: str, t: float) -> None:
        self._event_id += 1
        self.events.append(Event(self._event_id, t, stream, text))

    def _stats(self, stats: wire.Stats) -> None:
        previous = self.stats.get(stats.process, {})
        # Counters that only ever grow tell of something worth a line in the log when they do.
        if stats.process.startswith("capture:"):
            stream = stats.process.split(":", 1)[1]
            if stats.counters.get("reconnects", 0) > previous.get("reconnects", 0):
                self._event(stream, f"reconnecting (attempt {int(stats.counters['reconnects'])})", stats.t)
        if stats.process == "supervisor":
            for key, value in stats.counters.items():
                if key.startswith(RESTART_PREFIX) and value > previous.get(key, 0):
                    self._event(key[len(RESTART_PREFIX):], f"process restarted (restart #{int(value)})", stats.t)
        self.stats[stats.process] = stats.counters
        self.stats_version = self._bump()

    # ----------------------------------------------------------------------------- reading

    def changes(self, seen: dict) -> dict:
        """What changed since `seen` (a dict this call keeps up to date for one browser), as JSON data."""
        now = self.clock()
        with self.lock:
            cards = [card_json(card, now, self.settings.latency_window_s) for card in self.cards.values()
                     if card.version > seen.get(("card", card.stream), 0)]
            for card in self.cards.values():
                seen[("card", card.stream)] = card.version
            last_event = seen.get("event", 0)
            events = [{"id": e.id, "t": e.t, "stream": e.stream, "text": e.text}
                      for e in self.events if e.id > last_event]
            if self.events:
                seen["event"] = self.events[-1].id
            changed: dict = {}
            if "log_size" not in seen:  # a browser's first update says how many log lines to keep
                changed["log_size"] = seen["log_size"] = self.settings.event_log_size
            if self.stats_version > seen.get("stats", 0):
                seen["stats"] = self.stats_version
                changed["processes"] = process_rows(self.stats)
            if cards or "processes" in changed:
                changed["model"] = model_info(self)
        if cards:
            changed["cards"] = cards
        if events:
            changed["events"] = events
        return changed

    def preview(self, stream: str) -> bytes | None:
        with self.lock:
            card = self.cards.get(stream)
            return card.preview if card else None

    def live_streams(self) -> int:
        with self.lock:
            return sum(card.ended is None and card.label is not None for card in self.cards.values())


def card_json(card: Card, now: float, window_s: float) -> dict:
    label = card.label
    data = {"stream": card.stream, "source": card.source, "ended": card.ended, "labels": card.labels,
            "accuracy": card.correct / card.judged if card.judged else None, "judged": card.judged,
            "preview": card.previews if card.preview is not None else None, "label": None}
    if label is not None:
        data["label"] = {
            "label": label.label, "score": label.score, "top_k": [[name, p] for name, p in label.top_k],
            "warming": label.warming, "frames_in_window": label.frames_in_window, "seq": label.seq,
            "truth": label.truth, "model_id": label.model_id,
            "latency_ms": latency_ms(label, card.received),
        }
    if card.chart[0] != int(now):
        card.chart = (int(now), latency_chart(card.latencies, now, window_s))
    data.update(card.chart[1])
    return data


def latency_chart(latencies, now: float, window_s: float, points: int = CHART_POINTS) -> dict:
    """p50 and p99 over the whole window, and per slice of it (oldest first; None where a slice is empty)."""
    recent = np.array([(t, ms) for t, ms in latencies if now - window_s <= t <= now], dtype=np.float64).reshape(-1, 2)
    times, values = recent[:, 0], recent[:, 1]
    slices = np.minimum(((times - (now - window_s)) / window_s * points).astype(int), points - 1)
    chart: list[list[float] | None] = []
    for index in range(points):
        part = values[slices == index]
        chart.append([float(v) for v in np.percentile(part, [50, 99])] if part.size else None)
    summary = [float(v) for v in np.percentile(values, [50, 99])] if values.size else [None, None]
    return {"p50_ms": summary[0], "p99_ms": summary[1], "chart": chart}


def process_rows(stats: dict[str, dict[str, float]]) -> list[dict]:
    """One row per process: frames by what happened to them, drops by reason, queue depths, restarts."""
    restarts = {key[len(RESTART_PREFIX):]: value for key, value in stats.get("supervisor", {}).items()
                if key.startswith(RESTART_PREFIX)}
    rows = []
    for process in sorted(stats):
        if process == "supervisor":
            continue
        counters = stats[process]
        rows.append({
            "process": process,
            "frames": {what: counters[key] for key, what in FRAME_COUNTERS.items() if key in counters},
            "dropped": {**{key[len("dropped_"):]: value for key, value in counters.items()
                           if key.startswith("dropped_") and value},
                        **{reason: counters[key] for key, reason in OTHER_DROPS.items() if counters.get(key)}},
            "queues": {key: counters[key] for key in QUEUE_COUNTERS if key in counters},
            "restarts": restarts.get(process, 0),
            "backend": backends({process: counters}),
        })
    return rows


def backends(stats: dict[str, dict[str, float]]) -> list[str]:
    return sorted({key[len(wire.BACKEND_KEY):] for counters in stats.values() for key, value in counters.items()
                   if key.startswith(wire.BACKEND_KEY) and value})


def model_info(state: DashboardState) -> dict:
    """The model ids the labels name and the backends the feature workers run (caller holds the lock)."""
    return {"model_ids": sorted({card.label.model_id for card in state.cards.values() if card.label}),
            "backends": backends(state.stats)}
