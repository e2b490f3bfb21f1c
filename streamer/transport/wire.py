"""The wire format: every message that crosses a ZeroMQ socket is packed and checked here.

A message is multipart: `[topic?, header, buffer?]`.
- `topic` only on the PUB socket: `label/<stream>/`, `event/<stream>/`, `stats/<process>/`,
  `preview/<stream>/`, `activity/<stream>/`.
  The trailing slash is part of the topic, so subscribing to `label/cam1/` never also
  delivers `label/cam10/` (ZeroMQ subscriptions match prefixes).
- `header` is a msgpack map with the schema version `v` and the message `kind`.
- `buffer` is the raw array (frames: uint8 HxWx3 RGB; features: float32 [dim]; a feature batch:
  float32 [N, dim], its N frames' fields in the header's `items`; previews: JPEG bytes) sent with
  `copy=False`; its shape and dtype are in the header and checked against its length.

An `assignment` (a cluster cell to its LSTM worker: its streams and the epoch from which they are
its own) travels only the features socket, like stats; labels carry that `epoch`.

On a feature worker's frames ROUTER (credit dispatch) ZeroMQ puts the sending capture's identity
before these parts; the worker takes it off before `unpack`. `hello` and `credit` messages
(headers only) are the credit dispatch's own: streamer/capture/dispatch.py, workers/credits.py.

Never pickle: a peer can only make us allocate what a checked header allows.
Everything that sends or receives imports this module; nothing else knows the layout.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import msgpack
import numpy as np
import zmq

from configs.settings import ActionableError

SCHEMA_VERSION = 1

# The largest frame a header may declare (8K RGB); a bigger declared shape is refused before
# anything is allocated.
MAX_FRAME_SIDE = 8192
MAX_FEATURE_DIM = 65536
# Stream and process names: letters and digits of any script, '_', '.', ':' and '-', not starting
# with '-' (it would read as an option), 1 to 64 characters; never '/', spaces or line breaks, which
# would forge topics or log lines. `\Z`, not `$`: `$` also matches before a final newline.
STREAM_NAME = re.compile(r"^(?!-)[\w.:-]{1,64}\Z")
STREAM_NAME_RULE = "1 to 64 letters or digits (any script), '_', '.', ':' or '-', not starting with '-'"
# A peer can only make us allocate what these allow: the header is measured before it is unpacked,
# and msgpack refuses longer strings, arrays and maps while unpacking.
MAX_HEADER_BYTES = 32 * 1024
MAX_TEXT = 1024  # characters in any string field
MAX_ITEMS = 1024  # entries in any list or map (top_k, stages, counters: up has one per process)
MAX_KEY = 128  # characters in a counter's or stage's name ("restarts_capture:" + a stream name)
MAX_PREVIEW_BYTES = 60 * 1024  # a thumbnail; a bigger one is refused (and it must fit a subscriber's 64 KiB limit)
# A stats counter named `backend=<name>` (worth 1) says which inference backend a feature worker runs.
BACKEND_KEY = "backend="

FRAME = "frame"
FEATURE = "feature"
LABEL = "label"
STATS = "stats"
STREAM_START = "stream_start"
STREAM_END = "stream_end"
PREVIEW = "preview"
ACTIVITY = "activity"
FEATURE_BATCH = "feature_batch"
ASSIGNMENT = "assignment"
HELLO = "hello"
CREDIT = "credit"
KINDS = (FRAME, FEATURE, LABEL, STATS, STREAM_START, STREAM_END, PREVIEW, ACTIVITY, FEATURE_BATCH, ASSIGNMENT, HELLO,
         CREDIT)
MAX_BATCH_ITEMS = 4096  # features in one feature_batch message
MAX_CREDITS = 4096  # credits one hello may ask for, or one credit message may grant


class StreamNameError(ActionableError, ValueError):
    """A stream name that breaks the naming rule (given on the command line)."""


def is_stream_name(name: str) -> bool:
    return isinstance(name, str) and STREAM_NAME.match(name) is not None


def check_stream_name(name: str) -> str:
    if not is_stream_name(name):
        raise StreamNameError(f"stream name {name!r} is not allowed: use {STREAM_NAME_RULE}")
    return name


class WireError(ValueError):
    """A message that cannot be used. `reason` is a short key for the drop counters."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass
class Frame:
    stream: str
    seq: int
    t_capture: float  # time.time() when the camera delivered the frame
    image: np.ndarray  # uint8 [H, W, 3] RGB, already resized and cropped by the preset
    truth: str | None = None  # ground-truth activity (synthetic camera) or None
    truth_since: int = -1  # sequence number at which the current ground truth began
    stages: dict[str, float] = field(default_factory=dict)  # milliseconds spent per stage so far
    t_sent: float = 0.0
    session: int = 0  # changes when a capture restarts, so its seq numbers start again cleanly


@dataclass
class Feature:
    stream: str
    seq: int
    t_capture: float
    vector: np.ndarray  # float32 [dim]
    truth: str | None = None
    truth_since: int = -1
    stages: dict[str, float] = field(default_factory=dict)
    t_sent: float = 0.0
    session: int = 0


@dataclass
class Label:
    stream: str
    seq: int
    t_capture: float
    t_publish: float
    label: str
    score: float
    top_k: list[tuple[str, float]]
    warming: bool  # true until the window holds `window` frames
    frames_in_window: int
    model_id: str
    stages: dict[str, float]
    truth: str | None = None
    truth_since: int = -1
    epoch: int = 0  # the cluster's assignment epoch when the label was made (0: one host, or not yet assigned)


@dataclass
class Stats:
    process: str  # e.g. "capture:cam0", "features:1", "lstm"
    t: float
    counters: dict[str, float]


@dataclass
class StreamStart:
    stream: str
    source: str
    fps: float
    width: int
    height: int
    t: float


@dataclass
class StreamEnd:
    stream: str
    reason: str  # "source ended", "source lost", "evicted", "stopped"
    t: float
    session: int = 0  # the capture session that ended: an end for another session ends nothing


@dataclass
class Preview:
    """A small JPEG of a stream's latest frame, for dashboards (at most `capture.preview_fps` a second)."""
    stream: str
    seq: int  # sequence number of the frame it shows
    t_capture: float
    jpeg: bytes



@dataclass
class Activity:
    """An activity segment of a stream starting or ending (models/segments.py)."""
    stream: str
    event: str  # "start" (confirmed after activity.min_frames) or "end"
    label: str
    confidence: float  # mean smoothed probability of the label over the segment
    start_seq: int
    start_t: float  # t_capture of the segment's first frame
    end_seq: int  # its last frame (for "start": the frame that confirmed it)
    end_t: float


@dataclass
class FeatureBatch:
    """The features of one feature-worker batch, in one message: one header map per frame, one [N, dim] buffer."""

    features: list[Feature]


@dataclass
class Assignment:
    """A cell's streams from `epoch` on, told to its LSTM worker: it labels only these, stamped with the epoch."""

    cell: str
    epoch: int
    streams: list[str]


@dataclass
class Hello:
    """Capture -> feature worker (credit dispatch): here I am, and how many frames I could send at once.

    Sent when a capture connects and then every half lease, so a restarted worker learns of it."""

    stream: str
    want: int  # credits the capture can use at once (a camera 2: its next frame can be on its way; a file a batch)
    t: float


@dataclass
class Credit:
    """Feature worker -> one capture (credit dispatch): send `grant` more frames, each within `lease_ms`.

    Also the worker's heartbeat and acknowledgements: `done` are the sequence numbers of this
    capture's frames whose features have left for the LSTM worker since the last credit message."""

    worker: int  # a random id per worker process: a new one means the worker restarted
    grant: int  # frames the capture may send now (0: a heartbeat)
    lease_ms: float  # an unused credit expires this long after it was granted
    eta_ms: float  # the worker's recent time from starting a batch to its features (0: none yet)
    done: list[int] = field(default_factory=list)


Message = (Frame | Feature | Label | Stats | StreamStart | StreamEnd | Preview | Activity | FeatureBatch | Assignment
           | Hello | Credit)


# ---------------------------------------------------------------------------------- packing


def pack(message: Message) -> list:
    """Multipart parts for a PUSH socket (no topic)."""
    header, buffer = _header_and_buffer(message)
    parts = [msgpack.packb(header, use_bin_type=True)]
    if buffer is not None:
        parts.append(buffer)
    return parts


def pack_published(message: Message) -> list:
    """Multipart parts for the PUB socket: the topic first."""
    return [topic_for(message)] + pack(message)


def topic_for(message: Message) -> bytes:
    if isinstance(message, Label):
        return label_topic(message.stream)
    if isinstance(message, Stats):
        return stats_topic(message.process)
    if isinstance(message, (StreamStart, StreamEnd)):
        return event_topic(message.stream)
    if isinstance(message, Preview):
        return preview_topic(message.stream)
    if isinstance(message, Activity):
        return activity_topic(message.stream)
    raise TypeError(f"{type(message).__name__} is not published")


def label_topic(stream: str) -> bytes:
    return f"label/{stream}/".encode()


def event_topic(stream: str) -> bytes:
    return f"event/{stream}/".encode()


def stats_topic(process: str) -> bytes:
    return f"stats/{process}/".encode()


def preview_topic(stream: str) -> bytes:
    return f"preview/{stream}/".encode()
def activity_topic(stream: str) -> bytes:
    return f"activity/{stream}/".encode()


def send(socket: zmq.Socket, message: Message, flags: int = 0) -> None:
    socket.send_multipart(pack(message), flags=flags, copy=False)


def publish(socket: zmq.Socket, message: Message) -> None:
    socket.send_multipart(pack_published(message), copy=False)


def _header_and_buffer(message: Message) -> tuple[dict, object | None]:
    if isinstance(message, Frame):
        image = np.ascontiguousarray(message.image, dtype=np.uint8)
        header = _common(FRAME, message) | {"shape": list(image.shape)}
        return header, memoryview(image).cast("B")
    if isinstance(message, Feature):
        vector = np.ascontiguousarray(message.vector, dtype=np.float32)
        header = _common(FEATURE, message) | {"dim": int(vector.shape[0])}
        return header, memoryview(vector).cast("B")
    if isinstance(message, Label):
        header = {
            "v": SCHEMA_VERSION,
            "kind": LABEL,
            "stream": message.stream,
            "seq": message.seq,
            "t_capture": message.t_capture,
            "t_publish": message.t_publish,
            "label": message.label,
            "score": message.score,
            "top_k": [[name, float(p)] for name, p in message.top_k],
            "warming": message.warming,
            "frames_in_window": message.frames_in_window,
            "model_id": message.model_id,
            "stages": message.stages,
            "truth": message.truth,
            "truth_since": message.truth_since,
            "epoch": message.epoch,
        }
        return header, None
    if isinstance(message, Stats):
        return {"v": SCHEMA_VERSION, "kind": STATS, "process": message.process, "t": message.t,
                "counters": message.counters}, None
    if isinstance(message, StreamStart):
        return {"v": SCHEMA_VERSION, "kind": STREAM_START, "stream": message.stream,
                "source": message.source, "fps": message.fps, "width": message.width,
                "height": message.height, "t": message.t}, None
    if isinstance(message, StreamEnd):
        return {"v": SCHEMA_VERSION, "kind": STREAM_END, "stream": message.stream,
                "reason": message.reason, "t": message.t, "session": message.session}, None
    if isinstance(message, Preview):
        return {"v": SCHEMA_VERSION, "kind": PREVIEW, "stream": message.stream, "seq": message.seq,
                "t_capture": message.t_capture}, message.jpeg
    if isinstance(message, Activity):
        return {"v": SCHEMA_VERSION, "kind": ACTIVITY, "stream": message.stream, "event": message.event,
                "label": message.label, "confidence": message.confidence, "start_seq": message.start_seq,
                "start_t": message.start_t, "end_seq": message.end_seq, "end_t": message.end_t}, None
    if isinstance(message, FeatureBatch):
        matrix = np.ascontiguousarray(np.stack([f.vector for f in message.features]), dtype=np.float32)
        items = [{key: value for key, value in _common(FEATURE, f).items() if key not in ("v", "kind", "t_sent")}
                 for f in message.features]
        header = {"v": SCHEMA_VERSION, "kind": FEATURE_BATCH, "t_sent": time.time(), "dim": int(matrix.shape[1]),
                  "items": items}
        return header, memoryview(matrix).cast("B")
    if isinstance(message, Assignment):
        return {"v": SCHEMA_VERSION, "kind": ASSIGNMENT, "cell": message.cell, "epoch": message.epoch,
                "streams": list(message.streams)}, None
    if isinstance(message, Hello):
        return {"v": SCHEMA_VERSION, "kind": HELLO, "stream": message.stream, "want": message.want,
                "t": message.t}, None
    if isinstance(message, Credit):
        return {"v": SCHEMA_VERSION, "kind": CREDIT, "worker": message.worker, "grant": message.grant,
                "lease_ms": message.lease_ms, "eta_ms": message.eta_ms, "done": list(message.done)}, None
    raise TypeError(f"cannot pack {type(message).__name__}")


def _common(kind: str, message: Frame | Feature) -> dict:
    return {
        "v": SCHEMA_VERSION,
        "kind": kind,
        "stream": message.stream,
        "seq": message.seq,
        "t_capture": message.t_capture,
        "t_sent": time.time(),
        "truth": message.truth,
        "truth_since": message.truth_since,
        "stages": message.stages,
        "session": message.session,
    }


# -------------------------------------------------------------------------------- unpacking


def unpack(parts: list) -> Message:
    """Parse the parts of a PUSH/PULL message; raises WireError on anything malformed."""
    if not parts or len(parts) > 2:
        raise WireError("parts", f"expected 1 or 2 message parts, got {len(parts)}")
    header = _read_header(parts[0])
    kind = header["kind"]
    buffer = parts[1] if len(parts) == 2 else None
    if kind == FRAME:
        return _frame(header, _require_buffer(buffer, kind))
    if kind == FEATURE:
        return _feature(header, _require_buffer(buffer, kind))
    if kind == PREVIEW:
        return _preview(header, _require_buffer(buffer, kind))
    if kind == FEATURE_BATCH:
        return _feature_batch(header, _require_buffer(buffer, kind))
    if buffer is not None:
        raise WireError("parts", f"{kind} messages carry no buffer")
    if kind == LABEL:
        return _label(header)
    if kind == STATS:
        return Stats(process=_process(header), t=_number(header, "t"),
                     counters=_number_map(header, "counters"))
    if kind == STREAM_START:
        return StreamStart(stream=_stream(header), source=_str(header, "source"),
                           fps=_number(header, "fps"), width=_int(header, "width"),
                           height=_int(header, "height"), t=_number(header, "t"))
    if kind == STREAM_END:
        return StreamEnd(stream=_stream(header), reason=_str(header, "reason"), t=_number(header, "t"),
                         session=_int(header, "session"))
    if kind == ASSIGNMENT:
        return _assignment(header)
    if kind == HELLO:
        return Hello(stream=_stream(header), want=_count(header, "want"), t=_number(header, "t"))
    if kind == CREDIT:
        return _credit(header)
    return _activity(header)


def unpack_published(parts: list) -> Message:
    """Parse a message received on a SUB socket (topic first); checks the topic matches."""
    if len(parts) < 2:
        raise WireError("parts", "a published message has a topic and a header")
    message = unpack(parts[1:])
    if isinstance(message, (Frame, Feature, FeatureBatch, Assignment, Hello, Credit)):
        raise WireError("kind", f"{type(message).__name__} messages are never published")
    if _bytes(parts[0]) != topic_for(message):
        raise WireError("topic", "topic does not match the message inside")
    return message


def _bytes(part) -> bytes:
    return part.bytes if isinstance(part, zmq.Frame) else bytes(part)


def _read_header(part) -> dict:
    size = len(part) if isinstance(part, zmq.Frame) else memoryview(part).nbytes
    if size > MAX_HEADER_BYTES:
        raise WireError("header_size", f"header of {size} bytes, at most {MAX_HEADER_BYTES}")
    try:
        header = msgpack.unpackb(_bytes(part), raw=False, strict_map_key=True, max_str_len=4 * MAX_TEXT,
                                 max_bin_len=0, max_array_len=MAX_ITEMS, max_map_len=MAX_ITEMS, max_ext_len=0)
    except Exception as error:  # msgpack raises several unrelated types for garbage
        raise WireError("undecodable", f"header is not msgpack ({type(error).__name__})") from None
    if not isinstance(header, dict):
        raise WireError("undecodable", "header is not a map")
    if type(header.get("v")) is not int or header["v"] != SCHEMA_VERSION:  # True == 1 in Python
        raise WireError("version", f"schema version {header.get('v')!r}, this build speaks {SCHEMA_VERSION}")
    if header.get("kind") not in KINDS:
        raise WireError("kind", f"unknown message kind {header.get('kind')!r}")
    return header


def _require_buffer(buffer, kind: str):
    if buffer is None:
        raise WireError("parts", f"{kind} message without its buffer")
    return buffer.buffer if isinstance(buffer, zmq.Frame) else buffer


def _frame(header: dict, buffer) -> Frame:
    shape = header.get("shape")
    if (not isinstance(shape, list) or len(shape) != 3 or shape[2] != 3
            or not all(isinstance(s, int) and not isinstance(s, bool) and 0 < s <= MAX_FRAME_SIDE for s in shape)):
        raise WireError("shape", f"frame shape must be [H, W, 3] within {MAX_FRAME_SIDE}, got {shape!r}")
    expected = shape[0] * shape[1] * 3
    if memoryview(buffer).nbytes != expected:
        raise WireError("size", f"frame buffer has {memoryview(buffer).nbytes} bytes, shape needs {expected}")
    image = np.frombuffer(buffer, dtype=np.uint8).reshape(shape)
    return Frame(stream=_stream(header), seq=_seq(header), t_capture=_number(header, "t_capture"),
                 image=image, truth=_optional_str(header, "truth"),
                 truth_since=_int(header, "truth_since"), stages=_number_map(header, "stages"),
                 t_sent=_number(header, "t_sent"), session=_int(header, "session"))


def _feature(header: dict, buffer) -> Feature:
    dim = header.get("dim")
    if not isinstance(dim, int) or isinstance(dim, bool) or not 0 < dim <= MAX_FEATURE_DIM:
        raise WireError("shape", f"feature dim must be 1..{MAX_FEATURE_DIM}, got {dim!r}")
    if memoryview(buffer).nbytes != dim * 4:
        raise WireError("size", f"feature buffer has {memoryview(buffer).nbytes} bytes, dim needs {dim * 4}")
    vector = np.frombuffer(buffer, dtype=np.float32)
    if not np.isfinite(vector).all():
        raise WireError("value", "feature holds NaN or infinity")
    return Feature(stream=_stream(header), seq=_seq(header), t_capture=_number(header, "t_capture"),
                   vector=vector, truth=_optional_str(header, "truth"),
                   truth_since=_int(header, "truth_since"), stages=_number_map(header, "stages"),
                   t_sent=_number(header, "t_sent"), session=_int(header, "session"))


def _preview(header: dict, buffer) -> Preview:
    jpeg = bytes(buffer)
    if len(jpeg) > MAX_PREVIEW_BYTES:
        raise WireError("size", f"preview has {len(jpeg)} bytes, at most {MAX_PREVIEW_BYTES}")
    if not jpeg.startswith(b"\xff\xd8"):
        raise WireError("value", "preview is not a JPEG")
    return Preview(stream=_stream(header), seq=_seq(header), t_capture=_number(header, "t_capture"), jpeg=jpeg)
def _feature_batch(header: dict, buffer) -> FeatureBatch:
    items, dim = header.get("items"), header.get("dim")
    if not isinstance(items, list) or not 0 < len(items) <= MAX_BATCH_ITEMS or not all(isinstance(i, dict) for i in items):
        raise WireError("field", f"items must be a list of 1..{MAX_BATCH_ITEMS} maps")
    if not isinstance(dim, int) or isinstance(dim, bool) or not 0 < dim <= MAX_FEATURE_DIM:
        raise WireError("shape", f"feature dim must be 1..{MAX_FEATURE_DIM}, got {dim!r}")
    if memoryview(buffer).nbytes != len(items) * dim * 4:
        raise WireError("size", f"feature batch buffer has {memoryview(buffer).nbytes} bytes, "
                                f"{len(items)} x {dim} features need {len(items) * dim * 4}")
    matrix = np.frombuffer(buffer, dtype=np.float32).reshape(len(items), dim)
    if not np.isfinite(matrix).all():
        raise WireError("value", "feature batch holds NaN or infinity")
    t_sent = _number(header, "t_sent")
    return FeatureBatch(features=[
        Feature(stream=_stream(item), seq=_seq(item), t_capture=_number(item, "t_capture"), vector=vector,
                truth=_optional_str(item, "truth"), truth_since=_int(item, "truth_since"),
                stages=_number_map(item, "stages"), t_sent=t_sent, session=_int(item, "session"))
        for item, vector in zip(items, matrix)])


def _label(header: dict) -> Label:
    top_k = header.get("top_k")
    if not isinstance(top_k, list) or not all(
        isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)
        and isinstance(item[1], (int, float)) and math.isfinite(item[1]) for item in top_k
    ):
        raise WireError("field", "top_k must be a list of [name, probability]")
    warming = header.get("warming")
    if not isinstance(warming, bool):
        raise WireError("field", "warming must be a boolean")
    return Label(stream=_stream(header), seq=_seq(header), t_capture=_number(header, "t_capture"),
                 t_publish=_number(header, "t_publish"), label=_str(header, "label"),
                 score=_number(header, "score"), top_k=[(n, float(p)) for n, p in top_k],
                 warming=warming, frames_in_window=_int(header, "frames_in_window"),
                 model_id=_str(header, "model_id"), stages=_number_map(header, "stages"),
                 truth=_optional_str(header, "truth"), truth_since=_int(header, "truth_since"),
                 epoch=_epoch(header) if "epoch" in header else 0)  # a label from before epochs: 0


def _epoch(header: dict) -> int:
    epoch = _int(header, "epoch")
    if epoch < 0:
        raise WireError("field", f"epoch must be >= 0, got {epoch}")
    return epoch


def _assignment(header: dict) -> Assignment:
    streams = header.get("streams")
    if not isinstance(streams, list) or not all(is_stream_name(s) for s in streams):
        raise WireError("stream", f"streams must be a list of stream names ({STREAM_NAME_RULE})")
    return Assignment(cell=_process(header, "cell"), epoch=_epoch(header), streams=streams)


def _activity(header: dict) -> Activity:
    event = _str(header, "event")
    if event not in ("start", "end"):
        raise WireError("field", f"activity event must be start or end, got {event!r}")
    return Activity(stream=_stream(header), event=event, label=_str(header, "label"),
                    confidence=_number(header, "confidence"), start_seq=_seq_field(header, "start_seq"),
                    start_t=_number(header, "start_t"), end_seq=_seq_field(header, "end_seq"),
                    end_t=_number(header, "end_t"))


def _credit(header: dict) -> Credit:
    done = header.get("done")
    if not isinstance(done, list) or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**62
                                             for s in done):
        raise WireError("field", "done must be a list of sequence numbers")
    lease_ms, eta_ms = _number(header, "lease_ms"), _number(header, "eta_ms")
    if lease_ms <= 0 or eta_ms < 0:
        raise WireError("field", f"lease_ms must be > 0 and eta_ms >= 0, got {lease_ms} and {eta_ms}")
    return Credit(worker=_int(header, "worker"), grant=_count(header, "grant"), lease_ms=lease_ms, eta_ms=eta_ms,
                  done=done)


def _count(header: dict, key: str) -> int:
    value = _int(header, key)
    if not 0 <= value <= MAX_CREDITS:
        raise WireError("field", f"{key} must be 0..{MAX_CREDITS}, got {value}")
    return value


def _seq_field(header: dict, key: str) -> int:
    value = _int(header, key)
    if value < 0:
        raise WireError("field", f"{key} must be >= 0, got {value}")
    return value


def _stream(header: dict) -> str:
    stream = header.get("stream")
    if not is_stream_name(stream):
        raise WireError("stream", f"stream name must be {STREAM_NAME_RULE}, got {_shorten(stream)}")
    return stream


def _process(header: dict, key: str = "process") -> str:
    process = header.get(key)
    if not is_stream_name(process):  # the same rule: a process name ends up in a topic too
        raise WireError("process", f"{key} name must be {STREAM_NAME_RULE}, got {_shorten(process)}")
    return process


def _shorten(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _seq(header: dict) -> int:
    seq = _int(header, "seq")
    if seq < 0:
        raise WireError("field", f"seq must be >= 0, got {seq}")
    return seq


def _int(header: dict, key: str) -> int:
    value = header.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or abs(value) >= 2**62:
        raise WireError("field", f"{key} must be an integer, got {_shorten(value)}")
    return value


def _number(header: dict, key: str) -> float:
    value = header.get(key)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise WireError("field", f"{key} must be a number, got {_shorten(value)}")
    if not math.isfinite(value):
        raise WireError("not_finite", f"{key} must be finite, got {value!r}")
    return float(value)


def _str(header: dict, key: str) -> str:
    value = header.get(key)
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise WireError("field", f"{key} must be a string of at most {MAX_TEXT} characters, got {_shorten(value)}")
    return value


def _optional_str(header: dict, key: str) -> str | None:
    value = header.get(key)
    if value is not None and (not isinstance(value, str) or len(value) > MAX_TEXT):
        raise WireError("field", f"{key} must be a string of at most {MAX_TEXT} characters or nil, "
                                 f"got {_shorten(value)}")
    return value


def _number_map(header: dict, key: str) -> dict[str, float]:
    value = header.get(key)
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and len(k) <= MAX_KEY and isinstance(v, (int, float)) and not isinstance(v, bool)
        for k, v in value.items()
    ):
        raise WireError("field", f"{key} must map names (at most {MAX_KEY} characters) to numbers")
    if not all(math.isfinite(v) for v in value.values()):
        raise WireError("not_finite", f"{key} holds NaN or infinity")
    return {k: float(v) for k, v in value.items()}


def received_messages(socket: zmq.Socket, limit: int | None = None) -> Iterator[tuple[Message | None, float]]:
    """The published messages already waiting on `socket` (at most `limit`), each with the wall time
    it was taken off the socket; None stands for a malformed one, for the caller to count."""
    taken = 0
    while limit is None or taken < limit:
        try:
            parts = socket.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return
        taken += 1
        received = time.time()
        try:
            message = unpack_published(parts)
        except WireError:
            message = None
        yield message, received
