"""Recording reliability cases as JSON lines (one ``os.write`` per record: safe across threads)."""

from __future__ import annotations

import json
import os
import re
from typing import Any

RESULTS_ENV = "FASHION_RETRIEVAL_RELIABILITY_LOG"
MAX_TEXT = 160
# Absolute paths (temporary folders) are shown by their last component only.
_ABS_PATH = re.compile(r"(?<![\w.])(?:/[\w.@+\-]+)+/([\w.@+\-]+)")


def short(text: Any, limit: int = MAX_TEXT) -> str:
    """``text`` on one line, absolute paths reduced to their base name, at most ``limit`` chars."""
    one_line = " ".join(str(text).split())
    one_line = _ABS_PATH.sub(r"\1", one_line)
    return one_line if len(one_line) <= limit else one_line[: limit - 1] + "…"


def _current_test() -> str:
    """The node id of the running pytest test ("" outside pytest)."""
    current = os.environ.get("PYTEST_CURRENT_TEST", "")
    return current.rsplit(" (", 1)[0]


def record(area: str, case: str, via: str, observed: Any, ok: bool = True, **extra: Any) -> None:
    """Append one case to the results file, if ``FASHION_RETRIEVAL_RELIABILITY_LOG`` is set.

    ``area`` groups rows (images, texts, data sets, checkpoints, faults, load), ``case`` is
    what was tried, ``via`` the code path it went through, ``observed`` what happened (an
    error message, a count, a figure). ``extra`` keeps machine-readable numbers;
    ``target_met=True/False`` marks a figure judged against a target that no test asserts
    (the report says "target met" or "target missed").
    """
    path = os.environ.get(RESULTS_ENV)
    if not path:
        return
    row = {
        "kind": "case",
        "test": _current_test(),
        "area": area,
        "case": case,
        "via": via,
        "observed": short(observed),
        "ok": bool(ok),
        **extra,
    }
    data = (json.dumps(row, ensure_ascii=False, default=str) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)  # O_APPEND: whole lines even with several writers
    finally:
        os.close(fd)


def expect(area: str, case: str, via: str, observed: Any, ok: bool, **extra: Any) -> None:
    """Record a case, then fail the test (AssertionError naming it) unless ``ok``."""
    record(area, case, via, observed, ok, **extra)
    if not ok:
        raise AssertionError(f"{area} / {case} via {via}: {observed}")
