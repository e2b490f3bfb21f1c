"""Tests for the procedural action renderer, the synthetic camera and the UCF101-layout set writer."""

from __future__ import annotations

import argparse
import json
import pathlib

import cv2
import numpy as np
import pytest

from models.synthetic_set import (
    SPLIT_DIR,
    VIDEO_DIR,
    SyntheticSetMismatchError,
    add_arguments,
    clip_groups,
    is_test_group,
    main,
    number_of_test_groups,
    write_synthetic_set,
)
from models.synthetic import ACTIVITIES, REVERSED_PAIRS, SyntheticCamera, render_clip

FORWARD_OF_PAIRS = [forward for forward, _ in REVERSED_PAIRS]
UNPAIRED = [a for a in ACTIVITIES if all(a not in pair for pair in REVERSED_PAIRS)]


def clip(activity: str, seed: int, n_frames: int = 16, width: int = 160, height: int = 120) -> np.ndarray:
    return render_clip(activity, n_frames, np.random.default_rng(seed), width, height)


# ---------------------------------------------------------------------------
# Class list


def test_class_list_has_three_reversed_pairs_and_two_distinct_classes() -> None:
    assert len(ACTIVITIES) == len(set(ACTIVITIES)) == 8
    paired = [name for pair in REVERSED_PAIRS for name in pair]
    assert len(REVERSED_PAIRS) == 3
    assert len(paired) == len(set(paired)), "each class belongs to at most one pair"
    assert set(paired) <= set(ACTIVITIES)
    assert len(UNPAIRED) == 2
    assert all(name[0].isupper() and name.isalnum() for name in ACTIVITIES), "UCF101-style CamelCase"


# ---------------------------------------------------------------------------
# render_clip


@pytest.mark.parametrize("activity", ACTIVITIES)
def test_render_clip_shape_and_dtype(activity: str) -> None:
    frames = clip(activity, seed=1, n_frames=5, width=96, height=64)
    assert frames.shape == (5, 64, 96, 3)
    assert frames.dtype == np.uint8
    assert frames.flags.c_contiguous


@pytest.mark.parametrize("activity", ACTIVITIES)
def test_render_clip_is_deterministic_per_seed(activity: str) -> None:
    np.testing.assert_array_equal(clip(activity, seed=3), clip(activity, seed=3))
    assert not np.array_equal(clip(activity, seed=3), clip(activity, seed=4))


@pytest.mark.parametrize("forward, backward", REVERSED_PAIRS)
def test_reversed_class_is_partner_played_backwards(forward: str, backward: str) -> None:
    for n_frames in (1, 7, 20):
        np.testing.assert_array_equal(clip(backward, 5, n_frames), clip(forward, 5, n_frames)[::-1])


@pytest.mark.parametrize("activity", ACTIVITIES)
def test_frames_are_not_static(activity: str) -> None:
    frames = clip(activity, seed=2, n_frames=24).astype(np.int16)
    assert np.abs(frames[-1] - frames[0]).mean() > 1.0


def test_unknown_activity_error_names_it_and_lists_valid_ones() -> None:
    with pytest.raises(ValueError) as raised:
        render_clip("Juggling", 4, np.random.default_rng(0))
    message = str(raised.value)
    assert "Juggling" in message
    assert all(name in message for name in ACTIVITIES)


def test_render_clip_rejects_empty_clips() -> None:
    with pytest.raises(ValueError):
        render_clip("GrowShape", 0, np.random.default_rng(0))


def _change_from_first_frame(frames: np.ndarray) -> np.ndarray:
    """Mean absolute difference of every frame from the first one: how much has been added so far."""
    as_int = frames.astype(np.int16)
    return np.abs(as_int - as_int[0]).mean(axis=(1, 2, 3))


@pytest.mark.parametrize("activity", FORWARD_OF_PAIRS)
def test_amount_of_change_rises_within_every_32_frame_window(activity: str) -> None:
    for seed in range(3):
        change = _change_from_first_frame(clip(activity, seed, n_frames=96))
        rise_per_window = change[31:] - change[:-31]
        assert rise_per_window.min() > 0.5, f"{activity} seed {seed}: a 32-frame window barely changes"


def test_grow_shape_foreground_area_grows_by_a_large_margin() -> None:
    for seed in range(3):
        frames = clip("GrowShape", seed, n_frames=48).astype(np.int16)
        # The shape colour is chosen to contrast with the background; noise and jitter stay far below 40.
        foreground = np.abs(frames - frames[0]).max(axis=3) > 40
        area_early, area_last = foreground[1].mean(), foreground[-1].mean()
        # Fractions of the whole frame; the final shape spans ~85-97% of the 84-pixel stage.
        assert area_last > 0.08 and area_last > 8 * area_early, (seed, area_early, area_last)


@pytest.mark.parametrize("activity", ACTIVITIES)
def test_moving_content_stays_inside_the_central_crop(activity: str) -> None:
    # Downstream keeps a center square of 75% of the short side; outside it only noise/jitter may vary.
    height, width = 120, 160
    side = int(0.75 * height)
    outside = np.ones((height, width), dtype=bool)
    top, left = (height - side) // 2, (width - side) // 2
    outside[top : top + side, left : left + side] = False
    for seed in range(3):
        grey = clip(activity, seed, n_frames=40).astype(np.float32).mean(axis=3)
        assert grey.std(axis=0)[outside].max() < 8.0


# ---------------------------------------------------------------------------
# SyntheticCamera


def _take(camera: SyntheticCamera, count: int) -> list[tuple[np.ndarray, str, int]]:
    return [camera.next_frame() for _ in range(count)]


def test_camera_switches_activity_every_segment_and_reports_segment_start() -> None:
    segment = 5
    camera = SyntheticCamera(seed=4, width=64, height=48, segment_frames=segment)
    frames = _take(camera, 4 * segment)
    for index, (frame, activity, start) in enumerate(frames):
        assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8
        assert activity in ACTIVITIES
        assert start == index - index % segment
    labels = [activity for _, activity, _ in frames[::segment]]
    assert all(a != b for a, b in zip(labels, labels[1:])), labels
    assert all(frames[i][1] == frames[i - i % segment][1] for i in range(len(frames)))


def test_camera_is_deterministic_and_respects_activity_subset() -> None:
    subset = ("FadeIn", "BounceBall")
    first = _take(SyntheticCamera(seed=9, width=64, height=48, segment_frames=3, activities=subset), 9)
    second = _take(SyntheticCamera(seed=9, width=64, height=48, segment_frames=3, activities=subset), 9)
    for (frame_a, label_a, start_a), (frame_b, label_b, start_b) in zip(first, second):
        np.testing.assert_array_equal(frame_a, frame_b)
        assert (label_a, start_a) == (label_b, start_b)
    assert {label for _, label, _ in first} == set(subset)


def test_camera_rejects_unknown_activity() -> None:
    with pytest.raises(ValueError, match="Juggling"):
        SyntheticCamera(activities=("GrowShape", "Juggling"))


# ---------------------------------------------------------------------------
# Group split rule


def test_test_groups_follow_ucf101_split_one() -> None:
    assert number_of_test_groups(25) == 7  # UCF101 split 1: groups 1-7 of 25
    assert number_of_test_groups(10) == 3
    assert number_of_test_groups(4) == 1
    assert number_of_test_groups(2) == 1
    assert [g for g in range(1, 11) if is_test_group(g, 10)] == [1, 2, 3]
    with pytest.raises(ValueError):
        number_of_test_groups(1)


@pytest.mark.parametrize("clips_per_class, groups", [(2, 4), (2, 10), (3, 25), (40, 10), (41, 10)])
def test_clips_reach_both_splits(clips_per_class: int, groups: int) -> None:
    numbers = clip_groups(clips_per_class, groups)
    assert len(numbers) == len(set(numbers)) == clips_per_class
    assert any(is_test_group(g, groups) for g, _ in numbers)
    assert any(not is_test_group(g, groups) for g, _ in numbers)
    assert all(1 <= g <= groups and c >= 1 for g, c in numbers)


# ---------------------------------------------------------------------------
# write_synthetic_set on a tiny set

TINY = dict(clips_per_class=2, frames_per_clip=8, seed=3, width=64, height=48, groups=4, progress=False)


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    root = tmp_path_factory.mktemp("synthetic")
    assert write_synthetic_set(root, **TINY) == root
    return root


def _read_lines(path: pathlib.Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def test_set_has_ucf101_layout(tiny_set: pathlib.Path) -> None:
    for activity in ACTIVITIES:
        names = sorted(p.name for p in (tiny_set / VIDEO_DIR / activity).iterdir())
        assert len(names) == 2
        for name in names:
            assert name.startswith(f"v_{activity}_g") and name.endswith(".avi")
            group, clip_number = name[:-4].rsplit("_", 2)[1:]
            assert group[0] == "g" and len(group) == 3 and 1 <= int(group[1:]) <= 4
            assert clip_number[0] == "c" and len(clip_number) == 3 and int(clip_number[1:]) >= 1


def test_set_videos_decode_to_the_written_size_and_length(tiny_set: pathlib.Path) -> None:
    videos = sorted((tiny_set / VIDEO_DIR).glob("*/*.avi"))
    assert len(videos) == 2 * len(ACTIVITIES)
    for video in videos[:3]:
        capture = cv2.VideoCapture(str(video))
        assert capture.isOpened()
        frames = []
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(frame)
        capture.release()
        assert len(frames) == 8
        assert frames[0].shape == (48, 64, 3)


def test_decoded_video_matches_rendered_clip(tiny_set: pathlib.Path) -> None:
    # MJPG is lossy, so compare loosely; this catches wrong colour order, wrong clip or wrong seed.
    from models.synthetic_set import clip_rng

    capture = cv2.VideoCapture(str(tiny_set / VIDEO_DIR / "FadeIn" / "v_FadeIn_g01_c01.avi"))
    decoded = np.stack([capture.read()[1] for _ in range(8)]).astype(np.int16)
    capture.release()
    class_index = ACTIVITIES.index("FadeIn")
    rendered = render_clip("FadeIn", 8, clip_rng(3, class_index, 0), 64, 48).astype(np.int16)
    other = render_clip("FadeIn", 8, clip_rng(4, class_index, 0), 64, 48).astype(np.int16)
    assert np.abs(decoded - rendered).mean() < 6.0
    assert np.abs(decoded - rendered).mean() < np.abs(decoded - other).mean()


def test_split_files_parse_and_keep_groups_apart(tiny_set: pathlib.Path) -> None:
    split_dir = tiny_set / SPLIT_DIR
    class_lines = _read_lines(split_dir / "classInd.txt")
    assert class_lines == [f"{i} {name}" for i, name in enumerate(ACTIVITIES, start=1)]

    train, test = _read_lines(split_dir / "trainlist01.txt"), _read_lines(split_dir / "testlist01.txt")
    assert len(train) + len(test) == 2 * len(ACTIVITIES)
    train_groups, test_groups = set(), set()
    for line in train:
        relative_path, index = line.split(" ")
        activity = relative_path.split("/")[0]
        assert int(index) == ACTIVITIES.index(activity) + 1
        assert (tiny_set / VIDEO_DIR / relative_path).is_file()
        train_groups.add(int(relative_path.rsplit("_g", 1)[1][:2]))
    for line in test:
        assert " " not in line
        assert (tiny_set / VIDEO_DIR / line).is_file()
        test_groups.add(int(line.rsplit("_g", 1)[1][:2]))
    assert train_groups and test_groups
    assert train_groups.isdisjoint(test_groups)
    assert max(test_groups) < min(train_groups), "test split takes the lowest groups"


def test_rerun_with_same_parameters_is_a_no_op(tiny_set: pathlib.Path) -> None:
    video = next((tiny_set / VIDEO_DIR).glob("*/*.avi"))
    before = video.stat().st_mtime_ns
    marker = json.loads((tiny_set / "synthetic.json").read_text())
    assert marker["seed"] == 3 and marker["clips_per_class"] == 2
    assert write_synthetic_set(tiny_set, **TINY) == tiny_set
    assert video.stat().st_mtime_ns == before


def test_rerun_with_other_parameters_raises(tiny_set: pathlib.Path) -> None:
    with pytest.raises(SyntheticSetMismatchError, match="delete"):
        write_synthetic_set(tiny_set, **{**TINY, "seed": 4})


def test_same_seed_writes_identical_files(tiny_set: pathlib.Path, tmp_path: pathlib.Path) -> None:
    write_synthetic_set(tmp_path, **{**TINY, "clips_per_class": 2})
    relative = pathlib.Path(VIDEO_DIR) / "Assemble" / "v_Assemble_g03_c01.avi"
    assert (tmp_path / relative).read_bytes() == (tiny_set / relative).read_bytes()


def test_cli_writes_a_set(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    root = tmp_path / "cli"
    args = parser.parse_args(
        ["--root", str(root), "--clips-per-class", "2", "--frames-per-clip", "3", "--width", "48", "--height", "32"]
    )
    assert main(args) == 0
    assert str(root) in capsys.readouterr().out
    assert len(_read_lines(root / SPLIT_DIR / "classInd.txt")) == len(ACTIVITIES)
