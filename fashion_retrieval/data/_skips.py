"""Counting and reporting what a loader skipped, so nothing is silently dropped."""

from __future__ import annotations

import logging
import warnings
from collections import Counter

logger = logging.getLogger("fashion_retrieval.data")


class SkipLog:
    """Counts skipped records by reason and reports them.

    Each skipped record is logged with its file and line (the first ``detail_limit`` of each
    reason, so a broken million-line file does not flood the log); ``warn_summary`` then
    emits one ``UserWarning`` with all the counts.
    """

    def __init__(self, source: str, detail_limit: int = 20) -> None:
        self.source = source
        self.detail_limit = detail_limit
        self.counts: Counter = Counter()

    def skip(self, reason: str, where: str, detail: str) -> None:
        """Count one skipped record; ``where`` is ``file:line`` or ``file entry N``."""
        self.counts[reason] += 1
        n = self.counts[reason]
        if n <= self.detail_limit:
            logger.warning("%s: %s; skipped (%s)", where, detail, reason)
        elif n == self.detail_limit + 1:
            logger.warning(
                "%s: more %r records skipped; only the count is reported", self.source, reason
            )

    def add(self, reason: str, count: int) -> None:
        """Count ``count`` records skipped for ``reason`` without per-record detail."""
        if count:
            self.counts[reason] += count

    def warn_summary(self) -> None:
        """One warning with every count (nothing when nothing was skipped)."""
        if self.counts:
            parts = ", ".join(f"{reason}={n}" for reason, n in sorted(self.counts.items()))
            warnings.warn(f"{self.source}: skipped records: {parts}", UserWarning, stacklevel=3)
