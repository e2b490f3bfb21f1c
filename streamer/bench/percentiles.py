"""Latency percentiles with the same keys wherever a report shows them (the bench, its baselines)."""

from __future__ import annotations

import numpy as np


def percentiles(values) -> dict[str, float]:
    """p50, p90, p99, max and mean of `values` (a list or an array; all zero when empty)."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0, "mean": 0.0}
    p50, p90, p99 = np.percentile(array, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "max": float(array.max()),
            "mean": float(array.mean())}
