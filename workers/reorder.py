"""Putting one stream's features back in order, and deciding when its window must restart.

With several feature workers, features of one stream can arrive out of order. Each stream's
features are held until the next expected sequence number arrives; a number still missing after
`wait_s` (or with too many held behind it) is a gap: the held features are released from the
next number on, and the window restarts, because the trained model never saw a skipped frame.
A new capture session (the capture restarted or reconnected, numbering from 0 again) also
restarts the window.

Nothing a peer sends can stop a stream's own features from being used again soon (anyone who can
reach the features port can send a feature): sessions are opaque, not ordered, so a forged one
only starts a new session, and the replaced one is refused for `wait_s` only (its stragglers),
then taken back when it goes on; and a sequence number more than a window away from the expected
one starts the numbering again there instead of making every later real number look stale.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from streamer.transport.wire import Feature


@dataclass
class Ready:
    feature: Feature
    restart: bool  # start the window again before this frame


MAX_REPLACED = 4  # replaced sessions remembered per stream (to drop their stragglers)


@dataclass
class StreamOrder:
    wait_s: float
    max_pending: int
    session: int | None = None
    expected: int = 0
    pending: dict[int, Feature] = field(default_factory=dict)
    waiting_since: float | None = None
    restart_next: bool = True
    started: bool = False  # a feature of this session was released: jumps are judged from `expected`
    gaps: int = 0
    stale: int = 0  # duplicates, or frames that came after their place was given up
    session_changes: int = 0
    seq_jumps: int = 0  # numbers more than a window away from the expected one
    replaced: dict[int, float] = field(default_factory=dict)  # session -> until when its stragglers are dropped

    def push(self, feature: Feature, now: float) -> list[Ready]:
        if feature.session != self.session:
            if now < self.replaced.get(feature.session, float("-inf")):
                self.stale += 1  # a straggler from a connection that has just been replaced
                return []
            if self.session is not None:
                self.session_changes += 1
                self.replaced[self.session] = now + self.wait_s
                while len(self.replaced) > MAX_REPLACED:
                    del self.replaced[next(iter(self.replaced))]
            self.replaced.pop(feature.session, None)
            # Captures number each session from 0. A worker that joins mid-stream waits wait_s for
            # frame 0, then counts a gap and starts from what it has.
            self.session, self.expected, self.pending = feature.session, 0, {}
            self.restart_next, self.waiting_since, self.started = True, None, False
        elif self.started and abs(feature.seq - self.expected) > self.max_pending:
            self.seq_jumps += 1
            self.expected, self.pending = feature.seq, {}
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
                self.restart_next, self.started = False, True
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
