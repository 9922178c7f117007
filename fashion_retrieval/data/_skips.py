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
    emits one ``UserWarning`` with all the counts. Records that are kept but worth a remark
    (a FashionIQ annotation with one empty caption) go to ``note``: counted apart in
    ``notes``, logged at INFO level, never reported as skipped.
    """

    def __init__(self, source: str, detail_limit: int = 20) -> None:
        self.source = source
        self.detail_limit = detail_limit
        self.counts: Counter = Counter()
        self.notes: Counter = Counter()

    def note(self, reason: str, where: str, detail: str) -> None:
        """Count one record that was kept (not skipped) under ``reason``."""
        self.notes[reason] += 1
        if self.notes[reason] <= self.detail_limit:
            logger.info("%s: %s; kept (%s)", where, detail, reason)

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
        """One warning with every skip count (nothing when nothing was skipped); the notes
        of kept records are logged at INFO level."""
        if self.notes:
            parts = ", ".join(f"{reason}={n}" for reason, n in sorted(self.notes.items()))
            logger.info("%s: kept records with remarks: %s", self.source, parts)
        if self.counts:
            parts = ", ".join(f"{reason}={n}" for reason, n in sorted(self.counts.items()))
            warnings.warn(f"{self.source}: skipped records: {parts}", UserWarning, stacklevel=3)
