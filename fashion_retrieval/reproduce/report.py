"""The reproduction report: published vs measured, counts, skips, commit, hardware, wall time.

``reproduction.json``::

    {"recipe": str, "metrics": {name: {"published": float, "measured": float | None,
     "difference": float | None}}, "queries": int, "gallery": int, "skipped": {reason: int},
     "checkpoint": path, "step": int | None, "seconds": float,
     "stages": [{"stage", "checkpoint", "seconds_trained", "train_skipped": {reason: int}}], ...}

``skipped`` is the evaluation's (queries and gallery images it could not use); each stage's
``train_skipped`` is what its training split left out.

and ``reproduction.md``, the same as a markdown table.
"""

from __future__ import annotations

import json
import platform
import subprocess
from pathlib import Path
from typing import Any

from fashion_retrieval.reproduce.recipes import Recipe

REPO = Path(__file__).resolve().parents[2]


def measured_value(evaluation: dict[str, Any], name: str) -> float | None:
    """A metric of the evaluation JSON: ``"R@10"`` (the mean) or ``"dress R@10"`` (one category)."""
    category, _, metric = name.rpartition(" ")
    values = evaluation.get("categories", {}).get(category, {}) if category else evaluation.get("recall", {})
    value = values.get(metric)
    return None if value is None else float(value)


def commit() -> str:
    """The repository's commit (``-dirty`` when the tree has changes), or ``unknown``."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              timeout=30, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def hardware() -> dict[str, Any]:
    """What ran it: the CPU, its core count, torch and the GPU when there is one."""
    import os

    import torch

    info: dict[str, Any] = {"machine": platform.machine(), "cpu": platform.processor() or platform.machine(),
                            "cpu_count": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_count"] = torch.cuda.device_count()
    return info


def _checkpoint_step(checkpoint: Path) -> int | None:
    """The training step of a checkpoint (its ``metrics.json``), when recorded."""
    path = checkpoint / "metrics.json"
    if not path.is_file():
        return None
    step = json.loads(path.read_text(encoding="utf-8")).get("step")
    return step if isinstance(step, int) else None


def build_report(recipe: Recipe, evaluation: dict[str, Any], *, checkpoint: Path, stages: list[dict[str, Any]],
                 data_root: Path, tiny: bool, standins: bool, seconds: float) -> dict[str, Any]:
    """The ``reproduction.json`` object of one run of ``recipe``."""
    metrics = {}
    for name, published in recipe.published.items():
        measured = measured_value(evaluation, name)
        metrics[name] = {"published": published, "measured": measured,
                         "difference": None if measured is None else round(measured - published, 2)}
    notes = []
    if tiny:
        notes.append("--tiny: a tiny random encoder trained a few steps; the figures test the chain "
                     "(training, checkpoint, the official protocol), not the paper")
    if standins:
        from fashion_retrieval.reproduce.standins import standin_description

        notes.append(f"stand-in data under {data_root}: {standin_description(recipe.dataset)}")
    return {
        "recipe": recipe.name, "source": recipe.source, "dataset": evaluation.get("dataset"),
        "split": evaluation.get("split"), "protocol": evaluation.get("protocol"),
        "metrics": metrics, "queries": int(evaluation.get("queries", 0)),
        "gallery": int(evaluation.get("gallery", 0)), "skipped": {k: v for k, v in evaluation.get("skipped", {}).items() if v},
        "categories": {c: {k: round(v, 2) for k, v in m.items()} for c, m in evaluation.get("categories", {}).items()},
        "checkpoint": str(checkpoint), "step": _checkpoint_step(checkpoint), "stages": stages,
        "data_root": str(data_root), "tiny": tiny, "notes": notes,
        "commit": commit(), "hardware": hardware(), "seconds": round(seconds, 1),
    }


def _number(value: float | None, sign: str = "") -> str:
    return "n/a" if value is None else f"{value:{sign}.2f}"


def markdown(report: dict[str, Any]) -> str:
    """The report as a markdown section: the metric table, then counts, skips and provenance."""
    rows = "\n".join(f"| {name} | {_number(m['published'])} | {_number(m['measured'])} | "
                     f"{_number(m['difference'], '+')} |" for name, m in report["metrics"].items())
    skipped = ", ".join(f"{k}: {v}" for k, v in report["skipped"].items()) or "none"
    train_skipped = ", ".join(f"{k}: {v}" for k, v in report["stages"][-1]["train_skipped"].items()) or "none"
    hw = report["hardware"]
    device = hw.get("gpu") or f"{hw['cpu']} ({hw['cpu_count']} cores, no GPU)"
    lines = [
        f"## Reproduction: {report['recipe']}", "",
        f"Published: {report['source']}.", "",
        "| metric | published | measured | difference |", "|---|---:|---:|---:|", rows, "",
        f"- {report['dataset']} {report['split']} split, protocol `{report['protocol']}`: "
        f"{report['queries']} queries ranked, gallery of {report['gallery']} images",
        f"- skipped in the evaluation: {skipped}",
        f"- skipped in the training split: {train_skipped}",
        f"- checkpoint: `{report['checkpoint']}` (step {report['step']})",
        f"- commit {report['commit']}, {device}, torch {hw['torch']}; {report['seconds']:.0f} s wall time",
    ]
    lines += [f"- {note}" for note in report["notes"]]
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], out: Path) -> None:
    """``OUT/reproduction.json`` and ``OUT/reproduction.md``, each written atomically."""
    from fashion_retrieval.io_utils import atomic_write_json, atomic_write_text

    atomic_write_json(out / "reproduction.json", report)
    atomic_write_text(out / "reproduction.md", markdown(report))
