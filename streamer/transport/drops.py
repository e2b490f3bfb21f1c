"""Counting what a process throws away, by reason, and saying so in the log without flooding it."""

from __future__ import annotations

import logging
from collections import Counter


class DropCounter:
    def __init__(self, log: logging.Logger):
        self._log = log
        self.by_reason: Counter[str] = Counter()

    def __call__(self, reason: str, detail: str) -> None:
        self.by_reason[reason] += 1
        count = self.by_reason[reason]
        if count in (1, 10, 100, 1000) or count % 10000 == 0:  # log the 1st, 10th, 100th ... of each reason
            self._log.warning("dropped message (%s, %d so far): %s", reason, count, detail)

    @property
    def total(self) -> int:
        return sum(self.by_reason.values())

    def counters(self) -> dict[str, float]:
        """For stats messages: `dropped` and one `dropped_<reason>` per reason seen."""
        return {"dropped": self.total, **{f"dropped_{reason}": n for reason, n in self.by_reason.items()}}
