"""A pytest plugin (``-p benchmarks.reliability.plugin``) recording each test's outcome."""

from __future__ import annotations

import json
import os
from typing import Any

from benchmarks.reliability.recorder import RESULTS_ENV


def pytest_runtest_logreport(report: Any) -> None:
    """Append ``{"kind": "outcome", "test", "outcome"}`` for the call phase (or a failed setup)."""
    path = os.environ.get(RESULTS_ENV)
    if not path:
        return
    if report.when != "call" and not (report.failed or report.skipped):
        return
    row = {"kind": "outcome", "test": report.nodeid, "when": report.when, "outcome": report.outcome}
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
