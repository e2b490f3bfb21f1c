"""A feature worker's side of credit dispatch: who may send it frames, and how many.

Captures connect a DEALER to the worker's ROUTER and say hello (`wire.Hello`: the stream and how
many frames it could send at once). The worker keeps at most one batch of credits out
(`features.max_batch`), shared round the captures that want more, fewest held first: a capture
gets a second credit only once every other capture asking holds one, so every capture gets its
turn (zguide's load-balancing pattern; MediaPipe's FlowLimiter). A capture sends its newest
frame only against a credit, so frames wait in the capture, where a newer one replaces them,
instead of in socket queues, and a busy or slow worker is simply sent less.

Credits have a lease: one not used within `features.credit_lease_s` is taken back, so a capture
that went away strands no room here, and a capture never waits on a dead worker's credit (it
expires there too). A capture that has been silent for 5 leases is forgotten. Each credit
message also acknowledges the capture's frames whose features have left (`done`), so a file's
capture knows which frames it must send again if this worker dies; and carries the worker's
recent batch time (`eta_ms`), so a capture with credits from several workers prefers the faster.
"""

from __future__ import annotations

import secrets
from collections import deque
from dataclasses import dataclass, field

from configs.settings import ConfigError
from streamer.transport import wire

SILENT_LEASES = 5  # a peer (or, seen from a capture, a worker) silent this many leases is gone
ANSWER_WEIGHT = 0.2  # weight of the newest frame in the moving average of how long captures take to answer a credit (a stat)
MAX_DONE = 512  # acknowledgements held for one capture before they are sent without waiting for a credit


@dataclass
class Peer:
    stream: str
    want: int
    last_heard: float
    expiries: deque[float] = field(default_factory=deque)  # one per credit out, oldest first
    done: list[int] = field(default_factory=list)  # seqs finished since the last credit message
    answer: bool = True  # a hello waits for its answer (a credit message, even of 0)


class CreditLedger:
    def __init__(self, lease_s: float):
        if not lease_s > 0:
            raise ConfigError(f"features.credit_lease_s must be more than 0 seconds, got {lease_s}; "
                              f"the default is 1.0")
        self.lease_s = lease_s
        self.worker_id = secrets.randbits(60)
        self.peers: dict[bytes, Peer] = {}
        self._turn = 0  # where the next round of grants starts, so no capture is always first
        self.answer_s = 0.0  # moving average: a credit granted -> its frame here
        self.granted = self.used = self.expired = self.uncredited = self.forgotten = 0

    def hello(self, identity: bytes, hello: wire.Hello, now: float) -> None:
        peer = self.peers.get(identity)
        if peer is None:
            self.peers[identity] = Peer(hello.stream, hello.want, now)
            return
        peer.stream, peer.want, peer.last_heard, peer.answer = hello.stream, hello.want, now, True

    def frame(self, identity: bytes, now: float) -> None:
        """A frame arrived: it spends that capture's oldest credit (a capture that never said hello,
        pushing as before, or one whose credit had just expired here, is counted as uncredited)."""
        peer = self.peers.get(identity)
        if peer is None or not peer.expiries:
            self.uncredited += 1
            if peer is not None:
                peer.last_heard = now
            return
        answer = now - (peer.expiries.popleft() - self.lease_s)
        self.answer_s = answer if not self.used else (1 - ANSWER_WEIGHT) * self.answer_s + ANSWER_WEIGHT * answer
        peer.last_heard = now
        self.used += 1

    def finished(self, identity: bytes, seq: int) -> None:
        peer = self.peers.get(identity)
        if peer is not None:
            peer.done.append(seq)

    def outstanding(self) -> int:
        return sum(len(peer.expiries) for peer in self.peers.values())

    def expire(self, now: float) -> None:
        for identity, peer in list(self.peers.items()):
            while peer.expiries and peer.expiries[0] <= now:
                peer.expiries.popleft()
                self.expired += 1
            if now - peer.last_heard > SILENT_LEASES * self.lease_s:
                del self.peers[identity]
                self.forgotten += 1

    def messages(self, room: int, now: float, eta_ms: float) -> list[tuple[bytes, wire.Credit]]:
        """Credit messages to send now: up to `room` new credits shared round the captures (those
        holding fewest first), plus an answer to every hello and the acknowledgements that piled up."""
        grants: dict[bytes, int] = {}
        identities = list(self.peers)
        if identities:
            self._turn %= len(identities)
            identities = identities[self._turn:] + identities[:self._turn]
            self._turn += 1
        level = 0  # first every capture holding no credit, then those holding one, ...
        while room > 0:
            wanting = [identity for identity in identities
                       if len(self.peers[identity].expiries) < self.peers[identity].want]
            if not wanting:
                break
            for identity in wanting:
                peer = self.peers[identity]
                if room > 0 and len(peer.expiries) <= level:
                    peer.expiries.append(now + self.lease_s)
                    grants[identity] = grants.get(identity, 0) + 1
                    room -= 1
            level += 1
        self.granted += sum(grants.values())
        out = []
        for identity in identities:
            peer = self.peers[identity]
            grant = grants.get(identity, 0)
            if grant or peer.answer or len(peer.done) >= MAX_DONE:
                out.append((identity, wire.Credit(worker=self.worker_id, grant=grant, lease_ms=self.lease_s * 1000,
                                                  eta_ms=eta_ms, done=peer.done[:wire.MAX_ITEMS])))
                peer.done = peer.done[wire.MAX_ITEMS:]
                peer.answer = False
        return out

    def counters(self) -> dict[str, float]:
        return {"credits_granted": self.granted, "credits_used": self.used, "credits_expired": self.expired,
                "frames_uncredited": self.uncredited, "captures_forgotten": self.forgotten,
                "captures_asking": len(self.peers), "credit_answer_ms": 1000 * self.answer_s}
