"""Hypothesis strategies for messages a receiving socket must refuse, each with the reason it must
be dropped for, known by construction: nothing here asks `streamer.transport.wire` whether a
message is valid, so a parser that wrongly accepts one is caught, not filtered out.

Each invalid message starts from a well-formed one, written out field by field below (not made
by `wire.pack`), and breaks exactly one thing: the part count, the header's encoding, the schema
version, the kind, a frame's shape or a feature's dim, the buffer's length (truncated or too
long), a feature's values (NaN), the stream name, or one field's type or presence. The reason is
then the one check that thing fails. `misrouted(socket)` adds well-formed messages that the
given worker still refuses (a frame of the wrong size, a feature of the wrong dim, a message
kind that does not belong on that socket).

`broken()` draws `(parts, reason)` that the wire format refuses, `misrouted(socket)` those it takes
and the worker refuses, `invalid(socket)` both, for the feature worker's frames socket ("frames")
or the LSTM worker's features socket ("features"); `published_invalid()` draws what a subscriber
must refuse; `arbitrary_parts()` draws messages of unknown validity, for round-trip checks.
"""

from __future__ import annotations

import msgpack
from hypothesis import strategies as st

from streamer.transport import wire

FRAME_SIDE = 64  # the tests' capture.crop: the only frame size the feature worker takes
FEATURE_DIM = 512  # what the LSTM worker takes
BUFFER_LIMIT = 20_000  # every generated part stays far below security.max_message_bytes
JPEG_START = b"\xff\xd8"  # every JPEG starts with these two bytes (start of image)
MSGPACK_NEVER_USED = b"\xc1"  # the one byte msgpack never emits: no header can start with it

_int = st.integers(-2**63, 2**64 - 1)  # what msgpack can carry
ABSENT = object()  # "leave the field out"
_big_int = st.one_of(st.integers(2**62, 2**64 - 1), st.integers(-2**63, -2**62))  # what msgpack carries, too big
_stream = st.from_regex(r"[A-Za-z0-9_.:][A-Za-z0-9_.:-]{0,11}", fullmatch=True)  # never a leading "-"
_bad_stream = st.one_of(st.just(""), st.text(min_size=65, max_size=80, alphabet="abc"),
                        st.from_regex(r"[a-z]{0,5}[ /\\\n\x00*?<>][a-z]{0,5}", fullmatch=True),
                        st.from_regex(r"-[a-z]{0,5}", fullmatch=True),  # would read as an option
                        _int, st.none(), st.lists(_int, max_size=2))
_not_number = st.one_of(st.text(max_size=8), st.none(), st.booleans(),
                        st.lists(_int, max_size=3), st.dictionaries(st.text(max_size=3), _int,
                                                                             max_size=2))
_not_int = st.one_of(_not_number, st.floats(), _big_int)
_not_str = st.one_of(_int, st.none(), st.floats(), st.booleans(),
                     st.lists(st.text(max_size=3), max_size=2))
_not_optional_str = _not_str.filter(lambda v: v is not None)
_not_number_map = st.one_of(
    _int, st.text(max_size=8), st.none(), st.lists(_int, max_size=3),
    st.dictionaries(st.text(max_size=4), st.one_of(st.text(max_size=4), st.none(), st.booleans(),
                                                   st.lists(_int, max_size=2)), min_size=1, max_size=3))
_not_bool = st.one_of(_int, st.none(), st.text(max_size=5), st.floats())
_not_seqs = st.one_of(_int, st.text(max_size=5), st.none(), st.lists(st.text(max_size=3), min_size=1, max_size=2),
                      st.lists(st.integers(-2**40, -1), min_size=1, max_size=2), st.lists(_big_int, min_size=1, max_size=2))
_not_count = st.one_of(_not_int, st.integers(-2**40, -1), st.integers(wire.MAX_CREDITS + 1, 2**40))
_not_top_k = st.one_of(_int, st.text(max_size=5), st.none(),
                       st.sampled_from([[["a"]], [[1, 0.5]], [["a", "x"]], [["a", 0.5, 1]], ["a"], [None]]))

# What each field of each kind must be; a value of another type (or, for most, no value) is
# refused with the reason "field". `stream`, `v`, `kind`, `shape` and `dim` have reasons of their own.
_COMMON_FIELDS = {"seq": "int", "t_capture": "number", "truth": "optional_str", "truth_since": "int",
                  "stages": "number_map", "t_sent": "number", "session": "int"}
FIELDS = {
    wire.FRAME: _COMMON_FIELDS,
    wire.FEATURE: _COMMON_FIELDS,
    wire.LABEL: {"seq": "int", "t_capture": "number", "t_publish": "number", "label": "str", "score": "number",
                 "top_k": "top_k", "warming": "bool", "frames_in_window": "int", "model_id": "str",
                 "stages": "number_map", "truth": "optional_str", "truth_since": "int", "epoch": "optional_int"},
    wire.STATS: {"t": "number", "counters": "number_map"},  # `process` has a reason of its own
    wire.STREAM_START: {"source": "str", "fps": "number", "width": "int", "height": "int", "t": "number"},
    wire.STREAM_END: {"reason": "str", "t": "number", "session": "int"},
    wire.PREVIEW: {"seq": "int", "t_capture": "number"},
    wire.ACTIVITY: {"event": "str", "label": "str", "confidence": "number", "start_seq": "int", "start_t": "number",
                    "end_seq": "int", "end_t": "number"},
    wire.ASSIGNMENT: {"epoch": "int"},  # `cell` and `streams` have reasons of their own
    wire.HELLO: {"want": "count", "t": "number"},
    wire.CREDIT: {"worker": "int", "grant": "count", "lease_ms": "number", "eta_ms": "number", "done": "seqs"},
}
_WRONG = {"int": _not_int, "number": _not_number, "str": _not_str, "optional_str": _not_optional_str,
          "number_map": _not_number_map, "bool": _not_bool, "top_k": _not_top_k, "optional_int": _not_int,
          "count": _not_count, "seqs": _not_seqs}


def valid_header(kind: str, stream: str = "cam0", side: int = FRAME_SIDE, dim: int = FEATURE_DIM) -> dict:
    """A well-formed header of `kind`, written out here (a frame of side x side, a feature of dim)."""
    common = {"v": 1, "kind": kind, "stream": stream, "seq": 7, "t_capture": 1.0, "t_sent": 1.0, "truth": None,
              "truth_since": -1, "stages": {"cnn": 1.5}, "session": 1}
    if kind == wire.FRAME:
        return common | {"shape": [side, side, 3]}
    if kind == wire.FEATURE:
        return common | {"dim": dim}
    if kind == wire.LABEL:
        return {"v": 1, "kind": kind, "stream": stream, "seq": 1, "t_capture": 1.0, "t_publish": 1.0, "label": "a",
                "score": 0.5, "top_k": [["a", 0.5]], "warming": False, "frames_in_window": 1, "model_id": "m",
                "stages": {}, "truth": None, "truth_since": -1, "epoch": 3}
    if kind == wire.STATS:
        return {"v": 1, "kind": kind, "process": "p", "t": 1.0, "counters": {"x": 1}}
    if kind == wire.STREAM_START:
        return {"v": 1, "kind": kind, "stream": stream, "source": "s", "fps": 1.0, "width": 1, "height": 1, "t": 1.0}
    if kind == wire.PREVIEW:
        return {"v": 1, "kind": kind, "stream": stream, "seq": 7, "t_capture": 1.0}
    if kind == wire.ACTIVITY:
        return {"v": 1, "kind": kind, "stream": stream, "event": "start", "label": "a", "confidence": 0.5,
                "start_seq": 1, "start_t": 1.0, "end_seq": 2, "end_t": 1.5}
    if kind == wire.ASSIGNMENT:
        return {"v": 1, "kind": kind, "cell": "cell-0", "epoch": 2, "streams": [stream, stream + "b"]}
    if kind == wire.HELLO:
        return {"v": 1, "kind": kind, "stream": stream, "want": 1, "t": 1.0}
    if kind == wire.CREDIT:
        return {"v": 1, "kind": kind, "worker": 7, "grant": 2, "lease_ms": 1000.0, "eta_ms": 30.0, "done": [1, 2]}
    return {"v": 1, "kind": kind, "stream": stream, "reason": "r", "t": 1.0, "session": 1}


def valid_buffer(header: dict) -> bytes | None:
    """The buffer a well-formed header of `valid_header` needs (None: the kind carries none)."""
    if header["kind"] == wire.FRAME:
        height, width, _ = header["shape"]
        return bytes(range(256)) * (height * width * 3 // 256) + bytes(height * width * 3 % 256)
    if header["kind"] == wire.FEATURE:
        return b"\x00\x00\x80\x3f" * header["dim"]  # float32 1.0
    if header["kind"] == wire.PREVIEW:
        return JPEG_START + bytes(64)  # the wire checks a JPEG's first bytes, never decodes it
    return None


def _set_or_remove(header: dict, name: str, wrong) -> None:
    """Give the field its wrong value, or leave it out when the value drawn is ABSENT."""
    if wrong is ABSENT:
        del header[name]
    else:
        header[name] = wrong


def _parts(header: dict, buffer: bytes | None) -> list[bytes]:
    packed = msgpack.packb(header, use_bin_type=True)
    return [packed] if buffer is None else [packed, buffer]


# Feature batches nest one header per frame: tests/test_wire.py breaks them field by field.
SINGLE_KINDS = tuple(kind for kind in wire.KINDS if kind != wire.FEATURE_BATCH)


@st.composite
def _well_formed(draw, kinds=SINGLE_KINDS) -> tuple[dict, bytes | None]:
    kind = draw(st.sampled_from(kinds))
    header = valid_header(kind, draw(_stream), side=draw(st.integers(1, 80)), dim=draw(st.integers(1, 2048)))
    if kind == wire.FRAME and draw(st.booleans()):
        header["shape"][1] = draw(st.integers(1, 80))  # not only squares
    return header, valid_buffer(header)


@st.composite
def broken(draw, oversized: bool = True) -> tuple[list[bytes], str]:
    """A well-formed message with exactly one thing wrong, and the reason that one thing is refused for.

    `oversized=False` leaves out what a receiving socket's size limit refuses before the wire format
    sees it (ZeroMQ then drops the connection, so nothing could count it)."""
    header, buffer = draw(_well_formed())
    kind = header["kind"]
    carries_buffer = buffer is not None
    choices = ["extra_parts", "buffer_presence", "undecodable", "truncated_header", "trailing_bytes",
               "not_a_map", "binary_value", "version", "kind", "field"]
    if "stream" in header:
        choices.append("stream")
    if "process" in header:
        choices.append("process")
    if kind == wire.ASSIGNMENT:
        choices += ["cell", "assigned_stream"]
    if kind == wire.FRAME:
        choices += ["shape", "truncated_buffer", "long_buffer"]
    if kind == wire.FEATURE:
        choices += ["dim", "truncated_buffer", "long_buffer", "nan"]
    if kind == wire.PREVIEW:
        choices += ["not_jpeg", "huge_preview"] if oversized else ["not_jpeg"]
    broken = draw(st.sampled_from(choices))
    if broken == "extra_parts":
        extra = draw(st.lists(st.binary(max_size=32), min_size=1, max_size=3))
        return _parts(header, buffer if carries_buffer else b"") + extra, "parts"
    if broken == "buffer_presence":  # a frame or feature without its buffer, or a buffer where none belongs
        return _parts(header, None if carries_buffer else draw(st.binary(max_size=32))), "parts"
    if broken == "undecodable":
        return [MSGPACK_NEVER_USED + draw(st.binary(max_size=64))] + ([buffer] if carries_buffer else []), \
            "undecodable"
    if broken == "truncated_header":  # every strict prefix of a msgpack map is incomplete
        packed = msgpack.packb(header, use_bin_type=True)
        return [packed[:draw(st.integers(0, len(packed) - 1))]] + ([buffer] if carries_buffer else []), "undecodable"
    if broken == "trailing_bytes":
        packed = msgpack.packb(header, use_bin_type=True) + draw(st.binary(min_size=1, max_size=16))
        return [packed] + ([buffer] if carries_buffer else []), "undecodable"
    if broken == "not_a_map":
        value = draw(st.one_of(_int, st.text(max_size=20), st.lists(_int, max_size=5), st.none(),
                               st.floats(), st.just(list(header.items()))))
        return [msgpack.packb(value, use_bin_type=True)] + ([buffer] if carries_buffer else []), "undecodable"
    if broken == "binary_value":  # a header never carries raw bytes: the unpacker refuses any (max_bin_len=0)
        header[draw(st.sampled_from(sorted(header)))] = draw(st.binary(min_size=1, max_size=8))
        return _parts(header, buffer), "undecodable"
    if broken == "version":  # exactly the int 1: not True, not 1.0, not "1", not absent
        wrong = draw(st.one_of(_int.filter(lambda v: v != 1), st.just(True), st.just(1.0), st.just("1"),
                               st.none(), st.just(ABSENT)))
        _set_or_remove(header, "v", wrong)
        return _parts(header, buffer), "version"
    if broken == "kind":
        wrong = draw(st.one_of(st.text(max_size=12).filter(lambda k: k not in wire.KINDS), _int, st.none(),
                               st.just(kind.upper()), st.just(ABSENT)))
        _set_or_remove(header, "kind", wrong)
        return _parts(header, buffer), "kind"
    if broken == "stream":
        header["stream"] = draw(_bad_stream)
        return _parts(header, buffer), "stream"
    if broken == "process":  # a process name ends up in a topic: the stream-name rule
        header["process"] = draw(_bad_stream)
        return _parts(header, buffer), "process"
    if broken == "cell":  # a cell name follows the process-name rule
        header["cell"] = draw(_bad_stream)
        return _parts(header, buffer), "process"
    if broken == "assigned_stream":  # one stream name in the list breaks the rule, or it is no list
        header["streams"] = draw(st.one_of(_bad_stream.map(lambda bad: header["streams"] + [bad]),
                                           _int, st.text(max_size=5), st.none()))
        return _parts(header, buffer), "stream"
    if broken == "shape":  # absent, not a list, not [H, W, 3], huge, zero or negative sides
        header["shape"] = draw(st.one_of(
            st.just(None), _int, st.text(max_size=5),
            st.lists(st.integers(1, 80), max_size=5).filter(lambda s: len(s) != 3),
            st.tuples(st.integers(1, 80), st.integers(1, 80), _int.filter(lambda c: c != 3)).map(list),
            st.tuples(st.integers(wire.MAX_FRAME_SIDE + 1, 2**40), st.integers(1, 80), st.just(3)).map(list),
            st.tuples(st.integers(1, 80), st.integers(-2**31, 0), st.just(3)).map(list),
            st.tuples(st.floats(1, 80), st.integers(1, 80), st.just(3)).map(list),
            st.tuples(st.just(True), st.integers(1, 80), st.just(3)).map(list)))
        if header["shape"] is None:
            del header["shape"]
        return _parts(header, buffer), "shape"
    if broken == "dim":
        header["dim"] = draw(st.one_of(st.integers(-2**63, 0), st.integers(wire.MAX_FEATURE_DIM + 1, 2**40),
                                       st.floats(), st.just(True), st.text(max_size=4), st.none()))
        return _parts(header, buffer), "shape"
    if broken == "truncated_buffer":
        return _parts(header, buffer[:draw(st.integers(0, len(buffer) - 1))]), "size"
    if broken == "long_buffer":
        return _parts(header, buffer + draw(st.binary(min_size=1, max_size=64))), "size"
    if broken == "not_jpeg":
        return _parts(header, draw(st.binary(max_size=64).filter(lambda b: not b.startswith(JPEG_START)))), "value"
    if broken == "huge_preview":
        return _parts(header, JPEG_START + bytes(wire.MAX_PREVIEW_BYTES)), "size"
    if broken == "nan":
        at = draw(st.integers(0, header["dim"] - 1))
        bad = draw(st.sampled_from([b"\x00\x00\xc0\x7f", b"\x00\x00\x80\x7f", b"\x00\x00\x80\xff"]))  # NaN, +-inf
        return _parts(header, buffer[:4 * at] + bad + buffer[4 * at + 4:]), "value"
    fields = FIELDS[kind]
    name = draw(st.sampled_from(sorted(fields)))
    kinds_of_wrong = [_WRONG[fields[name]]]
    if not fields[name].startswith("optional"):  # an absent optional string is None, an absent epoch 0
        kinds_of_wrong.append(st.just(ABSENT))
    if name in ("seq", "epoch"):
        kinds_of_wrong.append(st.integers(-2**61, -1))
    wrong = draw(st.one_of(kinds_of_wrong))
    _set_or_remove(header, name, wrong)
    return _parts(header, buffer), "field"


def misrouted(socket: str):
    """Well-formed messages the given worker refuses, with the reason it counts."""
    if socket == "frames":
        wrong_size = _well_formed((wire.FRAME,)).filter(lambda m: m[0]["shape"][:2] != [FRAME_SIDE, FRAME_SIDE])
        return st.one_of(wrong_size.map(lambda m: (_parts(*m), "frame_size")),
                         _well_formed((wire.FEATURE, wire.LABEL, wire.CREDIT)).map(lambda m: (_parts(*m), "kind")))
    wrong_dim = _well_formed((wire.FEATURE,)).filter(lambda m: m[0]["dim"] != FEATURE_DIM)
    return st.one_of(wrong_dim.map(lambda m: (_parts(*m), "feature_size")),
                     _well_formed((wire.FRAME, wire.LABEL, wire.HELLO, wire.CREDIT)).map(lambda m: (_parts(*m), "kind")))


def invalid(socket: str):
    """(parts, drop reason) for a message the worker on `socket` must drop and count."""
    return st.one_of(broken(oversized=False), misrouted(socket))


@st.composite
def published_invalid(draw) -> list[bytes]:
    """What a subscriber to `label/` may receive that `wire.unpack_published` must refuse."""
    choice = draw(st.sampled_from(["no_body", "wrong_topic", "never_published", "broken"]))
    if choice == "no_body":
        return [b"label/" + draw(st.binary(max_size=16))]
    if choice == "wrong_topic":  # a well-formed label under another stream's topic
        header, _ = draw(_well_formed((wire.LABEL,)))
        return [wire.label_topic(header["stream"] + "x")] + _parts(header, None)
    if choice == "never_published":  # a well-formed frame or feature: they only travel PUSH sockets
        header, buffer = draw(_well_formed((wire.FRAME, wire.FEATURE)))
        return [wire.label_topic(header["stream"])] + _parts(header, buffer)
    parts, _ = draw(broken(oversized=False))
    return [b"label/" + draw(st.binary(max_size=16))] + parts


_anything = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1), st.floats(), st.text(max_size=20),
                      st.binary(max_size=20), st.lists(_int, max_size=4),
                      st.dictionaries(st.text(max_size=5), st.floats(), max_size=3))


@st.composite
def _one_field_replaced(draw) -> list[bytes]:
    header, buffer = draw(_well_formed())
    header[draw(st.sampled_from(sorted(header)))] = draw(_anything)
    return _parts(header, buffer)


def arbitrary_parts():
    """Messages of unknown validity: random bytes, random maps, well-formed ones with one field
    set to anything (often still valid: a float for an int field is not, None for truth is)."""
    return st.one_of(st.lists(st.binary(max_size=200), min_size=1, max_size=3),
                     st.dictionaries(st.text(max_size=8), _anything, max_size=6).map(lambda d: [msgpack.packb(d)]),
                     _one_field_replaced())
