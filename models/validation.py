"""The validation split: whole groups carved out of the training list.

Both trainers choose their best epoch on it, and train-lstm tunes the activity thresholds on it,
so the test split is scored once, at the end, by a model nothing was chosen for on the test split.
As with train and test in UCF101, a group (one actor/setting) sits on one side only: the
highest-numbered `data.validation_fraction` of the training list's groups (at least one, and at
least one left for training). The test list is never touched.
"""

from __future__ import annotations

from typing import Sequence, TypeVar

from configs.settings import ActionableError

Video = TypeVar("Video")  # anything with a `group` (PreparedVideo, VideoFeatures)


class ValidationSplitError(ActionableError, ValueError):
    """The training list cannot give up a validation group."""


def validation_groups(groups: Sequence[int], fraction: float) -> set[int]:
    """The training groups held out for validation: the highest-numbered `fraction` of them."""
    distinct = sorted(set(groups))
    if not 0 < fraction < 1:
        raise ValidationSplitError(f"data.validation_fraction must be between 0 and 1 (exclusive), got {fraction}")
    if len(distinct) < 2:
        raise ValidationSplitError(f"the training list has {len(distinct)} group(s) ({distinct}); a validation split "
                                   f"needs at least 2, one to hold out and one to train on: use a data set whose "
                                   f"video names carry more groups (_gXX_), e.g. more synthetic.groups")
    count = min(len(distinct) - 1, max(1, round(fraction * len(distinct))))
    return set(distinct[-count:])


def carve_validation(videos: Sequence[Video], fraction: float) -> tuple[list[Video], list[Video]]:
    """(training videos, validation videos) of the training list, split by whole groups."""
    held_out = validation_groups([video.group for video in videos], fraction)
    return ([video for video in videos if video.group not in held_out],
            [video for video in videos if video.group in held_out])
