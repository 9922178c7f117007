"""Multi-turn refinement results read into curves, a table and one replayed session.

``python -m fashion_retrieval.evaluation.sessions --json FILE`` writes the object below; a
comparison report (``python -m fashion_retrieval.training.compare --json FILE``) carries the
same object under its ``"sessions"`` key::

    {"k": 8, "turns": 5, "start_distance": 5, "sessions": N,
     "models": {name: {policy: {"success": [s@1, ...], "mean_turns": x, "target_rank": [...]}}},
     "replays": {name: {policy: {"target": id, "start": id,
                                 "turns": [{"picture", "text", "hits", "target_rank", "success"}]}}},
     "paths": {id: image path}}

Success is a cumulative percent; ``target_rank`` the median rank of the target after each
turn. ``replays`` and ``paths`` are absent from older files: the curves and table still show.
A model whose figures do not depend on the policy (the random baseline) may give them
directly, without a policy level, or under one policy only; it is then drawn under every
policy. Nothing here imports Streamlit.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .results import ResultFileError, figure, read_json

ANY_POLICY = "(any)"  # the policy of figures given without a policy level
FIGURE_KEYS = ("success", "mean_turns", "target_rank")


@dataclass
class SessionsReport:
    """One file's refinement figures: per model and policy its ``success``, ``mean_turns`` and
    ``target_rank``; ``replays`` (model -> policy -> raw session) and ``paths`` (item id ->
    image path) may be empty; ``base_dir`` resolves relative image paths. ``asks`` (attributes
    asked per turn) and ``phrasing`` are shown when the file gives them."""

    label: str
    path: str
    k: int | None
    turns: int
    start_distance: int | None
    sessions: int | None
    models: dict[str, dict[str, dict[str, Any]]]
    replays: dict[str, dict[str, Any]] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    base_dir: str = ""
    asks: int | None = None
    phrasing: str = ""


def _is_figures(value: Any) -> bool:
    """A policy's figures: an object with a ``success`` list."""
    return isinstance(value, dict) and isinstance(value.get("success"), list)


def sessions_payload(data: Any) -> dict[str, Any] | None:
    """The sessions object of a parsed JSON value: the value itself (a sessions file), its
    ``"sessions"`` object (a comparison report), or None."""
    if not isinstance(data, dict):
        return None
    for candidate in (data, data.get("sessions")):
        models = candidate.get("models") if isinstance(candidate, dict) else None
        if isinstance(models, dict) and "turns" in candidate and any(
            _is_figures(m) or (isinstance(m, dict) and any(_is_figures(p) for p in m.values()))
            for m in models.values()
        ):
            return candidate
    return None


def _numbers(value: Any, where: str) -> list[float]:
    """A list of figures (missing: empty)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ResultFileError(f"{where}: expected a list of numbers, got {type(value).__name__}")
    return [figure(v, f"{where}[{i}]") for i, v in enumerate(value)]


def _figures(raw: Any, where: str) -> dict[str, Any]:
    """One policy's figures, checked: success and target_rank lists, mean_turns a number."""
    if not isinstance(raw, dict):
        raise ResultFileError(f"{where}: expected an object, got {type(raw).__name__}")
    if "success" not in raw:
        raise ResultFileError(f"{where}: no 'success' list")
    return {
        "success": _numbers(raw["success"], f"{where}.success"),
        "mean_turns": figure(raw.get("mean_turns"), f"{where}.mean_turns"),
        "target_rank": _numbers(raw.get("target_rank"), f"{where}.target_rank"),
    }


def _model_policies(raw: Any, where: str) -> dict[str, dict[str, Any]]:
    """policy -> figures for one model; figures without a policy level become ``ANY_POLICY``."""
    if _is_figures(raw) or (isinstance(raw, dict) and set(raw) & set(FIGURE_KEYS)):
        return {ANY_POLICY: _figures(raw, where)}
    if not isinstance(raw, dict) or not raw:
        raise ResultFileError(f"{where}: expected an object of policies")
    return {str(p): _figures(f, f"{where}[{p!r}]") for p, f in raw.items()}


def _count(value: Any) -> int | None:
    """A setting such as k or the number of sessions (None when absent or not a count)."""
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def load_sessions_report(path: str | Path, label: str | None = None) -> SessionsReport:
    """Read a sessions file or the ``"sessions"`` of a comparison report; ``ResultFileError``
    naming the file when it holds neither or a figure is malformed. Replays are checked when
    shown (:func:`replay`), so a bad one never hides the curves."""
    path = Path(path)
    data = sessions_payload(read_json(path))
    if data is None:
        raise ResultFileError(
            f"{path}: no refinement sessions (no 'models' with per-policy 'success' lists)"
        )
    models = {
        str(name): _model_policies(raw, f"{path}: models[{name!r}]")
        for name, raw in data["models"].items()
    }
    longest = max((len(f["success"]) for m in models.values() for f in m.values()), default=0)
    replays = data.get("replays") if isinstance(data.get("replays"), dict) else {}
    paths = data.get("paths") if isinstance(data.get("paths"), dict) else {}
    return SessionsReport(
        label=label or path.stem,
        path=str(path),
        k=_count(data.get("k")),
        turns=_count(data.get("turns")) or longest,
        start_distance=_count(data.get("start_distance")),
        sessions=_count(data.get("sessions")),
        models=models,
        replays={str(m): r for m, r in replays.items() if isinstance(r, dict)},
        paths={str(i): str(p) for i, p in paths.items() if isinstance(p, str)},
        base_dir=str(path.parent),
        asks=_count(data.get("asks")),
        phrasing=data["phrasing"] if isinstance(data.get("phrasing"), str) else "",
    )


def is_sessions_json(path: str | Path) -> bool:
    """Cheap check used while scanning folders: a sessions file or a report holding one."""
    try:
        return sessions_payload(json.loads(Path(path).read_text(encoding="utf-8"))) is not None
    except (OSError, ValueError):
        return False


def setting_line(report: SessionsReport) -> str:
    """One line: how many sessions, top k, turns and the start's distance to the target."""

    def show(value: int | None) -> str:
        return "?" if value is None else str(value)

    line = (
        f"{show(report.sessions)} simulated sessions, top {show(report.k)}, "
        f"{report.turns} turns, start {show(report.start_distance)} attributes from the target"
    )
    if report.asks is not None:
        line += f", {report.asks} attribute{'s' if report.asks != 1 else ''} asked per turn"
    if report.phrasing:
        line += f" in {report.phrasing.replace('heldout', 'held-out')} phrasing"
    return line + "."


# ---- curves and table -----------------------------------------------------------------------


def policies(report: SessionsReport) -> list[str]:
    """The history policies in the file, in first-seen order (``ANY_POLICY`` only when no
    model has a named policy)."""
    named = [p for m in report.models.values() for p in m if p != ANY_POLICY]
    return list(dict.fromkeys(named)) or [ANY_POLICY]


def _under(report: SessionsReport, policy: str) -> dict[str, dict[str, Any]]:
    """display name -> figures of each model under ``policy``; a model with one policy only
    (a baseline) is shown under every policy, its own named beside it."""
    out = {}
    for name, per_policy in report.models.items():
        if policy in per_policy:
            out[name] = per_policy[policy]
        elif len(per_policy) == 1:
            (own, figures), = per_policy.items()
            out[name if own == ANY_POLICY else f"{name} ({own})"] = figures
    return out


def success_long(report: SessionsReport, policy: str) -> pd.DataFrame:
    """Long table for the success@T curves under one policy: model, turn (1..T), success."""
    rows = [
        {"model": name, "turn": t, "success": s}
        for name, figures in _under(report, policy).items()
        for t, s in enumerate(figures["success"], start=1)
    ]
    return pd.DataFrame(rows, columns=["model", "turn", "success"])


def success_columns(report: SessionsReport) -> list[str]:
    """The success@T column names of :func:`sessions_table`."""
    return [f"success@{t}" for t in range(1, report.turns + 1)]


def rank_columns(report: SessionsReport) -> list[str]:
    """The median-rank column names of :func:`sessions_table`."""
    return [f"rank after {t}" for t in range(1, report.turns + 1)]


def sessions_table(report: SessionsReport) -> pd.DataFrame:
    """One row per model and policy: success@1..T (%), mean turns, median target rank after
    each turn; blank where the file has no figure."""
    rows = []
    for name, per_policy in report.models.items():
        for policy, figures in per_policy.items():
            row: dict[str, Any] = {"model": name, "policy": policy}
            row.update(_padded(success_columns(report), figures["success"]))
            row["mean turns"] = figures["mean_turns"]
            row.update(_padded(rank_columns(report), figures["target_rank"]))
            rows.append(row)
    columns = ["model", "policy", *success_columns(report), "mean turns", *rank_columns(report)]
    return pd.DataFrame(rows, columns=columns)


def _padded(names: list[str], values: list[float]) -> dict[str, float]:
    """names -> values, NaN where the list is short."""
    return {n: values[i] if i < len(values) else math.nan for i, n in enumerate(names)}
