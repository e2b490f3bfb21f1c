"""Comparing alternating phases of one run: each phase of one kind against its two neighbours.

On a shared machine the load drifts during a run; a phase compared with the mean of the phases
just before and after it (of the other kind) cancels a drift that is steady over the three.
"""

from __future__ import annotations

import numpy as np


def bracketed(values: list[float], flagged: list[bool]) -> list[float]:
    """Each flagged phase's value over the mean of its neighbours' (phases at either end are left out)."""
    return [values[i] / ((values[i - 1] + values[i + 1]) / 2) for i, flag in enumerate(flagged)
            if flag and 0 < i < len(values) - 1 and values[i - 1] + values[i + 1] > 0]


def median_or_none(ratios: list[float]) -> float | None:
    return float(np.median(ratios)) if ratios else None
