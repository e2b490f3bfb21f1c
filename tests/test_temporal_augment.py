"""Training windows replayed at other speeds and with drops (models/temporal_augment.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from configs.settings import LstmRecipe
from models.temporal_augment import draw_speed, interpolate, replay, replay_positions, replayed_window
from models.train_lstm import ReplayedWindowDataset, VideoFeatures, WindowDataset, validation_windows


def ramp(length: int, dim: int = 4) -> torch.Tensor:
    """Features that grow by one per frame in every channel: a replayed frame's value is its position."""
    return torch.arange(length, dtype=torch.float32).unsqueeze(1).repeat(1, dim)


@pytest.mark.parametrize("speed", [0.25, 0.5, 1.0, 1.25, 2.0])
def test_positions_step_by_the_asked_speed_without_drops(speed):
    positions = replay_positions(40, speed, 0.0, np.random.default_rng(0))
    assert np.allclose(np.diff(positions), speed)
    assert 0 <= positions[0] < speed and positions[-1] <= 39 < positions[-1] + speed
    assert len(positions) == pytest.approx(39 / speed, abs=1.01)


def test_drops_skip_whole_frames_at_about_the_asked_rate():
    rng = np.random.default_rng(1)
    steps = np.concatenate([np.diff(replay_positions(4000, 0.5, 0.3, rng)) for _ in range(5)])
    frames = steps / 0.5
    assert np.allclose(frames, np.round(frames)) and round(frames.min()) == 1
    # after each kept frame the next is dropped with probability 0.3: mean step 1 / 0.7
    assert frames.mean() == pytest.approx(1 / 0.7, rel=0.03)
    assert (frames > 1).mean() == pytest.approx(0.3, abs=0.02)


def test_interpolation_is_exact_at_frames_and_linear_between():
    features = torch.randn(6, 3)
    assert torch.equal(interpolate(features, np.array([0.0, 2.0, 5.0])), features[[0, 2, 5]])
    halfway = interpolate(features, np.array([1.25]))[0]
    assert torch.allclose(halfway, 0.75 * features[1] + 0.25 * features[2])


def test_speeds_are_drawn_within_the_range_on_a_log_scale():
    rng = np.random.default_rng(2)
    speeds = np.array([draw_speed(rng, 0.25, 4.0) for _ in range(20000)])
    assert speeds.min() >= 0.25 and speeds.max() <= 4.0
    assert np.median(speeds) == pytest.approx(1.0, rel=0.05)  # the log-scale middle
    with pytest.raises(ValueError, match="min_speed"):
        draw_speed(rng, 2.0, 1.0)


def test_a_replayed_window_has_the_asked_step_and_fits_in_the_clip():
    rng = np.random.default_rng(3)
    for _ in range(200):
        window = replayed_window(ramp(40), 32, rng, min_speed=0.25, max_speed=1.2, drop_rate=0.0)
        steps = np.diff(window[:, 0].numpy())
        assert len(window) in (32, 33) and 0 <= window.min() and window.max() <= 39
        assert np.allclose(steps, steps[0], atol=1e-4) and 0.25 - 1e-4 <= steps[0] <= 1.2 + 1e-4


def test_a_clip_too_short_for_any_draw_gives_no_window():
    assert replayed_window(ramp(20), 32, np.random.default_rng(4), min_speed=1.0, max_speed=2.0, drop_rate=0.3) is None


def recipe(**changes) -> LstmRecipe:
    return LstmRecipe(**{"window": 8, "window_stride": 4, **changes})


def test_the_dataset_feeds_differences_of_the_replayed_clip():
    video = VideoFeatures("v", 3, ramp(40), group=1, frames=ramp(40))
    slow = ReplayedWindowDataset([video], 8, 4, "differences", recipe(augment_min_speed=0.5, augment_max_speed=0.5,
                                                                       augment_drop_rate=0.0), share=1.0, seed=0)
    for index in range(len(slow)):
        sequence, label = slow[index]
        assert label == 3 and sequence.shape == (8, 4)
        assert torch.allclose(sequence[1:], torch.full((7, 4), 0.5))  # half a frame of change per step
    plain = ReplayedWindowDataset([video], 8, 4, "differences", recipe(), share=0.0, seed=0)
    assert all(torch.equal(plain[i][0], WindowDataset([video], 8, 4)[i][0]) for i in range(len(plain)))


def test_validation_adds_replayed_windows_drawn_once():
    videos = [VideoFeatures(f"v{i}", i % 2, ramp(40), group=1, frames=ramp(40)) for i in range(4)]
    plain = validation_windows(videos, recipe(augment_share=0.0), "differences")
    assert len(plain) == len(WindowDataset(videos, 8, 4))
    mixed = validation_windows(videos, recipe(augment_share=0.5), "differences")
    assert len(mixed) == 2 * len(plain)
    assert all(torch.equal(mixed[i][0], mixed[i][0]) for i in range(len(mixed)))  # the same windows each epoch
    again = validation_windows(videos, recipe(augment_share=0.5), "differences")
    assert all(torch.equal(mixed[i][0], again[i][0]) for i in range(len(mixed)))  # seeded: every run the same
    steps = {round(float(mixed[i][0][-1, 0]), 4) for i in range(len(plain), len(mixed))}
    assert len(steps) > 3 and steps != {1.0}  # speeds other than the clip's


def test_replaying_keeps_the_noise_of_each_frame_and_slows_only_the_trend():
    rng = np.random.default_rng(5)
    noise = torch.from_numpy(rng.normal(0, 1, (400, 64)).astype(np.float32))
    clip = ramp(400, 64) * 0.1 + noise
    slow = replay(clip, np.arange(0, 399, 0.25), rng)
    trend = np.polyfit(np.arange(len(slow)), slow.mean(1).numpy(), 1)[0]
    assert trend == pytest.approx(0.1 * 0.25, rel=0.1)  # the clip's trend, 4x slower
    # per-frame noise as strong as the clip's (plain interpolation would average much of it away)
    assert (slow - slow.mean(1, keepdim=True)).std().item() == pytest.approx(1.0, rel=0.15)
    assert interpolate(clip, np.arange(0, 399, 0.25)).std(1).mean().item() < 0.85
