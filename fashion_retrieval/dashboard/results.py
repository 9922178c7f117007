"""Evaluation JSON files read into recall tables for the dashboard (the object
:func:`fashion_retrieval.evaluation.base.evaluate_embeddings` returns and
``training/evaluate.py`` writes)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

RECALL_METRIC = re.compile(r"^(?:(?P<prefix>.*)[_/])?R@(?P<k>\d+)$")  # R@10, t2i_R@10


def is_recall_metric(name: str) -> bool:
    """Whether a metric name is a recall at K: "R@10", or prefixed like "t2i_R@10"."""
    return RECALL_METRIC.match(name) is not None


class ResultFileError(ValueError):
    """A result file that cannot be read; the message names the file and the problem."""


@dataclass
class EvalResult:
    """One evaluation JSON: which model on which split, its recall and per-category recall.

    ``label`` is what tables and charts call it (run folder plus file name by default);
    ``recall`` maps a metric name ("R@10") to a percentage; ``categories`` maps a category
    to its own metric dict.
    """

    label: str
    path: str
    dataset: str
    split: str
    protocol: str
    model: str
    recall: dict[str, float]
    categories: dict[str, dict[str, float]] = field(default_factory=dict)


def figure(value: Any, where: str) -> float:
    """A figure of a result file as a float (None becomes NaN); anything else is an error naming ``where``."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ResultFileError(f"{where}: expected a number, got {value!r}")
    return float(value)


def _numeric_metrics(raw: Any, where: str) -> dict[str, float]:
    """The numeric entries of a metric dict (counts such as "queries" are kept too)."""
    if not isinstance(raw, dict):
        raise ResultFileError(f"{where}: expected an object of metrics, got {type(raw).__name__}")
    out: dict[str, float] = {}
    for key, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue  # nested objects and strings are not metrics
        if math.isfinite(float(value)):
            out[str(key)] = float(value)
    return out


def _model_name(raw: Any) -> str:
    """The model field as one string (it may be a name or a small config object)."""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, dict):
        for key in ("name", "id", "checkpoint", "path"):
            if isinstance(raw.get(key), str):
                return raw[key]
        return json.dumps(raw, sort_keys=True)[:80]
    return "" if raw is None else str(raw)


def read_json(path: Path) -> Any:
    """The parsed file; a ``ResultFileError`` naming it when missing, unreadable or not JSON."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ResultFileError(f"{path}: no such file") from None
    except OSError as exc:
        raise ResultFileError(f"{path}: cannot be read ({exc})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultFileError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None


def load_eval_result(path: str | Path, label: str | None = None) -> EvalResult:
    """Read one evaluation JSON file; raise ``ResultFileError`` naming the file on bad input."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict) or "recall" not in data:
        raise ResultFileError(f"{path}: not an evaluation result (no 'recall' object)")
    recall = _numeric_metrics(data["recall"], f"{path}: 'recall'")
    if not any(is_recall_metric(k) for k in recall):
        raise ResultFileError(f"{path}: 'recall' has no R@K entries")
    raw_cats = data.get("categories") or {}
    if not isinstance(raw_cats, dict):
        raise ResultFileError(f"{path}: 'categories' must be an object")
    categories = {
        str(cat): _numeric_metrics(m, f"{path}: categories[{cat!r}]")
        for cat, m in raw_cats.items()
        if isinstance(m, dict)
    }
    return EvalResult(
        label=label or path.stem,
        path=str(path),
        dataset=str(data.get("dataset", "")),
        split=str(data.get("split", "")),
        protocol=str(data.get("protocol", "")),
        model=_model_name(data.get("model")),
        recall=recall,
        categories=categories,
    )


def is_eval_json(path: str | Path) -> bool:
    """Cheap check used while scanning folders: a JSON object with a 'recall' key."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "recall" in data


def _recall_columns(names: set[str]) -> list[str]:
    """Recall columns grouped by prefix, then sorted by K (R@1, R@5, R@10, R@50)."""

    def key(name: str) -> tuple[str, int, str]:
        m = RECALL_METRIC.match(name)
        return (m.group("prefix") or "", int(m.group("k")), name) if m else ("~", 0, name)

    return sorted(names, key=key)


def sort_metrics(names: list[str] | set[str]) -> list[str]:
    """Metric names in display order: by prefix ("", "i2t", "t2i"), then by K."""
    return _recall_columns(set(names))


def group_results(results: list[EvalResult]) -> dict[str, list[EvalResult]]:
    """Results that are comparable (same data set, split and protocol), in first-seen order."""
    groups: dict[str, list[EvalResult]] = {}
    for r in results:
        key = " · ".join(x for x in (r.dataset, r.split, r.protocol) if x) or "results"
        groups.setdefault(key, []).append(r)
    return groups


def recall_table(results: list[EvalResult]) -> pd.DataFrame:
    """One row per result: label, model, dataset, split, protocol, then R@K columns."""
    metric_names = _recall_columns({m for r in results for m in r.recall if is_recall_metric(m)})
    rows = []
    for r in results:
        row: dict[str, Any] = {
            "result": r.label,
            "model": r.model,
            "dataset": r.dataset,
            "split": r.split,
            "protocol": r.protocol,
        }
        row.update({m: r.recall.get(m) for m in metric_names})
        rows.append(row)
    columns = ["result", "model", "dataset", "split", "protocol", *metric_names]
    return pd.DataFrame(rows, columns=columns)


def category_table(results: list[EvalResult]) -> pd.DataFrame:
    """Long table of per-category recall: result, category, metric, value."""
    rows = [
        {"result": r.label, "category": cat, "metric": metric, "value": value}
        for r in results
        for cat, metrics in sorted(r.categories.items())
        for metric, value in metrics.items()
        if is_recall_metric(metric)
    ]
    return pd.DataFrame(rows, columns=["result", "category", "metric", "value"])


def recall_long(results: list[EvalResult]) -> pd.DataFrame:
    """Long table of overall recall (result, metric, value) for grouped bar charts."""
    rows = [
        {"result": r.label, "metric": m, "value": v}
        for r in results
        for m, v in _sorted_items(r.recall)
        if is_recall_metric(m)
    ]
    return pd.DataFrame(rows, columns=["result", "metric", "value"])


def _sorted_items(metrics: dict[str, float]) -> list[tuple[str, float]]:
    """Metric items in column order (by prefix, then K)."""
    return [(m, metrics[m]) for m in _recall_columns(set(metrics))]
