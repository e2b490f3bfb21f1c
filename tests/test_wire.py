"""The wire format: every kind round-trips; anything malformed is refused with a reason."""

from __future__ import annotations

import time

import msgpack
import numpy as np
import pytest
import zmq

from streamer.transport import wire
from tests.conftest import recv_published
from tests.support.pipeline import free_port


def _frame(stream="cam0", seq=3, shape=(8, 6, 3)) -> wire.Frame:
    image = np.arange(np.prod(shape), dtype=np.uint8).reshape(shape)
    return wire.Frame(stream=stream, seq=seq, t_capture=123.5, image=image, truth="FadeIn", truth_since=1,
                      stages={"preprocess": 0.5}, session=42)


def _label(stream="cam1") -> wire.Label:
    return wire.Label(stream=stream, seq=7, t_capture=1.0, t_publish=2.0, label="GrowShape", score=0.9,
                      top_k=[("GrowShape", 0.9), ("FadeIn", 0.05)], warming=False, frames_in_window=32,
                      model_id="m1", stages={"cnn": 3.0}, truth="GrowShape", truth_since=0, epoch=4)


def _roundtrip(message):
    return wire.unpack([bytes(memoryview(p)) for p in wire.pack(message)])


def test_frame_and_feature_round_trip_with_their_buffers():
    frame = _roundtrip(_frame())
    assert frame.stream == "cam0" and frame.seq == 3 and frame.session == 42 and frame.truth == "FadeIn"
    np.testing.assert_array_equal(frame.image, _frame().image)
    vector = np.linspace(-1, 1, 512, dtype=np.float32)
    feature = _roundtrip(wire.Feature(stream="s", seq=1, t_capture=2.0, vector=vector, stages={"cnn": 1.0}))
    np.testing.assert_array_equal(feature.vector, vector)
    assert feature.stages == {"cnn": 1.0}


@pytest.mark.parametrize("message", [
    _label(),
    wire.Stats(process="features:0", t=1.0, counters={"frames": 10, "dropped": 0}),
    wire.StreamStart(stream="cam0", source="synthetic:0", fps=15.0, width=224, height=224, t=1.0),
    wire.StreamEnd(stream="cam0", reason="evicted", t=1.0),
])
def test_header_only_messages_round_trip_and_publish_on_their_topic(message):
    assert _roundtrip(message) == message
    parts = [bytes(memoryview(p)) for p in wire.pack_published(message)]
    assert wire.unpack_published(parts) == message


def test_a_label_carries_its_epoch_and_one_from_before_epochs_reads_as_epoch_0():
    assert _roundtrip(_label()).epoch == 4
    header = msgpack.unpackb(wire.pack(_label())[0])
    del header["epoch"]
    assert wire.unpack([msgpack.packb(header)]).epoch == 0
    header["epoch"] = -1
    with pytest.raises(wire.WireError, match="epoch must be >= 0"):
        wire.unpack([msgpack.packb(header)])


def test_an_assignment_round_trips_and_is_never_published():
    assignment = wire.Assignment(cell="cell-1", epoch=7, streams=["cam0", "cam12"])
    assert _roundtrip(assignment) == assignment
    with pytest.raises(TypeError, match="not published"):
        wire.pack_published(assignment)
    parts = [wire.label_topic("cam0")] + [bytes(memoryview(p)) for p in wire.pack(assignment)]
    with pytest.raises(wire.WireError, match="never published"):
        wire.unpack_published(parts)
    header = msgpack.unpackb(wire.pack(assignment)[0])
    header["streams"] = ["cam0", "bad/name"]
    with pytest.raises(wire.WireError) as error:
        wire.unpack([msgpack.packb(header)])
    assert error.value.reason == "stream"


def _header(**changes) -> bytes:
    header = {"v": wire.SCHEMA_VERSION, "kind": "frame", "stream": "cam0", "seq": 0, "t_capture": 1.0,
              "t_sent": 1.0, "truth": None, "truth_since": -1, "stages": {}, "session": 0, "shape": [2, 2, 3]}
    header.update(changes)
    return msgpack.packb({k: v for k, v in header.items() if v is not _MISSING})


_MISSING = object()


@pytest.mark.parametrize("parts, reason", [
    ([b"\xc1\xff garbage"], "undecodable"),
    ([msgpack.packb([1, 2, 3])], "undecodable"),
    ([_header(v=2), bytes(12)], "version"),
    ([_header(kind="teleport"), bytes(12)], "kind"),
    ([_header(), bytes(11)], "size"),  # truncated buffer
    ([_header(shape=[100000, 100000, 3]), bytes(12)], "shape"),  # huge declared shape: refused before allocating
    ([_header(shape=[2, 2, 4]), bytes(16)], "shape"),
    ([_header(stream="../etc"), bytes(12)], "stream"),
    ([_header(seq="seven"), bytes(12)], "field"),
    ([_header(t_capture=_MISSING), bytes(12)], "field"),
    ([_header()], "parts"),  # frame without its buffer
    ([_header(), bytes(12), b"extra"], "parts"),
    ([], "parts"),
])
def test_malformed_messages_are_refused_with_a_reason(parts, reason):
    with pytest.raises(wire.WireError) as error:
        wire.unpack(parts)
    assert error.value.reason == reason


def test_feature_with_nan_is_refused():
    parts = [bytes(memoryview(p)) for p in wire.pack(wire.Feature(stream="s", seq=0, t_capture=0.0,
                                                                  vector=np.full(4, np.nan, np.float32)))]
    with pytest.raises(wire.WireError, match="NaN"):
        wire.unpack(parts)


def test_published_topic_must_match_the_message_inside():
    parts = [bytes(memoryview(p)) for p in wire.pack_published(_label("cam1"))]
    parts[0] = wire.label_topic("cam2")
    with pytest.raises(wire.WireError) as error:
        wire.unpack_published(parts)
    assert error.value.reason == "topic"


def test_subscribing_to_cam1_does_not_deliver_cam10(zmq_context):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    pub = zmq_context.socket(zmq.PUB)
    pub.bind(endpoint)
    sub = zmq_context.socket(zmq.SUB)
    sub.connect(endpoint)
    sub.setsockopt(zmq.SUBSCRIBE, wire.label_topic("cam1"))
    time.sleep(0.3)  # slow joiner: the subscription must reach the publisher first
    for stream in ("cam10", "cam1", "cam10", "cam1x", "cam1"):
        wire.publish(pub, _label(stream))
    received = [wire.unpack_published(recv_published(sub, 2.0)).stream for _ in range(2)]
    assert received == ["cam1", "cam1"]
    assert not sub.poll(300), "a stream whose name only shares the prefix was delivered"


# ----------------------------------------------------------------------------- hostile values


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_infinity_are_refused_everywhere(bad):
    cases = [_header(t_capture=bad), _header(t_sent=bad), _header(stages={"cnn": bad})]
    for header in cases:
        with pytest.raises(wire.WireError) as error:
            wire.unpack([header, bytes(12)])
        assert error.value.reason == "not_finite"
    label = wire.pack(_label())
    header = msgpack.unpackb(label[0])
    header["top_k"] = [["a", bad]]
    with pytest.raises(wire.WireError):
        wire.unpack([msgpack.packb(header)])


@pytest.mark.parametrize("name", ["cam\n", "-cam", "a/b", "lstm/../", "a b", "", "x" * 65, "cam\r"])
def test_names_that_would_forge_topics_log_lines_or_options_are_refused(name):
    with pytest.raises(wire.WireError) as error:
        wire.unpack([_header(stream=name), bytes(12)])
    assert error.value.reason == "stream"
    stats = {"v": wire.SCHEMA_VERSION, "kind": wire.STATS, "process": name, "t": 1.0, "counters": {}}
    with pytest.raises(wire.WireError) as error:
        wire.unpack([msgpack.packb(stats)])
    assert error.value.reason == "process"


def test_names_in_any_script_round_trip_on_their_topic():
    end = wire.StreamEnd(stream="κάμερα:1", reason="stopped", t=1.0, session=2**40 + 7)
    parts = [bytes(memoryview(p)) for p in wire.pack_published(end)]
    assert parts[0] == "event/κάμερα:1/".encode()
    assert wire.unpack_published(parts) == end


def test_headers_are_measured_and_bounded_before_they_are_used():
    with pytest.raises(wire.WireError) as error:
        wire.unpack([msgpack.packb({"v": 1, "kind": "stats", "pad": "x" * wire.MAX_HEADER_BYTES})])
    assert error.value.reason == "header_size"
    for hostile in (b"\x91" * 20_000 + b"\x90",  # nested 20,000 deep
                    b"\xdd" + (20_000).to_bytes(4, "big") + b"\x80" * 20_000,  # 20,000 empty maps
                    msgpack.packb({"v": 1, "kind": "stats", "s": "y" * (8 * wire.MAX_TEXT)})):  # one long string
        with pytest.raises(wire.WireError) as error:
            wire.unpack([hostile])
        assert error.value.reason == "undecodable"


def test_a_feature_batch_round_trips_each_frame_with_its_own_fields():
    vectors = np.arange(3 * 512, dtype=np.float32).reshape(3, 512)
    features = [wire.Feature(stream=f"cam{i}", seq=10 + i, t_capture=100.0 + i, vector=vectors[i], truth="FadeIn",
                             truth_since=i, stages={"cnn": 2.0 + i}, session=5) for i in range(3)]
    batch = _roundtrip(wire.FeatureBatch(features))
    assert isinstance(batch, wire.FeatureBatch) and len(batch.features) == 3
    for sent, got in zip(features, batch.features):
        assert (got.stream, got.seq, got.t_capture, got.truth, got.truth_since, got.stages, got.session) == \
            (sent.stream, sent.seq, sent.t_capture, sent.truth, sent.truth_since, sent.stages, sent.session)
        np.testing.assert_array_equal(got.vector, sent.vector)
        assert got.t_sent > 0


def test_a_malformed_feature_batch_is_refused_with_its_reason():
    good = wire.pack(wire.FeatureBatch([wire.Feature(stream="a", seq=0, t_capture=1.0, vector=np.ones(4, np.float32)),
                                        wire.Feature(stream="b", seq=0, t_capture=1.0, vector=np.ones(4, np.float32))]))
    header = msgpack.unpackb(bytes(good[0]))
    buffer = bytes(memoryview(good[1]))

    def refused(changed_header, changed_buffer=buffer):
        with pytest.raises(wire.WireError) as error:
            wire.unpack([msgpack.packb(changed_header), changed_buffer])
        return error.value.reason

    assert refused(header, buffer[:-4]) == "size"
    assert refused({**header, "items": []}) == "field"
    assert refused({**header, "dim": 0}) == "shape"
    assert refused({**header, "items": [header["items"][0], {**header["items"][1], "stream": "bad name"}]}) == "stream"
    assert refused(header, np.full(8, np.nan, np.float32).tobytes()) == "value"
    with pytest.raises(wire.WireError) as error:
        wire.unpack([msgpack.packb(header)])
    assert error.value.reason == "parts"


@pytest.mark.parametrize("message", [
    wire.Hello(stream="cam0", want=1, t=5.0),
    wire.Credit(worker=2**59 + 3, grant=4, lease_ms=1000.0, eta_ms=42.5, done=[0, 1, 7]),
    wire.Credit(worker=1, grant=0, lease_ms=250.0, eta_ms=0.0),
])
def test_credit_dispatch_messages_round_trip_and_are_never_published(message):
    assert _roundtrip(message) == message
    with pytest.raises(TypeError):
        wire.pack_published(message)
    with pytest.raises(wire.WireError) as error:
        wire.unpack_published([b"label/cam0/", *[bytes(memoryview(p)) for p in wire.pack(message)]])
    assert error.value.reason == "kind"


@pytest.mark.parametrize("changes", [{"grant": -1}, {"grant": wire.MAX_CREDITS + 1}, {"lease_ms": 0},
                                     {"eta_ms": -1.0}, {"done": [1, -2]}, {"done": "1,2"}, {"worker": "w"}])
def test_a_credit_out_of_range_is_refused(changes):
    header = msgpack.unpackb(bytes(wire.pack(wire.Credit(worker=1, grant=1, lease_ms=1000.0, eta_ms=1.0))[0]))
    with pytest.raises(wire.WireError) as error:
        wire.unpack([msgpack.packb({**header, **changes})])
    assert error.value.reason == "field"
