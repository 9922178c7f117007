"""The Streamlit page: sidebar, view switch and cached loaders (``streamlit_app/app.py`` calls
:func:`main`). Views are in :mod:`fashion_retrieval.dashboard.views`."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import streamlit as st

from . import models as dm
from .curves import load_metrics
from .results import EvalResult, load_eval_result
from .shopper import ShopperReport, load_shopper_report
from .sources import Discovery, default_result_dirs, home_dir, scan_result_dirs

DATASET_ENV = "FASHION_RETRIEVAL_DATASET"
DATA_ROOT_ENV = "FASHION_RETRIEVAL_DATA_ROOT"
SPLIT_ENV = "FASHION_RETRIEVAL_SPLIT"
# The split whose queries have ground truth: FashionIQ/synthetic evaluate on val.
DEFAULT_SPLITS = {"fashion200k": "test", "published": ""}  # published: "" is its card's eval split


@dataclass
class Settings:
    """Everything the sidebar chose; the views read only this."""

    discovery: Discovery
    eval_files: dict[str, Path] = field(default_factory=dict)
    shopper_files: dict[str, Path] = field(default_factory=dict)
    metrics_files: dict[str, Path] = field(default_factory=dict)
    checkpoints: dict[str, Path] = field(default_factory=dict)
    gallery: dm.GallerySpec | None = None


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Options after ``--`` on ``streamlit run streamlit_app/app.py -- ...`` (unknown ignored)."""
    p = argparse.ArgumentParser(prog="streamlit_app/app.py", allow_abbrev=False, add_help=False)
    p.add_argument("--runs", action="append", default=None, help="result folder (repeatable)")
    p.add_argument("--dataset", default=os.environ.get(DATASET_ENV, ""), help="gallery data set")
    p.add_argument("--data-root", default=os.environ.get(DATA_ROOT_ENV, ""), help="gallery root")
    p.add_argument("--split", default=os.environ.get(SPLIT_ENV, ""), help="gallery split")
    args, _unknown = p.parse_known_args(argv)
    return args


# ---- cached loaders: keyed by path and modification time so edits show up ----------------


def _mtime(path: Path) -> float:
    """Modification time, or 0 when the file vanished (the loader then reports it)."""
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


@st.cache_data(show_spinner=False, ttl=30)
def cached_scan(dirs: tuple[str, ...]) -> Discovery:
    """Scan result folders (cached for 30 s so new runs appear)."""
    return scan_result_dirs(list(dirs))


@st.cache_data(show_spinner=False)
def cached_eval(path: str, label: str, mtime: float) -> EvalResult:
    """Read one evaluation JSON."""
    return load_eval_result(path, label=label)


@st.cache_data(show_spinner=False)
def cached_shopper(path: str, label: str, mtime: float) -> ShopperReport:
    """Read one comparison or default-quality report."""
    return load_shopper_report(path, label=label)


@st.cache_data(show_spinner=False)
def cached_metrics(path: str, mtime: float) -> Any:
    """Read one metrics.jsonl."""
    return load_metrics(path)


@st.cache_resource(show_spinner="Loading checkpoint…")
def cached_model(path: str) -> Any:
    """Load a checkpoint once per server."""
    return dm.load_checkpoint(path)


@st.cache_resource(show_spinner="Loading gallery…")
def cached_gallery(spec: dm.GallerySpec) -> Any:
    """Load a gallery data set once per server."""
    return dm.load_gallery(spec)


@st.cache_resource(show_spinner="Embedding the gallery…")
def cached_retriever(checkpoint: str, spec: dm.GallerySpec) -> Any:
    """Build a model's retriever over a gallery once per server."""
    return dm.build_retriever(checkpoint, cached_model(checkpoint), cached_gallery(spec).items)


def _load_each(files: dict[str, Path], read: Any, what: str) -> list[Any]:
    """``read(path, label, mtime)`` of each chosen file; an unreadable one becomes an ``st.error``."""
    out = []
    for label, path in files.items():
        try:
            out.append(read(str(path), label, _mtime(path)))
        except Exception as exc:  # noqa: BLE001 - shown in the page, never a traceback
            st.error(f"{what} {label}: {exc}")
    return out


def load_results(files: dict[str, Path]) -> list[EvalResult]:
    """Read the chosen evaluation files; each unreadable one becomes an ``st.error``."""
    return _load_each(files, cached_eval, "Result file")


def load_shopper_reports(files: dict[str, Path]) -> list[ShopperReport]:
    """Read the chosen shopper reports; each unreadable one becomes an ``st.error``."""
    return _load_each(files, cached_shopper, "Shopper report")


def load_retrievers(settings: Settings) -> dict[str, Any]:
    """Retrievers of the chosen checkpoints; a checkpoint that fails is an ``st.error``."""
    out: dict[str, Any] = {}
    if settings.gallery is None:
        st.info("Choose a gallery (data set and folder) in the sidebar.")
        return out
    try:
        cached_gallery(settings.gallery)
    except Exception as exc:  # noqa: BLE001
        st.error(f"Gallery {settings.gallery.describe()} could not be loaded: {exc}")
        return out
    for label, path in settings.checkpoints.items():
        try:
            out[label] = cached_retriever(str(path), settings.gallery)
        except Exception as exc:  # noqa: BLE001
            st.error(f"Checkpoint {label} ({path}) could not be loaded: {exc}")
    return out


# ---- sidebar -------------------------------------------------------------------------------


def _pick(title: str, found: dict[str, Path], key: str, limit: int | None = None) -> dict:
    """A multiselect over found label -> path, all (or the first ``limit``) chosen by default."""
    labels = list(found)
    default = labels if limit is None else labels[:limit]
    chosen = st.sidebar.multiselect(title, labels, default=default, key=key)
    return {label: found[label] for label in chosen}


def _gallery_inputs(args: argparse.Namespace, checkpoints: dict[str, Path]) -> Any:
    """Sidebar inputs for the gallery; defaults from options, else the checkpoint's data."""
    from ..data import DATASETS

    guess = next((g for p in checkpoints.values() if (g := dm.train_gallery(p))), None)
    dataset = args.dataset or (guess.dataset if guess else "synthetic")
    root = args.data_root or (guess.root if guess else str(home_dir() / "default" / "data"))
    names = DATASETS.names()
    st.sidebar.subheader("Gallery")
    name = st.sidebar.selectbox(
        "Data set", names, index=names.index(dataset) if dataset in names else 0, key="dataset"
    )
    root = st.sidebar.text_input(
        "Data folder", value=root, key="data_root",
        help="the data set's folder; for 'published' also a Hub dataset repo id",
    )
    split_default = args.split or (guess.split if guess else DEFAULT_SPLITS.get(name, "val"))
    split = st.sidebar.text_input("Split", value=split_default, key="split")
    return dm.GallerySpec(name, root.strip(), split.strip()) if root.strip() else None


def sidebar(args: argparse.Namespace) -> Settings:
    """Draw the sidebar and return what it chose."""
    st.sidebar.title("Model comparison")
    defaults = [str(d) for d in (args.runs or default_result_dirs())]
    text = st.sidebar.text_area(
        "Result folders (one a line)", value="\n".join(defaults), key="runs_text"
    )
    dirs = tuple(line.strip() for line in text.splitlines() if line.strip())
    found = cached_scan(dirs)
    for problem in found.errors:
        st.sidebar.warning(problem)
    settings = Settings(discovery=found)
    settings.eval_files = _pick("Evaluation results", found.eval_files, "eval_files")
    if found.shopper_files:  # comparison / default-quality reports: the shopper view
        settings.shopper_files = _pick("Shopper reports", found.shopper_files, "shopper_files")
    settings.metrics_files = _pick("Training runs", found.metrics_files, "metrics_files")
    settings.checkpoints = _pick("Checkpoints", found.checkpoints, "checkpoints", limit=6)
    try:
        settings.gallery = _gallery_inputs(args, settings.checkpoints)
    except Exception as exc:  # noqa: BLE001
        st.sidebar.error(f"Gallery settings: {exc}")
    return settings


def main(argv: Sequence[str] | None = None) -> None:
    """Render the whole dashboard (one Streamlit script run)."""
    from .views import available_views

    st.set_page_config(page_title="Fashion retrieval · model comparison", layout="wide")
    settings = sidebar(parse_args(argv))
    views = available_views(settings)
    view = st.radio("View", list(views), horizontal=True, key="view", label_visibility="collapsed")
    try:
        views[view](settings)
    except Exception as exc:  # noqa: BLE001 - the page keeps serving
        st.error(f"{view} failed: {type(exc).__name__}: {exc}")
