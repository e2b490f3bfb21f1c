"""Activity segments: smoothing with enter/leave thresholds and a minimum duration (models/segments.py),
and the LSTM worker publishing the same segments on `activity/<stream>/` as the offline computation."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import zmq

from configs.settings import load_config
from models.segments import Segmenter, activity_settings, segment_all
from models.window import offline_window_probabilities
from streamer.transport import wire
from streamer.transport.sockets import StopFlag
from tests.conftest import endpoint_overrides, loopback_endpoints, recv_published
from workers.loading import load_sequence_model
from workers.lstm_worker import LstmWorker

CLASSES = ["A", "B", "C"]


def _one_hot(label: int, strength: float = 0.9) -> np.ndarray:
    p = np.full(3, (1 - strength) / 2)
    p[label] = strength
    return p


def _run(probabilities, **settings) -> list:
    n = len(probabilities)
    return segment_all(CLASSES, range(n), np.arange(n) / 10, probabilities, **settings)


SETTINGS = dict(ema_alpha=0.5, enter=0.6, leave=0.4, min_frames=5)


def test_two_activities_give_two_segments_with_boundaries_near_the_change():
    timeline = [_one_hot(0)] * 40 + [_one_hot(1)] * 40
    segments = _run(timeline, **SETTINGS)
    assert [(s.label, s.start_seq) for s in segments] == [("A", 0), ("B", 41)]
    assert segments[0].end_seq in (40, 41) and segments[1].end_seq == 79
    assert segments[0].confidence > 0.8 and segments[0].end_t == pytest.approx(segments[0].end_seq / 10)


def test_a_short_blip_neither_splits_a_segment_nor_makes_one():
    timeline = [_one_hot(0)] * 30 + [_one_hot(2)] * 2 + [_one_hot(0)] * 30
    segments = _run(timeline, **dict(SETTINGS, ema_alpha=0.25))
    assert [(s.label, s.start_seq, s.end_seq) for s in segments] == [("A", 0, 61)]


def test_raw_flicker_between_the_thresholds_keeps_one_segment():
    rng = np.random.default_rng(0)
    timeline = [_one_hot(0, strength=rng.uniform(0.45, 0.95)) for _ in range(100)]
    raw_changes = sum(1 for a, b in zip(timeline, timeline[1:]) if a.argmax() != b.argmax())
    assert raw_changes == 0  # same class, wavering confidence
    assert len(_run(timeline, **SETTINGS)) == 1


def test_a_stream_that_never_gets_confident_has_no_segment():
    assert _run([np.full(3, 1 / 3)] * 50, **SETTINGS) == []


def test_the_start_event_comes_once_the_minimum_duration_is_reached():
    segmenter = Segmenter(CLASSES, **SETTINGS)
    events = [(seq, e) for seq in range(10) for e in segmenter.step(seq, seq / 10, _one_hot(1))]
    assert [(seq, e.event, e.label, e.start_seq) for seq, e in events] == [(4, "start", "B", 0)]
    assert [e.event for e in segmenter.finish()] == ["end"]


def test_bad_thresholds_are_refused():
    with pytest.raises(ValueError, match="leave <= enter"):
        Segmenter(CLASSES, ema_alpha=0.5, enter=0.3, leave=0.5, min_frames=3)


def test_activity_messages_round_trip():
    message = wire.Activity(stream="cam0", event="end", label="FadeIn", confidence=0.9, start_seq=3, start_t=1.5,
                            end_seq=40, end_t=4.0)
    parts = wire.pack_published(message)
    assert parts[0] == b"activity/cam0/"
    assert wire.unpack_published(parts) == message
    bad = wire.pack(message)
    bad[0] = bad[0].replace(b"end", b"mid", 1)
    with pytest.raises(wire.WireError):
        wire.unpack(bad)


def test_the_lstm_worker_publishes_the_segments_the_offline_computation_finds(zmq_context):
    endpoints = loopback_endpoints()
    # Random weights give flat probabilities (~0.14-0.16 for the top class): thresholds within that
    # range still make segments start and end as the input changes from block to block.
    activity = ["activity.ema_alpha=0.5", "activity.enter=0.15", "activity.leave=0.148", "activity.min_frames=3"]
    config = load_config(None, endpoint_overrides(endpoints) + ["lstm.bundle=absent.pt", "lstm.random_window=8"]
                         + activity)
    reference = load_sequence_model(config)
    worker, stop = LstmWorker(config), StopFlag()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    frames = 120
    rng = np.random.default_rng(3)
    features = np.repeat(rng.standard_normal((6, 512)) * 10, frames // 6, axis=0).astype(np.float32)
    got: list[wire.Activity] = []
    try:
        sub = zmq_context.socket(zmq.SUB)
        sub.connect(endpoints["labels"])
        for topic in (b"activity/", b"event/"):
            sub.setsockopt(zmq.SUBSCRIBE, topic)
        push = zmq_context.socket(zmq.PUSH)
        push.connect(endpoints["features"])
        time.sleep(0.5)  # slow joiner
        for seq in range(frames):
            wire.send(push, wire.Feature(stream="s0", seq=seq, t_capture=100.0 + seq, vector=features[seq], session=1))
        wire.send(push, wire.StreamEnd(stream="s0", reason="source ended", t=time.time(), session=1))
        while True:
            message = wire.unpack_published(recv_published(sub, 10))
            if isinstance(message, wire.StreamEnd):
                break
            got.append(message)
    finally:
        stop.set()
        thread.join(5)
    probabilities = offline_window_probabilities(reference.model, features, reference.window)
    settings = config.activity
    expected = segment_all(reference.classes, range(frames), 100.0 + np.arange(frames), probabilities,
                           ema_alpha=settings.ema_alpha, enter=settings.enter, leave=settings.leave,
                           min_frames=settings.min_frames)
    ends = [m for m in got if m.event == "end"]
    assert len(expected) >= 2, "the thresholds should make several segments on this stream"
    assert [(m.label, m.start_seq, m.end_seq, m.start_t, m.end_t) for m in ends] == [
        (e.label, e.start_seq, e.end_seq, e.start_t, e.end_t) for e in expected]
    assert [m.confidence for m in ends] == pytest.approx([e.confidence for e in expected], abs=1e-4)
    assert [m.event for m in got] == ["start", "end"] * len(expected)


def test_the_quality_measures_count_changes_boundaries_and_settled_labels():
    from models.segment_quality import boundary_errors, changes_per_minute, raw_changes, settled_accuracy, true_changes

    truth = ["A"] * 10 + ["B"] * 10
    labels = ["A"] * 9 + ["B", "A"] + ["B"] * 9  # one early flicker, then B one frame late
    assert raw_changes(labels) == [9, 10, 11]
    assert true_changes(truth) == [(10, "B")]
    errors = boundary_errors(true_changes(truth), [(t, labels[t]) for t in raw_changes(labels)], max_error=5)
    assert errors.errors == [1] and errors.missed == 0
    assert boundary_errors([(10, "C")], [(9, "B")], max_error=5).missed == 1
    assert changes_per_minute(3, 600, 15.0) == pytest.approx(4.5)
    # window 4: frames 3..9 (truth A) and 13..19 (truth B) are settled; of those only frame 9 is wrong
    assert settled_accuracy(labels, truth, window=4) == pytest.approx(13 / 14)
    assert settled_accuracy(["B"] * 20, truth, window=4) == pytest.approx(7 / 14)


TUNED = {"ema_alpha": 0.15, "enter": 0.7, "leave": 0.3, "min_frames": 12, "score": 0.69, "configured_score": 0.58}


def test_the_thresholds_chosen_on_validation_are_used_unless_turned_off_or_absent():
    configured = load_config(None, []).activity
    chosen, source = activity_settings(configured, {"activity": TUNED})
    assert (chosen.ema_alpha, chosen.enter, chosen.leave, chosen.min_frames) == (0.15, 0.7, 0.3, 12)
    assert "validation" in source
    off = load_config(None, ["activity.from_bundle=false"]).activity
    assert activity_settings(off, {"activity": TUNED}) == (off, "configured (activity.from_bundle=false)")
    assert activity_settings(configured, {}) == (configured, "configured (the bundle records none)")
    partial = {"activity": {"ema_alpha": 0.15}}
    assert activity_settings(configured, partial)[0] == configured


def test_the_lstm_worker_takes_the_thresholds_its_bundle_records(tmp_path):
    from models import bundle
    from models.networks import SequenceLSTM

    path = tmp_path / "lstm.pt"
    bundle.save_lstm(path, SequenceLSTM(len(CLASSES), hidden=8, layers=1), CLASSES, 4,
                     {"inputs": "features", "activity": TUNED})
    worker = LstmWorker(load_config(None, [f"lstm.bundle={path}"]))
    assert (worker.activity.ema_alpha, worker.activity.enter, worker.activity.leave,
            worker.activity.min_frames) == (0.15, 0.7, 0.3, 12)
    configured = LstmWorker(load_config(None, [f"lstm.bundle={path}", "activity.from_bundle=false"]))
    assert configured.activity == load_config(None, ["activity.from_bundle=false"]).activity
