"""Write the procedural synthetic set as real video files in UCF101's on-disk layout.

    root/UCF-101/<Class>/v_<Class>_gXX_cYY.avi      (MJPG .avi written by cv2.VideoWriter)
    root/ucfTrainTestlist/classInd.txt             "1 ClassName"
    root/ucfTrainTestlist/trainlist01.txt          "ClassName/v_ClassName_g05_c02.avi 3"
    root/ucfTrainTestlist/testlist01.txt           "ClassName/v_ClassName_g01_c01.avi"
    root/synthetic.json                            parameters; written last, marks the set complete

so the same preparation code reads this set and the real UCF101.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import pathlib
from collections.abc import Callable, Iterator
from typing import NamedTuple

import cv2
import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from configs.exit_codes import ExitCode
from configs.settings import ActionableError, add_config_arguments, from_args
from models.files import write_json_atomically
from models.synthetic import ACTIVITIES, render_clip

VIDEO_DIR = "UCF-101"
SPLIT_DIR = "ucfTrainTestlist"
MARKER_FILE = "synthetic.json"
MARKER_FORMAT = 1
TEST_GROUP_FRACTION = 0.3  # UCF101 split 1 tests on groups 1-7 of 25 (28%)


class SyntheticSetMismatchError(ActionableError, FileExistsError):
    """A synthetic set with different parameters already exists at the requested root."""


class SyntheticSetParameterError(ActionableError, ValueError):
    """Parameters that cannot make a usable set (too few groups or clips for both splits, ...)."""


class PlannedClip(NamedTuple):
    class_index: int  # 0-based position in ACTIVITIES
    clip_index: int  # 0-based clip number within the class
    group: int  # 1-based UCF101-style group
    relative_path: str  # "<Class>/v_<Class>_gXX_cYY.avi", relative to UCF-101/


def number_of_test_groups(groups: int) -> int:
    """How many of the lowest-numbered groups form the test split: ~30%, at least 1, leaving at least 1 for training.

    Whole groups go to one side, as in UCF101, so clips sharing a group (same actor/setting there) never
    straddle train and test. For 25 groups this gives 7, UCF101's split 1.
    """
    if groups < 2:
        raise SyntheticSetParameterError(f"need at least 2 groups to have both a train and a test split, "
                                         f"got {groups}")
    return min(groups - 1, max(1, int(groups * TEST_GROUP_FRACTION)))


def is_test_group(group: int, groups: int) -> bool:
    """True when 1-based `group` belongs to the test split."""
    return group <= number_of_test_groups(groups)


def clip_groups(clips_per_class: int, groups: int) -> list[tuple[int, int]]:
    """(group, clip-within-group), both 1-based, for each clip of a class in order.

    Clips are spread over groups in contiguous blocks, so with fewer clips than groups they still reach
    the high (train) groups instead of piling into the low (test) ones.
    """
    numbers: list[tuple[int, int]] = []
    clips_in_group: dict[int, int] = {}
    for clip_index in range(clips_per_class):
        group = clip_index * groups // clips_per_class + 1
        clips_in_group[group] = clips_in_group.get(group, 0) + 1
        numbers.append((group, clips_in_group[group]))
    return numbers


def clip_name(activity: str, group: int, clip: int) -> str:
    return f"v_{activity}_g{group:02d}_c{clip:02d}.avi"


def clip_rng(seed: int, class_index: int, clip_index: int) -> np.random.Generator:
    """Independent, reproducible stream per clip: the same clip is identical however many others are written."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(class_index, clip_index)))


def write_synthetic_set(
    root: pathlib.Path,
    clips_per_class: int = 40,
    frames_per_clip: int = 64,
    seed: int = 0,
    width: int = 160,
    height: int = 120,
    fps: float = 25.0,
    groups: int = 10,
    progress: bool = True,
) -> pathlib.Path:
    """Write the synthetic set under `root` (if not already there) and return `root`.

    Re-running with the same parameters on a complete set is a no-op; different parameters raise
    SyntheticSetMismatchError. An interrupted run has no marker and is simply rewritten.
    """
    root = pathlib.Path(root)
    _check_parameters(clips_per_class, frames_per_clip, seed, groups)
    parameters = _marker_parameters(clips_per_class, frames_per_clip, seed, width, height, fps, groups)
    if _existing_set_matches(root, parameters):
        return root

    layout = _clip_layout(clips_per_class, groups)
    with _clip_progress(len(layout), enabled=progress) as advance:
        for planned in layout:
            rng = clip_rng(seed, planned.class_index, planned.clip_index)
            frames = render_clip(ACTIVITIES[planned.class_index], frames_per_clip, rng, width, height)
            _write_video(root / VIDEO_DIR / planned.relative_path, frames, fps)
            advance()
    _write_split_lists(root / SPLIT_DIR, layout, groups)
    write_json_atomically(root / MARKER_FILE, parameters, indent=2)
    return root


def _check_parameters(clips_per_class: int, frames_per_clip: int, seed: int, groups: int) -> None:
    number_of_test_groups(groups)  # validates groups
    if clips_per_class < 2:
        raise SyntheticSetParameterError(f"clips_per_class must be at least 2 (one test and one train clip), "
                                         f"got {clips_per_class}")
    if frames_per_clip < 1:
        raise SyntheticSetParameterError(f"frames_per_clip must be at least 1, got {frames_per_clip}")
    if seed < 0:
        raise SyntheticSetParameterError(f"seed must be non-negative, got {seed}")


def _marker_parameters(
    clips_per_class: int, frames_per_clip: int, seed: int, width: int, height: int, fps: float, groups: int
) -> dict[str, object]:
    return {
        "format": MARKER_FORMAT,
        "activities": list(ACTIVITIES),
        "clips_per_class": int(clips_per_class),
        "frames_per_clip": int(frames_per_clip),
        "seed": int(seed),
        "width": int(width),
        "height": int(height),
        "fps": float(fps),
        "groups": int(groups),
    }


def _existing_set_matches(root: pathlib.Path, parameters: dict[str, object]) -> bool:
    marker = root / MARKER_FILE
    if not marker.exists():
        return False
    try:
        existing = json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise SyntheticSetMismatchError(
            f"{marker} is unreadable ({error}); delete {root} or pick another root"
        ) from error
    if existing == parameters:
        return True
    differences = ", ".join(
        f"{key}: existing {existing.get(key)!r} vs requested {parameters.get(key)!r}"
        for key in sorted(set(existing) | set(parameters))
        if existing.get(key) != parameters.get(key)
    )
    raise SyntheticSetMismatchError(
        f"a synthetic set with different parameters already exists at {root} ({differences}); "
        f"delete that folder or pick another root"
    )


def _clip_layout(clips_per_class: int, groups: int) -> list[PlannedClip]:
    """Every clip of the set, in UCF101's list order (class, then group, then clip)."""
    return [
        PlannedClip(class_index, clip_index, group, f"{activity}/{clip_name(activity, group, clip)}")
        for class_index, activity in enumerate(ACTIVITIES)
        for clip_index, (group, clip) in enumerate(clip_groups(clips_per_class, groups))
    ]


def _write_video(path: pathlib.Path, frames: np.ndarray, fps: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(
            f"cv2.VideoWriter could not open {path} for MJPG .avi output; "
            f"check the folder is writable and that this OpenCV build has video writing support"
        )
    try:
        for frame in frames:
            writer.write(frame)
    finally:
        writer.release()


def _write_split_lists(split_dir: pathlib.Path, layout: list[PlannedClip], groups: int) -> None:
    """classInd.txt, trainlist01.txt and testlist01.txt with UCF101's line formats (1-based class index)."""
    split_dir.mkdir(parents=True, exist_ok=True)
    train_lines, test_lines = [], []
    for planned in layout:
        if is_test_group(planned.group, groups):
            test_lines.append(planned.relative_path)
        else:
            train_lines.append(f"{planned.relative_path} {planned.class_index + 1}")
    class_lines = [f"{index} {activity}" for index, activity in enumerate(ACTIVITIES, start=1)]
    _write_lines(split_dir / "classInd.txt", class_lines)
    _write_lines(split_dir / "trainlist01.txt", train_lines)
    _write_lines(split_dir / "testlist01.txt", test_lines)


def _write_lines(path: pathlib.Path, lines: list[str]) -> None:
    path.write_text("".join(f"{line}\n" for line in lines))


@contextlib.contextmanager
def _clip_progress(total: int, enabled: bool) -> Iterator[Callable[[], None]]:
    """Yield a function to call once per written clip; shows a rich progress bar when enabled."""
    if not enabled:
        yield lambda: None
        return
    columns = (
        TextColumn("[bold]writing synthetic clips"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns) as bar:
        task = bar.add_task("clips", total=total)
        yield lambda: bar.advance(task)


# ---------------------------------------------------------------------------
# CLI hooks for run.py's `make-synthetic` subcommand.


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--root", type=pathlib.Path, default=None,
                        help="folder to hold UCF-101/ and ucfTrainTestlist/ (default: data.ucf_root of the config)")
    parser.add_argument("--clips-per-class", type=int, default=None,
                        help="clips per activity (default: synthetic.clips_per_class of the config)")
    parser.add_argument("--frames-per-clip", type=int, default=None,
                        help="frames per clip (default: synthetic.frames_per_clip of the config)")
    parser.add_argument("--seed", type=int, default=None, help="seed for all clips (default: synthetic.seed)")
    parser.add_argument("--width", type=int, default=160, help="frame width in pixels")
    parser.add_argument("--height", type=int, default=120, help="frame height in pixels")
    parser.add_argument("--groups", type=int, default=None,
                        help="UCF101-style groups; the lowest ~30%% are the test split (default: synthetic.groups)")


def main(args: argparse.Namespace) -> int:
    config = from_args(args)  # the same defaults as `run.py demo` and `prepare` with the same --config
    synthetic = config.synthetic

    def chosen(value, configured):
        return configured if value is None else value

    root = write_synthetic_set(
        pathlib.Path(chosen(args.root, config.data.ucf_root)),
        clips_per_class=chosen(args.clips_per_class, synthetic.clips_per_class),
        frames_per_clip=chosen(args.frames_per_clip, synthetic.frames_per_clip),
        seed=chosen(args.seed, synthetic.seed),
        width=args.width,
        height=args.height,
        groups=chosen(args.groups, synthetic.groups),
    )
    print(f"synthetic set ready in {root}: videos in {root / VIDEO_DIR}, split lists in {root / SPLIT_DIR}")
    return ExitCode.OK
