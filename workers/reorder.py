"""Putting one stream's features back in order, and deciding when its window must restart.

With several feature workers, features of one stream can arrive out of order. Each stream's
features are held until the next expected sequence number arrives; a number still missing after
`wait_s` (or with too many held behind it) is a gap: the held features are released from the
next number on, and the window restarts, because the trained model never saw a skipped frame.
A new capture session (the capture restarted or reconnected, numbering from 0 again) also
restarts the window.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from streamer.transport.wire import Feature


@dataclass
class Ready:
    feature: Feature
    restart: bool  # start the window again before this frame


@dataclass
class StreamOrder:
    wait_s: float
    max_pending: int
    session: int | None = None
    expected: int = 0
    pending: dict[int, Feature] = field(default_factory=dict)
    waiting_since: float | None = None
    restart_next: bool = True
    gaps: int = 0
    stale: int = 0  # duplicates, or frames that came after their place was given up

    def push(self, feature: Feature, now: float) -> list[Ready]:
        if feature.session != self.session:
            if self.session is not None and feature.session < self.session:
                self.stale += 1  # a straggler from a connection that has since been replaced
                return []
            # Captures number each session from 0. A worker that joins mid-stream waits wait_s for
            # frame 0, then counts a gap and starts from what it has.
            self.session, self.expected, self.pending = feature.session, 0, {}
            self.restart_next, self.waiting_since = True, None
        if feature.seq < self.expected or feature.seq in self.pending:
            self.stale += 1
            return []
        self.pending[feature.seq] = feature
        return self.release(now)

    def release(self, now: float) -> list[Ready]:
        """Features now in order; also called on a timer so a gap is noticed without new input."""
        ready = []
        while True:
            while self.expected in self.pending:
                ready.append(Ready(self.pending.pop(self.expected), self.restart_next))
                self.restart_next = False
                self.expected += 1
            if not self.pending:
                self.waiting_since = None
                return ready
            if self.waiting_since is None:
                self.waiting_since = now
            if now - self.waiting_since < self.wait_s and len(self.pending) <= self.max_pending:
                return ready
            self.gaps += 1
            self.expected = min(self.pending)
            self.restart_next, self.waiting_since = True, None

    def next_deadline(self) -> float | None:
        return None if self.waiting_since is None else self.waiting_since + self.wait_s
