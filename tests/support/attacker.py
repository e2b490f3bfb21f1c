"""A hostile peer: a separate process that reaches the workers' ports on loopback and lies.

`python -m tests.support.attacker FEATURES_ENDPOINT FRAMES_ENDPOINT VICTIM` sends, in this order:
- forged features of the victim stream, each with a session of its own and a huge seq;
- forged stream ends of the victim (a guessed session) and of streams that do not exist;
- forged stats: process names that would forge topics, or that claim to be the LSTM worker;
- NaN and infinity in timestamps, counters and a stream start, and frames with a NaN timestamp;
- headers nested 30,000 deep, maps with 30,000 entries, a 48 kB header, and a 4 MB header on
  a connection of its own (above the features socket's size limit: ZeroMQ cuts it off unread);
- features of 100,000 different stream names.
It prints one JSON object: how many of each forgery it sent (the reason the worker must count them
under, as key), so the test can compare with the workers' drop counters.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time

import msgpack
import numpy as np
import zmq

from streamer.transport import wire

FORGED = 200  # of each small forgery
FLOOD_STREAMS = 100_000
DIM = 512


def header(kind: str, **fields) -> dict:
    return {"v": wire.SCHEMA_VERSION, "kind": kind, **fields}


def feature_header(stream: str, seq: int, session: int, t_capture: float = 0.0) -> dict:
    return header(wire.FEATURE, stream=stream, seq=seq, t_capture=t_capture or time.time(), t_sent=time.time(),
                  truth=None, truth_since=-1, stages={}, session=session, dim=DIM)


def send(socket: zmq.Socket, head: dict, buffer: bytes | None = None) -> None:
    parts = [msgpack.packb(head, use_bin_type=True)]
    if buffer is not None:
        parts.append(buffer)
    socket.send_multipart(parts)


def attack(features: str, frames: str, victim: str) -> dict[str, int]:
    context = zmq.Context()
    push = context.socket(zmq.PUSH)
    push.connect(features)
    vector = np.zeros(DIM, np.float32).tobytes()
    sent: dict[str, int] = {}
    rng = random.Random(0)

    for _ in range(FORGED):  # sessions: each a new one, with a seq near the top of what the wire allows
        send(push, feature_header(victim, seq=2**61 + rng.randrange(1000), session=rng.randrange(1, 2**61)), vector)
    sent["session_changes"] = FORGED

    for _ in range(FORGED):
        send(push, header(wire.STREAM_END, stream=victim, reason="stopped", t=time.time(),
                          session=rng.randrange(1, 2**61)))
    sent["end_session"] = FORGED
    for index in range(FORGED):
        send(push, header(wire.STREAM_END, stream=f"ghost{index}", reason="stopped", t=time.time(), session=1))
    sent["end_unknown"] = FORGED

    for index in range(FORGED):
        process = ["lstm/../", "lstm", "a b", "x\n", "-flag", "stats/lstm/"][index % 6]
        send(push, header(wire.STATS, process=process, t=time.time(), counters={"labels": 1e9}))
    sent["process"] = FORGED

    for index in range(FORGED):
        bad = [math.nan, math.inf, -math.inf][index % 3]
        choice = index % 4
        if choice == 0:
            send(push, feature_header(victim, seq=0, session=1, t_capture=bad), vector)
        elif choice == 1:
            send(push, header(wire.STATS, process="capture:evil", t=time.time(), counters={"frames_sent": bad}))
        elif choice == 2:
            send(push, header(wire.STREAM_START, stream="evil", source="x", fps=bad, width=1, height=1, t=1.0))
        else:
            send(push, header(wire.STATS, process="capture:evil", t=bad, counters={}))
    sent["not_finite"] = FORGED

    deep = b"\x91" * 30_000 + b"\x90"  # [[[[...]]]]: msgpack refuses the depth
    wide = b"\xdd" + (30_000).to_bytes(4, "big") + b"\x80" * 30_000  # 30,000 empty maps: above max_array_len
    for index in range(FORGED):
        push.send_multipart([deep if index % 2 else wide])
    sent["undecodable"] = FORGED
    for _ in range(FORGED):
        push.send_multipart([msgpack.packb(header(wire.STATS, process="p", t=1.0, counters={}, pad="x" * 48_000))])
    sent["header_size"] = FORGED

    huge = context.socket(zmq.PUSH)  # above the features socket's limit: the worker never reads it
    huge.connect(features)
    huge.send_multipart([b"\xdd" + (4_000_000).to_bytes(4, "big") + b"\x80" * 4_000_000])
    huge.close(linger=2000)

    frames_push = context.socket(zmq.DEALER)  # the feature worker's frames socket is a ROUTER
    frames_push.connect(frames)
    for seq in range(20):
        frames_push.send_multipart([msgpack.packb(header(
            wire.FRAME, stream="evil", seq=seq, t_capture=math.nan, t_sent=1.0, truth=None, truth_since=-1, stages={},
            session=1, shape=[64, 64, 3])), bytes(64 * 64 * 3)])
    sent["frames_not_finite"] = 20
    frames_push.close(linger=5000)

    for index in range(FLOOD_STREAMS):
        send(push, feature_header(f"flood{index}", seq=0, session=1), vector)
    sent["flood_streams"] = FLOOD_STREAMS
    push.close(linger=30_000)
    context.term()
    return sent


if __name__ == "__main__":
    print(json.dumps(attack(*sys.argv[1:4])), flush=True)
