"""UCF101's on-disk layout: the class index, the official train/test split lists, class choice.

    <root>/UCF-101/<Class>/v_<Class>_gXX_cYY.avi
    <root>/ucfTrainTestlist/classInd.txt        "1 ApplyEyeMakeup"
    <root>/ucfTrainTestlist/trainlist0N.txt     "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1"
    <root>/ucfTrainTestlist/testlist0N.txt      "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"

Whole groups (gXX: one actor/setting) sit on one side of a split, so no group is in both. The
synthetic set (models/synthetic_set.py) is written in the same layout, so one reader serves both.
Every error names the missing file or folder and what to do about it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from configs.settings import ActionableError

VIDEO_DIR = "UCF-101"
SPLIT_DIR = "ucfTrainTestlist"
# The lecture's five classes: the default when the data has them and no classes are configured.
LECTURE_CLASSES = ("ApplyEyeMakeup", "ApplyLipstick", "Archery", "BabyCrawling", "BalanceBeam")
SPLITS = ("train", "test")
_GROUP = re.compile(r"_g(\d+)_c(\d+)", re.IGNORECASE)
_HOW_TO_GET = ("unpack UCF101 (UCF101.rar and UCF101TrainTestSplits-RecognitionTask.zip) there, "
               "or write the synthetic set with `python run.py make-synthetic --root {root}`")


class DatasetLayoutError(ActionableError, FileNotFoundError):
    """The UCF101-layout folder is missing a file or folder, or a split list does not parse."""


@dataclass(frozen=True)
class Video:
    relative: str  # "Class/v_Class_g01_c01.avi", as written in the split list
    path: Path  # the video file
    class_name: str
    label: int  # index into the chosen class list (0-based)
    split: str  # "train" or "test"
    group: int  # UCF101 group (actor/setting); 0 when the name has none

    @property
    def stem(self) -> str:
        return Path(self.relative).stem

    @property
    def key(self) -> str:
        """Where this video's frames and features live below their folder: `<split>/<Class>/<stem>`."""
        return f"{self.split}/{self.class_name}/{self.stem}"


@dataclass(frozen=True)
class Split:
    number: int
    classes: list[str]
    train: list[Video]
    test: list[Video]

    def videos(self) -> list[Video]:
        return self.train + self.test


def read_class_index(root: Path) -> list[str]:
    """Class names in classInd.txt order (its 1-based indices must be 1..N)."""
    path = _split_dir(root) / "classInd.txt"
    if not path.is_file():
        raise DatasetLayoutError(f"class index {path} is missing; {_HOW_TO_GET.format(root=root)}")
    entries: dict[int, str] = {}
    for number, line in _lines(path):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise DatasetLayoutError(f"{path} line {number}: expected '<index> <ClassName>', got {line!r}")
        entries[int(parts[0])] = parts[1]
    if sorted(entries) != list(range(1, len(entries) + 1)):
        raise DatasetLayoutError(f"{path}: class indices must run 1..{len(entries)} without gaps")
    return [entries[index] for index in sorted(entries)]


def choose_classes(class_index: list[str], requested: tuple[str, ...] | list[str] = ()) -> list[str]:
    """The classes to train on, in classInd order.

    Requested classes (data.classes) when given; otherwise the lecture's five when the data has
    them all; otherwise every class in the index.
    """
    if requested:
        unknown = [name for name in requested if name not in class_index]
        if unknown:
            raise DatasetLayoutError(f"classes {', '.join(unknown)} are not in classInd.txt; "
                                     f"known classes: {', '.join(class_index)}")
        if len(set(requested)) < 2:
            raise DatasetLayoutError("data.classes needs at least two different classes")
        return [name for name in class_index if name in requested]
    if all(name in class_index for name in LECTURE_CLASSES):
        return [name for name in class_index if name in LECTURE_CLASSES]
    return list(class_index)


def read_split(root: Path, split: int = 1, classes: tuple[str, ...] | list[str] = ()) -> Split:
    """The official split `split` (1, 2 or 3), restricted to the chosen classes."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetLayoutError(f"UCF101-layout folder {root} does not exist; {_HOW_TO_GET.format(root=root)}")
    if not (root / VIDEO_DIR).is_dir():
        raise DatasetLayoutError(f"video folder {root / VIDEO_DIR} is missing; {_HOW_TO_GET.format(root=root)}")
    if split not in (1, 2, 3):
        raise DatasetLayoutError(f"data.split must be 1, 2 or 3 (UCF101's official splits), got {split}")
    class_index = read_class_index(root)
    chosen = choose_classes(class_index, classes)
    for name in chosen:
        if not (root / VIDEO_DIR / name).is_dir():
            raise DatasetLayoutError(f"class folder {root / VIDEO_DIR / name} is missing (class {name} is in "
                                     f"classInd.txt); restore it or leave the class out with data.classes")
    train = _read_list(root, f"trainlist{split:02d}.txt", "train", class_index, chosen)
    test = _read_list(root, f"testlist{split:02d}.txt", "test", class_index, chosen)
    shared = {video.relative for video in train} & {video.relative for video in test}
    if shared:
        raise DatasetLayoutError(f"split {split}: {len(shared)} videos are in both the train and the test list, "
                                 f"e.g. {sorted(shared)[0]}")
    return Split(number=split, classes=chosen, train=train, test=test)


def _read_list(root: Path, name: str, split: str, class_index: list[str], chosen: list[str]) -> list[Video]:
    path = _split_dir(root) / name
    if not path.is_file():
        raise DatasetLayoutError(f"split list {path} is missing; {_HOW_TO_GET.format(root=root)}")
    folders = {class_name.lower(): class_name for class_name in class_index}
    labels = {class_name: label for label, class_name in enumerate(chosen)}
    videos = []
    for number, line in _lines(path):
        parts = line.split()
        relative = parts[0].replace("\\", "/")
        folder = relative.split("/")[0]
        # UCF101 spells a few folders with different case than classInd (HandstandPushups vs HandStand...).
        class_name = folders.get(folder.lower())
        if "/" not in relative or class_name is None:
            raise DatasetLayoutError(f"{path} line {number}: {relative!r} is not '<Class>/<video>' with a class "
                                     f"from classInd.txt")
        if len(parts) > 1:
            if not parts[1].isdigit() or not 1 <= int(parts[1]) <= len(class_index):
                raise DatasetLayoutError(f"{path} line {number}: class index {parts[1]!r} is not in classInd.txt")
            if class_index[int(parts[1]) - 1] != class_name:
                raise DatasetLayoutError(f"{path} line {number}: index {parts[1]} is "
                                         f"{class_index[int(parts[1]) - 1]} in classInd.txt, "
                                         f"but the video is in folder {folder}")
        if class_name not in labels:
            continue
        match = _GROUP.search(Path(relative).stem)
        videos.append(Video(relative=relative, path=root / VIDEO_DIR / relative, class_name=class_name,
                            label=labels[class_name], split=split, group=int(match.group(1)) if match else 0))
    return videos


def _split_dir(root: Path) -> Path:
    path = Path(root) / SPLIT_DIR
    if not path.is_dir():
        raise DatasetLayoutError(f"split folder {path} is missing; {_HOW_TO_GET.format(root=root)}")
    return path


def _lines(path: Path) -> list[tuple[int, str]]:
    """Non-empty lines with their 1-based numbers (UCF101's lists have Windows line endings)."""
    text = path.read_text(encoding="utf-8-sig")
    return [(number, line.strip()) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
