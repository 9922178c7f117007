"""Reliability report: tests record what they tried and what happened; a command renders it.

Tests call :func:`expect` (record one case and assert it) or :func:`record` (a figure,
such as a latency). Records go, as JSON lines, to the file named by the
``FASHION_RETRIEVAL_RELIABILITY_LOG`` environment variable (nothing is written when it is
unset, e.g. under a plain ``pytest``). ``python -m benchmarks.reliability --readme
docs/RESULTS.md`` runs the reliability tests with that variable set, plus a pytest plugin that
records each test's outcome, and writes the table into docs/RESULTS.md.
"""

from benchmarks.reliability.recorder import RESULTS_ENV, expect, record, short

__all__ = ["RESULTS_ENV", "expect", "record", "short"]
