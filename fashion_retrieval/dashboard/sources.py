"""Finding what the dashboard shows: evaluation JSONs, shopper reports, refinement sessions,
metrics.jsonl logs and checkpoints."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..paths import default_dir
from .sessions import sessions_payload
from .shopper import report_kind

RUNS_ENV = "FASHION_RETRIEVAL_RUNS"  # extra result folders, separated by os.pathsep
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
MAX_JSON_BYTES = 5_000_000  # evaluation results are small; data set annotations are not
SKIP_DIRS = {"images", "__pycache__", "node_modules", "wandb"}


def default_result_dirs() -> list[Path]:
    """Where results are looked for by default: ``$FASHION_RETRIEVAL_RUNS``, else the
    embedded default's folder (``<home>/default``), ``./runs`` and ``./results`` (where the
    comparison and default-quality reports are written)."""
    extra = os.environ.get(RUNS_ENV, "")
    if extra.strip():
        return [Path(p).expanduser() for p in extra.split(os.pathsep) if p.strip()]
    return [default_dir(), Path("runs"), Path("results")]


def is_checkpoint_dir(path: Path) -> bool:
    """A saved model folder: ``config.json`` beside the weights file."""
    return (path / "config.json").is_file() and any((path / w).is_file() for w in WEIGHT_FILES)


@dataclass
class Discovery:
    """What a scan found, each as label -> path, and readable problems (missing folders).

    ``shopper_files`` are comparison and default-quality reports (see ``shopper``);
    ``sessions_files`` hold refinement sessions (see ``sessions``): a sessions file, or a
    comparison report with a ``"sessions"`` object, which is then in both."""

    eval_files: dict[str, Path] = field(default_factory=dict)
    shopper_files: dict[str, Path] = field(default_factory=dict)
    sessions_files: dict[str, Path] = field(default_factory=dict)
    metrics_files: dict[str, Path] = field(default_factory=dict)
    checkpoints: dict[str, Path] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def _label(root: Path, path: Path, roots: list[Path], strip_suffix: bool = True) -> str:
    """A short label: the path relative to its root, with the root's name when several roots."""
    rel = path.relative_to(root)
    if strip_suffix:
        rel = rel.with_suffix("")
    label = rel.as_posix() if str(rel) != "." else root.name
    return f"{root.name}/{label}" if len(roots) > 1 and label != root.name else label


def _walk(root: Path, max_depth: int):
    """os.walk bounded in depth, skipping hidden folders, image folders and checkpoints."""
    base_depth = len(root.parts)
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        yield here, filenames
        if len(here.parts) - base_depth >= max_depth or is_checkpoint_dir(here):
            dirnames[:] = []
        else:
            dirnames[:] = sorted(
                d for d in dirnames if not d.startswith(".") and d not in SKIP_DIRS
            )


def scan_result_dirs(dirs: list[str | Path], max_depth: int = 4) -> Discovery:
    """Scan folders for ``*.json`` evaluation results, shopper reports and refinement sessions,
    ``metrics.jsonl`` logs and checkpoints.

    A metrics log is labelled by its run folder; an evaluation file by its path without the
    suffix; a checkpoint by its folder. A missing folder is reported in ``errors``.
    """
    found = Discovery()
    roots = [Path(d).expanduser() for d in dirs if str(d).strip()]
    for root in roots:
        if not root.is_dir():
            found.errors.append(f"result folder {root} does not exist or is not a folder")
            continue
        if is_checkpoint_dir(root):
            found.checkpoints[root.name] = root
        for here, filenames in _walk(root, max_depth):
            if here != root and is_checkpoint_dir(here):
                found.checkpoints[_label(root, here, roots, strip_suffix=False)] = here
                continue
            for name in sorted(filenames):
                path = here / name
                if name == "metrics.jsonl":
                    found.metrics_files[_label(root, here, roots, strip_suffix=False)] = path
                elif not (name.endswith(".json") and _small(path)):
                    continue
                elif "eval" in (kinds := _json_kinds(path)):
                    # <run>/eval.json is labelled by its run; other files by their own name
                    target = here if name == "eval.json" else path
                    found.eval_files[_label(root, target, roots, strip_suffix=target is path)] = (
                        path
                    )
                else:
                    if "shopper" in kinds:
                        found.shopper_files[_label(root, path, roots)] = path
                    if "sessions" in kinds:
                        found.sessions_files[_label(root, path, roots)] = path
    return found


def _json_kinds(path: Path) -> set[str]:
    """What a JSON file holds: ``{"eval"}`` (an object with 'recall'), else ``"shopper"`` (a
    comparison or default-quality report) and/or ``"sessions"`` (refinement sessions, alone or
    inside a comparison report); empty for anything else. Read once while scanning. A file
    named like a sessions file (``*sessions*.json``) that holds none is still listed, so the
    page says what is wrong with it instead of leaving it out silently."""
    named_sessions = {"sessions"} if "sessions" in path.stem.lower() else set()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return named_sessions
    if isinstance(data, dict) and "recall" in data:
        return {"eval"}
    kinds = {"shopper"} if report_kind(data) is not None else set()
    if sessions_payload(data) is not None:
        return kinds | {"sessions"}
    return kinds or named_sessions


def _small(path: Path) -> bool:
    """True when the file is small enough to be an evaluation result."""
    try:
        return path.stat().st_size <= MAX_JSON_BYTES
    except OSError:
        return False
