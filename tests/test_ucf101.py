"""UCF101 split parsing on hand-written split files: class mapping, disjoint groups, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from models import ucf101
from models.ucf101 import DatasetLayoutError, LECTURE_CLASSES, choose_classes, read_class_index, read_split


def write_layout(root: Path, classes: list[str], train: list[str], test: list[str], split: int = 1) -> Path:
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    # UCF101's own files have Windows line endings; the parser must not care.
    (lists / "classInd.txt").write_text("".join(f"{i} {name}\r\n" for i, name in enumerate(classes, start=1)))
    (lists / f"trainlist{split:02d}.txt").write_text("".join(f"{line}\r\n" for line in train))
    (lists / f"testlist{split:02d}.txt").write_text("".join(f"{line}\r\n" for line in test))
    for name in classes:
        (root / "UCF-101" / name).mkdir(parents=True)
    return root


def three_classes(root: Path) -> Path:
    classes = ["Archery", "Basketball", "Biking"]
    train = [f"{name}/v_{name}_g{g:02d}_c01.avi {i}" for i, name in enumerate(classes, start=1) for g in (8, 9)]
    test = [f"{name}/v_{name}_g{g:02d}_c01.avi" for name in classes for g in (1, 2)]
    return write_layout(root, classes, train, test)


def test_split_maps_classes_to_labels_and_keeps_groups_apart(tmp_path):
    split = read_split(three_classes(tmp_path), 1)
    assert split.classes == ["Archery", "Basketball", "Biking"]
    assert len(split.train) == 6 and len(split.test) == 6
    assert {(v.class_name, v.label) for v in split.train} == {("Archery", 0), ("Basketball", 1), ("Biking", 2)}
    assert {v.label for v in split.test} == {0, 1, 2}
    assert {v.group for v in split.train}.isdisjoint({v.group for v in split.test})
    video = split.test[0]
    assert video.path == tmp_path / "UCF-101" / "Archery" / "v_Archery_g01_c01.avi"
    assert video.key == "test/Archery/v_Archery_g01_c01" and video.split == "test"


def test_chosen_classes_are_relabelled_from_zero(tmp_path):
    split = read_split(three_classes(tmp_path), 1, classes=("Biking", "Basketball"))
    assert split.classes == ["Basketball", "Biking"]  # classInd order, not request order
    assert {(v.class_name, v.label) for v in split.videos()} == {("Basketball", 0), ("Biking", 1)}


def test_default_classes_are_the_lecture_five_when_present():
    index = ["Zumba", *LECTURE_CLASSES, "Yoga"]
    assert choose_classes(index) == list(LECTURE_CLASSES)
    without_one = [name for name in index if name != "Archery"]
    assert choose_classes(without_one) == without_one


def test_class_index_must_be_numbered_without_gaps(tmp_path):
    root = three_classes(tmp_path)
    (root / "ucfTrainTestlist" / "classInd.txt").write_text("1 Archery\n3 Biking\n")
    with pytest.raises(DatasetLayoutError, match="1..2"):
        read_class_index(root)


@pytest.mark.parametrize("missing, named", [
    ("ucfTrainTestlist/classInd.txt", "classInd.txt"),
    ("ucfTrainTestlist/testlist01.txt", "testlist01.txt"),
    ("UCF-101/Biking", "UCF-101/Biking"),
])
def test_missing_pieces_are_named(tmp_path, missing, named):
    root = three_classes(tmp_path)
    target = root / missing
    if target.is_dir():
        target.rmdir()
    else:
        target.unlink()
    with pytest.raises(DatasetLayoutError) as error:
        read_split(root, 1)
    assert named in str(error.value)


def test_missing_root_says_how_to_get_the_data(tmp_path):
    with pytest.raises(DatasetLayoutError) as error:
        read_split(tmp_path / "nowhere", 1)
    assert "nowhere" in str(error.value) and "make-synthetic" in str(error.value)


def test_unknown_class_and_wrong_index_are_errors(tmp_path):
    root = three_classes(tmp_path)
    with pytest.raises(DatasetLayoutError, match="Bowling"):
        read_split(root, 1, classes=("Bowling", "Biking"))
    lines = (root / "ucfTrainTestlist" / "trainlist01.txt").read_text().replace("c01.avi 1", "c01.avi 2")
    (root / "ucfTrainTestlist" / "trainlist01.txt").write_text(lines)
    with pytest.raises(DatasetLayoutError, match="index 2 is Basketball"):
        read_split(root, 1)


def test_a_video_in_both_lists_is_an_error(tmp_path):
    root = three_classes(tmp_path)
    with (root / "ucfTrainTestlist" / "testlist01.txt").open("a") as handle:
        handle.write("Archery/v_Archery_g08_c01.avi\n")
    with pytest.raises(DatasetLayoutError, match="both"):
        read_split(root, 1)


def test_other_splits_read_their_own_lists(tmp_path):
    classes = ["Archery", "Biking"]
    write_layout(tmp_path, classes, ["Archery/v_Archery_g01_c01.avi 1", "Biking/v_Biking_g01_c01.avi 2"],
                 ["Archery/v_Archery_g09_c01.avi", "Biking/v_Biking_g09_c01.avi"], split=2)
    split = read_split(tmp_path, 2)
    assert [v.group for v in split.train] == [1, 1] and [v.group for v in split.test] == [9, 9]
    with pytest.raises(DatasetLayoutError, match="trainlist01.txt"):
        read_split(tmp_path, 1)
    assert ucf101.SPLITS == ("train", "test")
