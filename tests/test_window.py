"""The rolling window: streamed labels equal the offline model on the same 32-frame windows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.networks import SequenceLSTM
from streamer.transport.wire import Feature
from workers.reorder import StreamOrder
from models.window import StaggeredWindows, offline_window_probabilities

WINDOW = 32


def _model(hidden=24, layers=2, classes=5) -> SequenceLSTM:
    torch.manual_seed(1)
    return SequenceLSTM(classes, hidden=hidden, layers=layers).eval()


def _features(frames: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((frames, 512)).astype(np.float32)


@pytest.mark.parametrize("hidden, layers", [(8, 2), (24, 1), (64, 2)])
def test_streamed_probabilities_equal_offline_windows_for_several_streams(hidden, layers):
    model = _model(hidden, layers)
    windows = StaggeredWindows(model, WINDOW, capacity=2)  # capacity 2: also exercises growing the pool
    streams = {name: _features(90, seed) for seed, name in enumerate(["a", "b", "c", "d"])}
    streamed = {name: [] for name in streams}
    for t in range(90):
        names = list(streams)[::-1] if t % 2 else list(streams)  # order within a tick must not matter
        names = [n for n in names if not (n == "d" and t >= 60)]  # one stream stops early
        for output in windows.step([(n, streams[n][t]) for n in names]):
            streamed[output.stream].append(output)
    for name, features in streams.items():
        got = np.stack([o.probabilities for o in streamed[name]])
        expected = offline_window_probabilities(model, features[: len(got)], WINDOW)
        assert np.abs(got - expected).max() <= 1e-4
        assert (got.argmax(1) == expected.argmax(1)).all()


def test_warming_until_the_window_is_full():
    windows = StaggeredWindows(_model(), WINDOW)
    outputs = [windows.step([("s", f)])[0] for f in _features(40, 0)]
    assert [o.warming for o in outputs] == [True] * (WINDOW - 1) + [False] * (40 - WINDOW + 1)
    assert [o.frames_in_window for o in outputs] == [min(i + 1, WINDOW) for i in range(40)]


def test_reset_starts_the_window_again():
    model = _model()
    windows = StaggeredWindows(model, WINDOW)
    features = _features(70, 3)
    for f in features[:50]:
        windows.step([("s", f)])
    windows.reset("s")
    restarted = np.stack([windows.step([("s", f)])[0].probabilities for f in features[50:]])
    expected = offline_window_probabilities(model, features[50:], WINDOW)
    assert np.abs(restarted - expected).max() <= 1e-4


def test_removing_a_stream_keeps_the_others_exact():
    model = _model()
    windows = StaggeredWindows(model, WINDOW)
    a, b, c = _features(60, 1), _features(60, 2), _features(60, 3)
    got_c = []
    for t in range(60):
        batch = [("a", a[t]), ("c", c[t])] + ([("b", b[t])] if t < 20 else [])
        if t == 20:
            windows.remove("b")  # frees a row in the middle of the pool
        got_c.extend(o.probabilities for o in windows.step(batch) if o.stream == "c")
    assert np.abs(np.stack(got_c) - offline_window_probabilities(model, c, WINDOW)).max() <= 1e-4


def test_one_frame_per_stream_per_step():
    windows = StaggeredWindows(_model(), WINDOW)
    f = _features(2, 0)
    with pytest.raises(ValueError, match="at most one frame per stream"):
        windows.step([("s", f[0]), ("s", f[1])])


def _feature(seq: int, session: int = 1, vector=None) -> Feature:
    return Feature(stream="s", seq=seq, t_capture=0.0, vector=vector if vector is not None else np.zeros(512),
                   session=session)


def test_out_of_order_features_come_out_in_order_and_equal_offline():
    """Several feature workers deliver out of order; after reordering the labels equal offline."""
    model = _model()
    features = _features(80, 7)
    rng = np.random.default_rng(0)
    arrival = np.arange(80)
    for start in range(0, 80, 6):  # shuffle within small blocks, as two workers interleave
        rng.shuffle(arrival[start:start + 6])
    order = StreamOrder(wait_s=10.0, max_pending=WINDOW)
    windows = StaggeredWindows(model, WINDOW)
    released, probabilities = [], []
    for seq in arrival:
        for item in order.push(_feature(int(seq), vector=features[seq]), now=0.0):
            if item.restart:
                windows.reset("s")
            released.append(item.feature.seq)
            probabilities.append(windows.step([("s", item.feature.vector)])[0].probabilities)
    assert released == list(range(80))
    assert order.gaps == 0
    expected = offline_window_probabilities(model, features, WINDOW)
    assert np.abs(np.stack(probabilities) - expected).max() <= 1e-4


def test_a_missing_frame_becomes_a_gap_after_the_wait_and_restarts_the_window():
    order = StreamOrder(wait_s=0.2, max_pending=WINDOW)
    assert [r.feature.seq for r in order.push(_feature(0), now=0.0)] == [0]
    assert order.push(_feature(2), now=0.0) == []  # 1 is missing: hold 2
    assert order.release(now=0.1) == []
    released = order.release(now=0.25)
    assert [(r.feature.seq, r.restart) for r in released] == [(2, True)]
    assert order.gaps == 1
    assert order.push(_feature(1), now=0.3) == [] and order.stale == 1  # too late: dropped


def test_joining_a_session_mid_stream_waits_for_frame_zero_then_starts_from_what_arrived():
    order = StreamOrder(wait_s=0.2, max_pending=WINDOW)
    assert order.push(_feature(500), now=0.0) == [] and order.push(_feature(501), now=0.05) == []
    assert [(r.feature.seq, r.restart) for r in order.release(now=0.3)] == [(500, True), (501, False)]


def test_a_new_session_restarts_and_stragglers_of_the_old_one_are_dropped():
    order = StreamOrder(wait_s=1.0, max_pending=WINDOW)
    order.push(_feature(0, session=5), now=0.0)
    order.push(_feature(1, session=5), now=0.0)
    restarted = order.push(_feature(0, session=9), now=0.0)
    assert [(r.feature.seq, r.restart) for r in restarted] == [(0, True)]
    assert order.push(_feature(2, session=5), now=0.0) == [] and order.stale == 1


def test_difference_inputs_streamed_equal_offline_windows_over_the_stream_differences():
    """An LSTM reading x_t - x_{t-1}: the live inputs and windows equal training's, restart included."""
    from models.sequence_inputs import StreamInputs, sequence_inputs

    model = _model()
    features = _features(75, 9)
    inputs, windows = StreamInputs("differences"), StaggeredWindows(model, WINDOW)
    streamed = []
    for t, feature in enumerate(features):
        if t == 50:  # a gap: both the differences and the window start again
            inputs.reset("s")
            windows.reset("s")
        streamed.append(windows.step([("s", inputs.next("s", feature))])[0].probabilities)
    streamed = np.stack(streamed)
    before = offline_window_probabilities(model, sequence_inputs(torch.from_numpy(features[:50]), "differences").numpy(),
                                          WINDOW)
    after = offline_window_probabilities(model, sequence_inputs(torch.from_numpy(features[50:]), "differences").numpy(),
                                         WINDOW)
    assert np.abs(streamed - np.concatenate([before, after])).max() <= 1e-4


def test_a_forged_session_only_interrupts_the_real_one_for_the_reorder_wait():
    order = StreamOrder(wait_s=0.2, max_pending=WINDOW)
    for seq in range(3):
        order.push(_feature(seq, session=5), now=0.0)
    order.push(_feature(2**61, session=2**60), now=1.0)  # forged: a session and a seq of its own
    assert order.push(_feature(3, session=5), now=1.1) == [] and order.stale == 1  # a straggler, for now
    order.push(_feature(4, session=5), now=1.3)  # after the wait: the real session is taken back
    released = order.release(now=1.6)
    assert [(r.feature.seq, r.restart) for r in released] == [(4, True)]
    assert [r.feature.seq for r in order.push(_feature(5, session=5), now=1.7)] == [5]
    assert order.session_changes == 2


def test_a_seq_far_from_the_expected_one_restarts_the_numbering_instead_of_poisoning_it():
    order = StreamOrder(wait_s=0.2, max_pending=WINDOW)
    for seq in range(3):
        order.push(_feature(seq), now=0.0)
    assert [(r.feature.seq, r.restart) for r in order.push(_feature(2**61), now=0.0)] == [(2**61, True)]
    # The real numbers come back: far behind, so the numbering restarts there, and they flow again.
    assert [(r.feature.seq, r.restart) for r in order.push(_feature(3), now=0.1)] == [(3, True)]
    assert [r.feature.seq for r in order.push(_feature(4), now=0.1)] == [4]
    assert order.seq_jumps == 2 and order.stale == 0
