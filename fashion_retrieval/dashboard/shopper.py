"""Shopper reports read into tables: one gallery, composition control, phrasing, words to image.

Two files carry these figures (see :mod:`fashion_retrieval.evaluation.shopper`):

- a **comparison report**, ``python -m fashion_retrieval.training.compare --json FILE``:
  ``{"results": [{"model", "recall", "one_gallery", "control", "phrasing", ...}], "ordering"}``;
- a **default-quality report**, ``python -m fashion_retrieval.serving.quality --json FILE``:
  ``{"spec", "gallery_images", "queries", "models": {name: {"one_gallery", "control",
  "phrasing", "words_to_image"}}}``.

A file is a comparison report when it has ``results`` rows with ``control``, and a
default-quality report when it has ``models`` with ``control``. Every figure is a percent.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .results import ResultFileError, figure, read_json, sort_metrics

COMPARISON, DEFAULT_QUALITY = "comparison", "default quality"
# Control shares in display order: the headline (type and asked value) first, then its parts.
SHARES = ("both", "exact", "asked", "type", "others")
SECTIONS = ("one_gallery", "control", "phrasing", "words_to_image")
# The phrasing gap's parts (evaluation/shopper.py phrasing_gap); absent from older reports.
PHRASING_PARTS = {"plain": "held-out sentences R@10", "heldout_words": "held-out words R@10",
                  "dev": "development words R@10"}
TEXT_FIELDS = {"phrasing"}  # control's "phrasing": "heldout" is a setting, not a figure
WORDS_LABELS = {"color": "colour + garment", "pattern": "pattern + garment"}

EXPLANATIONS = {
    "one_gallery": "**One gallery**: composed-query recall when every garment type is ranked "
    "together, as in a shop's search box (R@1 first); *per category* is the FashionIQ-style "
    "gallery of the query's own type.",
    "control": "**Composition control**: a gallery picture plus a one-attribute change in plain "
    "words (\"make it red\"); the share of the top k that keeps the garment type and has the asked "
    "value (*both*), keeps every other attribute too (*exact*), has the asked value (*asked*), "
    "keeps the type (*type*) or the other attributes (*others*), each beside the catalogue's "
    "ceiling (the best any ranking could reach) and as a percent of it.",
    "phrasing": "**Held-out phrasing**: one-gallery R@10 with the queries reworded in the "
    "training phrasing and in phrasings, synonyms and word orders never seen in training; the "
    "gap is what rewording costs.",
    "words_to_image": "**Words to image**: the share of the top k of \"<colour> <garment>\" and "
    "\"<pattern> <garment>\" text queries that has both.",
}


@dataclass
class ShopperReport:
    """One shopper report: per model, its ``one_gallery``, ``control``, ``phrasing`` and
    (default quality) ``words_to_image`` figures; comparisons also keep per-category
    ``recall``. ``setting`` is a one-line description of what was measured."""

    label: str
    path: str
    kind: str
    setting: str
    models: dict[str, dict[str, Any]]
    ordering: dict[str, bool] = field(default_factory=dict)


def report_kind(data: Any) -> str | None:
    """``COMPARISON``, ``DEFAULT_QUALITY`` or None for a parsed JSON value (no validation)."""
    if not isinstance(data, dict):
        return None
    rows = data.get("results")
    if isinstance(rows, list) and any(isinstance(r, dict) and "control" in r for r in rows):
        return COMPARISON
    models = data.get("models")
    if isinstance(models, dict) and any(isinstance(m, dict) and "control" in m for m in models.values()):
        return DEFAULT_QUALITY
    return None


def _figures(raw: Any, where: str) -> dict[str, Any]:
    """A section as numbers; nested objects (phrasing's train/heldout) one level down."""
    if not isinstance(raw, dict):
        raise ResultFileError(f"{where}: expected an object, got {type(raw).__name__}")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, dict):
            out[key] = _figures(value, f"{where}.{key}")
        elif key in TEXT_FIELDS and isinstance(value, str):
            out[key] = value
        else:
            out[key] = figure(value, f"{where}.{key}")
    return out


def _model_row(raw: Any, where: str) -> dict[str, Any]:
    """One model's sections, each checked; a model without ``control`` is an error."""
    if not isinstance(raw, dict):
        raise ResultFileError(f"{where}: expected an object, got {type(raw).__name__}")
    if "control" not in raw:
        raise ResultFileError(f"{where}: no 'control' object")
    sections = (*SECTIONS, "recall")
    return {s: _figures(raw[s], f"{where}.{s}") for s in sections if raw.get(s) is not None}


def _comparison_setting(data: dict[str, Any], control: dict[str, Any]) -> str:
    """One line: catalogue, split, gallery, training budget and the control requests."""
    return (
        f"Synthetic catalogue, {data.get('preset', '?')} preset, {data.get('split', '?')} split: "
        f"{data.get('eval_queries', '?')} composed queries over {data.get('eval_images', '?')} "
        f"gallery images; {data.get('image_encoder', '?')} + {data.get('text_encoder', '?')}, "
        f"{data.get('steps', '?')} steps. Control: {_int(control.get('queries'))} requests in "
        f"{_phrasing(control)} phrasing, top {_int(control.get('k'))}."
    )


def _quality_setting(data: dict[str, Any], control: dict[str, Any]) -> str:
    """One line: the default's size, its demo gallery and the control requests."""
    spec = data.get("spec") if isinstance(data.get("spec"), dict) else {}
    return (
        f"Embedded default ({spec.get('products', '?')} products, {spec.get('preset', '?')} "
        f"preset): demo gallery of {data.get('gallery_images', '?')} images, "
        f"{data.get('queries', '?')} composed queries. Control: {_int(control.get('queries'))} "
        f"requests in {_phrasing(control)} phrasing, top {_int(control.get('k'))}."
    )


def _phrasing(control: dict[str, Any]) -> str:
    """The control requests' phrasing for display ("held-out")."""
    return str(control.get("phrasing", "?")).replace("heldout", "held-out")


def _int(value: Any) -> str:
    """A count for display ("?" when absent)."""
    return str(int(value)) if isinstance(value, (int, float)) and math.isfinite(value) else "?"


def load_shopper_report(path: str | Path, label: str | None = None) -> ShopperReport:
    """Read a comparison or default-quality report; ``ResultFileError`` naming the file when
    it is neither or a figure is malformed."""
    path = Path(path)
    data = read_json(path)
    kind = report_kind(data)
    if kind is None:
        raise ResultFileError(
            f"{path}: not a shopper report (no 'results' rows or 'models' with a 'control' object)"
        )
    models: dict[str, dict[str, Any]] = {}
    if kind == COMPARISON:
        for i, row in enumerate(data["results"]):
            if not isinstance(row, dict) or not isinstance(row.get("model"), str):
                raise ResultFileError(f"{path}: results[{i}] has no 'model' name")
            models[row["model"]] = _model_row(row, f"{path}: results[{i}] ({row['model']})")
    else:
        for name, row in data["models"].items():
            models[str(name)] = _model_row(row, f"{path}: models[{name!r}]")
    control = next(iter(models.values()))["control"]
    setting = (_comparison_setting if kind == COMPARISON else _quality_setting)(data, control)
    raw_ordering = data.get("ordering") if isinstance(data.get("ordering"), dict) else {}
    ordering = {str(k): v for k, v in raw_ordering.items() if isinstance(v, bool)}
    return ShopperReport(label or path.stem, str(path), kind, setting, models, ordering)


def is_shopper_json(path: str | Path) -> bool:
    """Cheap check used while scanning folders: a comparison or default-quality report."""
    try:
        return report_kind(json.loads(Path(path).read_text(encoding="utf-8"))) is not None
    except (OSError, ValueError):
        return False


# ---- tables ---------------------------------------------------------------------------------


def _recall_cells(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """R@K entries in K order, their names prefixed."""
    names = [m for m in sort_metrics(set(metrics)) if m.startswith("R@")]
    return {f"{prefix}{m}": metrics[m] for m in names}


def one_gallery_table(report: ShopperReport) -> pd.DataFrame:
    """model, one-gallery R@1, R@10, R@50 (R@1 first), then ``per category R@K`` where known."""
    rows = []
    for name, r in report.models.items():
        row: dict[str, Any] = {"model": name, **_recall_cells(r.get("one_gallery", {}))}
        row.update(_recall_cells(r.get("recall", {}), "per category "))
        rows.append(row)
    return _frame(rows)


def control_table(report: ShopperReport) -> pd.DataFrame:
    """model, then per share (both, exact, asked, type, others): the share, its ceiling and the
    share as a percent of the ceiling."""
    rows = []
    for name, r in report.models.items():
        c = r["control"]
        row: dict[str, Any] = {"model": name}
        for s in SHARES:
            row[s] = c.get(s, math.nan)
            row[f"{s} ceiling"] = c.get(f"{s}_ceiling", math.nan)
            row[f"{s} % of ceiling"] = c.get(f"{s}_of_ceiling", math.nan)
        rows.append(row)
    return _frame(rows)


def control_long(report: ShopperReport) -> pd.DataFrame:
    """Long table for the control chart: model, share, value, ceiling, of_ceiling."""
    rows = [
        {
            "model": name,
            "share": s,
            "value": r["control"].get(s, math.nan),
            "ceiling": r["control"].get(f"{s}_ceiling", math.nan),
            "of_ceiling": r["control"].get(f"{s}_of_ceiling", math.nan),
        }
        for name, r in report.models.items()
        for s in SHARES
        if s in r["control"]
    ]
    return pd.DataFrame(rows, columns=["model", "share", "value", "ceiling", "of_ceiling"])


def phrasing_table(report: ShopperReport) -> pd.DataFrame:
    """model, train R@10, held-out R@10, gap R@10 (train minus held out), train R@1,
    held-out R@1; empty when no model has phrasing figures."""
    rows = []
    for name, r in report.models.items():
        p = r.get("phrasing")
        if not p:
            continue
        train, held = p.get("train", {}), p.get("heldout", {})
        t10, h10 = train.get("R@10", math.nan), held.get("R@10", math.nan)
        gap = p.get("gap_R@10", t10 - h10)
        rows.append({
            "model": name, "train R@10": t10, "held-out R@10": h10, "gap R@10": gap,
            "train R@1": train.get("R@1", math.nan), "held-out R@1": held.get("R@1", math.nan),
            **{label: p.get(key, {}).get("R@10", math.nan) for key, label in PHRASING_PARTS.items()},
        })
    columns = ["model", "train R@10", "held-out R@10", "gap R@10", "train R@1", "held-out R@1",
               *PHRASING_PARTS.values()]
    return pd.DataFrame(rows, columns=columns)


def words_table(report: ShopperReport) -> pd.DataFrame:
    """model, then per attribute ("colour + garment", "pattern + garment") the share of the
    top k that has both; empty when the report has no words-to-image figures."""
    rows = []
    for name, r in report.models.items():
        w = r.get("words_to_image")
        if not w:
            continue
        row: dict[str, Any] = {"model": name}
        for attr, figures in w.items():
            if isinstance(figures, dict):
                row[WORDS_LABELS.get(attr, f"{attr} + garment")] = figures.get("share", math.nan)
        rows.append(row)
    return _frame(rows)


def words_note(report: ShopperReport) -> str:
    """How the words-to-image shares were measured: "top 4; 12 colour, 10 pattern queries"."""
    for r in report.models.values():
        w = r.get("words_to_image")
        if w:
            counts = [
                f"{int(f['queries'])} {WORDS_LABELS.get(a, a).split(' + ')[0]}"
                for a, f in w.items()
                if isinstance(f, dict) and isinstance(f.get("queries"), float)
            ]
            top = f"top {int(w['k'])}" if isinstance(w.get("k"), float) else ""
            return "; ".join(x for x in (top, ", ".join(counts) + " queries" if counts else "") if x)
    return ""


def numeric_columns(table: pd.DataFrame) -> list[str]:
    """Every column but ``model`` (all figures are percent)."""
    return [c for c in table.columns if c != "model"]


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows as a frame; columns in first-seen order (``model`` first), empty when no rows."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    return pd.DataFrame(rows, columns=columns or ["model"])


def ordering_line(report: ShopperReport) -> str:
    """The comparison's ordering checks in one line ("" when the report has none)."""
    checks = {k: v for k, v in report.ordering.items() if k != "holds"}
    if not checks:
        return ""
    verdict = "holds" if report.ordering.get("holds", all(checks.values())) else "does not hold"
    parts = ", ".join(f"{k.replace('_', ' ')} {'✓' if v else '✗'}" for k, v in checks.items())
    return f"Expected ordering {verdict}: {parts}."
