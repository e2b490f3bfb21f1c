"""Hypothesis strategies for messages no receiving socket may accept, and the reason each is dropped.

`malformed(socket)` draws multipart messages (lists of bytes) for the feature worker's frames
socket ("frames") or the LSTM worker's features socket ("features"): random bytes, headers that
are not maps, wrong schema versions, unknown kinds, missing fields, wrong types, huge or broken
shapes, truncated buffers, invalid stream names, wrong part counts, and well-formed messages
that do not belong on that socket. `drop_reason(socket, parts)` says which drop counter the
worker must bump, or None for a message the worker would accept (those are not sent: they are
not garbage). It asks `streamer.transport.wire` itself, plus the two checks each worker adds.
"""

from __future__ import annotations

import msgpack
from hypothesis import strategies as st

from streamer.transport import wire

FRAME_SIDE = 64  # the tests' capture.crop: the only frame size the feature worker takes
FEATURE_DIM = 512  # what the LSTM worker takes
BUFFER_LIMIT = 20_000  # every generated part stays far below security.max_message_bytes

_int = st.integers(-2**63, 2**64 - 1)  # what msgpack can carry
_stream = st.from_regex(r"[A-Za-z0-9_.:-]{1,12}", fullmatch=True)
_bad_stream = st.one_of(st.just(""), st.text(max_size=80).filter(lambda s: not wire.STREAM_NAME.match(s)),
                        _int, st.none(), st.binary(max_size=8))
_anything = st.one_of(st.none(), st.booleans(), _int, st.floats(allow_nan=True), st.text(max_size=20),
                      st.binary(max_size=20), st.lists(_int, max_size=4),
                      st.dictionaries(st.text(max_size=5), _int, max_size=3))


def _common(kind: str, stream: str) -> dict:
    return {"v": wire.SCHEMA_VERSION, "kind": kind, "stream": stream, "seq": 7, "t_capture": 1.0, "t_sent": 1.0,
            "truth": None, "truth_since": -1, "stages": {}, "session": 1}


@st.composite
def _valid_header(draw, kind: str | None = None) -> dict:
    kind = kind or draw(st.sampled_from(wire.KINDS))
    stream = draw(_stream)
    if kind == wire.FRAME:
        side = draw(st.integers(1, 80))
        return _common(kind, stream) | {"shape": [side, draw(st.integers(1, 80)), 3]}
    if kind == wire.FEATURE:
        return _common(kind, stream) | {"dim": draw(st.integers(1, 2048))}
    if kind == wire.LABEL:
        return {"v": 1, "kind": kind, "stream": stream, "seq": 1, "t_capture": 1.0, "t_publish": 1.0, "label": "a",
                "score": 0.5, "top_k": [["a", 0.5]], "warming": False, "frames_in_window": 1, "model_id": "m",
                "stages": {}, "truth": None, "truth_since": -1}
    if kind == wire.STATS:
        return {"v": 1, "kind": kind, "process": "p", "t": 1.0, "counters": {"x": 1}}
    if kind == wire.STREAM_START:
        return {"v": 1, "kind": kind, "stream": stream, "source": "s", "fps": 1.0, "width": 1, "height": 1, "t": 1.0}
    return {"v": 1, "kind": kind, "stream": stream, "reason": "r", "t": 1.0}


def _buffer_for(header: dict) -> bytes | None:
    if header.get("kind") == wire.FRAME and isinstance(header.get("shape"), list):
        try:
            return bytes(min(BUFFER_LIMIT, int(header["shape"][0]) * int(header["shape"][1]) * 3))
        except (TypeError, ValueError, IndexError):
            return bytes(16)
    if header.get("kind") == wire.FEATURE and isinstance(header.get("dim"), int):
        return bytes(min(BUFFER_LIMIT, max(0, header["dim"]) * 4))
    return None


def _parts(header: dict, buffer: bytes | None) -> list[bytes]:
    packed = msgpack.packb(header, use_bin_type=True)
    return [packed] if buffer is None else [packed, buffer]


@st.composite
def _mutated(draw) -> list[bytes]:
    """A well-formed message with one thing wrong."""
    header = draw(_valid_header())
    mutation = draw(st.sampled_from(["version", "kind", "missing", "type", "stream", "shape", "truncate",
                                     "parts", "extra_part", "nan"]))
    buffer = _buffer_for(header)
    if mutation == "version":
        header["v"] = draw(st.one_of(_int.filter(lambda v: v != wire.SCHEMA_VERSION), _anything))
    elif mutation == "kind":
        header["kind"] = draw(st.one_of(st.text(max_size=12).filter(lambda k: k not in wire.KINDS), _anything))
    elif mutation == "missing":
        del header[draw(st.sampled_from(sorted(header)))]
    elif mutation == "type":
        header[draw(st.sampled_from(sorted(header)))] = draw(_anything)
    elif mutation == "stream":
        header["stream"] = draw(_bad_stream)
    elif mutation == "shape":  # huge, negative, flat or non-RGB declared shapes
        header["kind"], buffer = wire.FRAME, bytes(draw(st.integers(0, 64)))
        header["shape"] = draw(st.one_of(
            st.lists(st.integers(wire.MAX_FRAME_SIDE + 1, 2**40), min_size=3, max_size=3),
            st.lists(st.integers(-2**31, 0), min_size=3, max_size=3),
            st.lists(st.integers(1, 100), max_size=5).filter(lambda s: len(s) != 3 or s[2] != 3),
            st.tuples(st.integers(1, wire.MAX_FRAME_SIDE), st.integers(1, wire.MAX_FRAME_SIDE), st.just(3))
            .map(list)))  # a legal shape whose buffer does not match it
    elif mutation == "truncate" and buffer:
        buffer = buffer[: draw(st.integers(0, len(buffer) - 1))]
    elif mutation == "parts":  # the buffer missing, or a buffer where none belongs
        buffer = None if buffer is not None else draw(st.binary(max_size=32))
    elif mutation == "extra_part":
        return _parts(header, buffer if buffer is not None else b"") + [draw(st.binary(max_size=32))]
    elif mutation == "nan" and header["kind"] == wire.FEATURE and buffer:
        buffer = b"\x00\x00\xc0\x7f" * (len(buffer) // 4)  # NaN floats
    return _parts(header, buffer)


_random_parts = st.lists(st.binary(max_size=200), min_size=1, max_size=4)
_not_a_map = st.one_of(_int, st.text(max_size=20), st.lists(_int, max_size=5), st.none(),
                       st.floats()).map(lambda value: [msgpack.packb(value)])
_junk_map = st.dictionaries(st.text(max_size=8), _anything, max_size=6).map(lambda d: [msgpack.packb(d)])


def _misrouted(socket: str):
    """Well-formed messages the given socket must still refuse."""
    if socket == "frames":  # frames the model cannot take, and messages meant for other sockets
        wrong_size = _valid_header(wire.FRAME).filter(lambda h: h["shape"][:2] != [FRAME_SIDE, FRAME_SIDE])
        other = st.sampled_from([wire.FEATURE, wire.LABEL]).flatmap(_valid_header)
        return st.one_of(wrong_size, other).map(lambda h: _parts(h, _buffer_for(h)))
    wrong_dim = _valid_header(wire.FEATURE).filter(lambda h: h["dim"] != FEATURE_DIM)
    other = st.sampled_from([wire.FRAME, wire.LABEL]).flatmap(_valid_header)
    return st.one_of(wrong_dim, other).map(lambda h: _parts(h, _buffer_for(h)))


def malformed(socket: str):
    return st.one_of(_random_parts, _not_a_map, _junk_map, _mutated(), _misrouted(socket))


def drop_reason(socket: str, parts: list[bytes]) -> str | None:
    """The drop counter a worker bumps for this message, or None when it would accept it."""
    try:
        message = wire.unpack(parts)
    except wire.WireError as error:
        return error.reason
    if socket == "frames":
        if isinstance(message, wire.Frame):
            return None if message.image.shape == (FRAME_SIDE, FRAME_SIDE, 3) else "frame_size"
        return "kind" if isinstance(message, (wire.Feature, wire.FeatureBatch, wire.Label)) else None
    if isinstance(message, wire.Feature):
        return None if message.vector.shape[0] == FEATURE_DIM else "feature_size"
    return "kind" if isinstance(message, (wire.Frame, wire.Label)) else None


@st.composite
def published_garbage(draw) -> list[bytes]:
    """What a subscriber to `label/` may receive that `wire.unpack_published` must refuse
    (filter with `is_published_garbage`: a random draw may, rarely, be a valid label)."""
    topic = b"label/" + draw(st.binary(max_size=16))
    choice = draw(st.sampled_from(["body", "no_body", "wrong_topic", "never_published"]))
    if choice == "no_body":
        return [topic]
    if choice == "wrong_topic":  # a well-formed label under another stream's topic
        header = draw(_valid_header(wire.LABEL))
        return [wire.label_topic(header["stream"] + "x")] + _parts(header, None)
    if choice == "never_published":  # a well-formed frame or feature, which only travel PUSH sockets
        header = draw(st.sampled_from([wire.FRAME, wire.FEATURE]).flatmap(_valid_header))
        return [wire.label_topic(header["stream"])] + _parts(header, _buffer_for(header))
    return [topic] + draw(st.one_of(_random_parts, _not_a_map, _junk_map, _mutated()))


def is_published_garbage(parts: list[bytes]) -> bool:
    """False only for a message `unpack_published` turns into a valid published message."""
    try:
        wire.unpack_published(parts)
    except Exception:  # noqa: BLE001 - whatever it raises, this is garbage; the tests check it raises WireError
        return True
    return False
