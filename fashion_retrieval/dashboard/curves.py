"""Training logs (``<run>/metrics.jsonl``) read into long tables of curves."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from .results import ResultFileError


def _flatten(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts become 'outer/inner' keys: {"eval": {"R@10": 3}} -> {"eval/R@10": 3}."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, prefix=f"{name}/"))
        else:
            flat[name] = value
    return flat


def load_metrics(path: str | Path) -> pd.DataFrame:
    """Read a metrics.jsonl file into a long table with columns step, metric, value.

    Every numeric field of every line other than "step" becomes a point; nested objects are
    flattened ("eval/R@10"). Blank lines are skipped. A line that is not a JSON object, or
    one without an integer "step", raises ``ResultFileError`` naming the file and line. A
    truncated last line (a run still writing) is skipped rather than reported.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ResultFileError(f"{path}: no such file") from None
    except OSError as exc:
        raise ResultFileError(f"{path}: cannot be read ({exc})") from None
    rows: list[dict[str, Any]] = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            if lineno == len(lines):
                continue  # the writer may be in the middle of this line
            raise ResultFileError(f"{path}, line {lineno}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise ResultFileError(f"{path}, line {lineno}: expected a JSON object")
        step = record.get("step")
        if isinstance(step, bool) or not isinstance(step, (int, float)):
            raise ResultFileError(f"{path}, line {lineno}: missing a numeric 'step'")
        for metric, value in _flatten(record).items():
            if metric == "step" or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if math.isfinite(float(value)):
                rows.append({"step": int(step), "metric": metric, "value": float(value)})
    return pd.DataFrame(rows, columns=["step", "metric", "value"])


def combine_runs(curves: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Stack per-run tables into one with a "run" column (one line per run in a chart)."""
    frames = [df.assign(run=name) for name, df in curves.items() if not df.empty]
    if not frames:
        return pd.DataFrame(columns=["run", "step", "metric", "value"])
    return pd.concat(frames, ignore_index=True)[["run", "step", "metric", "value"]]


def metric_groups(metrics: list[str]) -> dict[str, list[str]]:
    """Split metric names into chart groups: loss, learning rate, recall, other."""
    groups: dict[str, list[str]] = {"loss": [], "learning rate": [], "recall": [], "other": []}
    for name in sorted(set(metrics)):
        leaf = name.rsplit("/", 1)[-1].lower()
        if "loss" in leaf:
            groups["loss"].append(name)
        elif leaf in ("lr", "learning_rate") or leaf.startswith("lr_"):
            groups["learning rate"].append(name)
        elif leaf.startswith("r@") or "recall" in leaf:
            groups["recall"].append(name)
        else:
            groups["other"].append(name)
    return {k: v for k, v in groups.items() if v}
