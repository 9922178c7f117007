"""The Streamlit page: sidebar and view switch (``streamlit_app/app.py`` calls :func:`main`).
The views are in :mod:`fashion_retrieval.dashboard.views`; the sidebar's ``Settings`` and the
cached loaders both use are in :mod:`fashion_retrieval.dashboard.loaders`."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import streamlit as st

from ..paths import default_dir
from . import models as dm
from .loaders import Settings, cached_scan
from .sources import default_result_dirs
from .views import available_views

DATASET_ENV = "FASHION_RETRIEVAL_DATASET"
DATA_ROOT_ENV = "FASHION_RETRIEVAL_DATA_ROOT"
SPLIT_ENV = "FASHION_RETRIEVAL_SPLIT"
# The split whose queries have ground truth: FashionIQ/synthetic evaluate on val.


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Options after ``--`` on ``streamlit run streamlit_app/app.py -- ...`` (unknown ignored)."""
    p = argparse.ArgumentParser(prog="streamlit_app/app.py", allow_abbrev=False, add_help=False)
    p.add_argument("--runs", action="append", default=None, help="result folder (repeatable)")
    p.add_argument("--dataset", default=os.environ.get(DATASET_ENV, ""), help="gallery data set")
    p.add_argument("--data-root", default=os.environ.get(DATA_ROOT_ENV, ""), help="gallery root")
    p.add_argument("--split", default=os.environ.get(SPLIT_ENV, ""), help="gallery split")
    args, _unknown = p.parse_known_args(argv)
    return args


# ---- sidebar -------------------------------------------------------------------------------


def _pick(title: str, found: dict[str, Path], key: str, limit: int | None = None) -> dict:
    """A multiselect over found label -> path, all (or the first ``limit``) chosen by default."""
    labels = list(found)
    default = labels if limit is None else labels[:limit]
    chosen = st.sidebar.multiselect(title, labels, default=default, key=key)
    return {label: found[label] for label in chosen}


DETECT = "(detect from the folder)"  # the data set choice that lets the folder say what it holds


def _gallery_inputs(args: argparse.Namespace, checkpoints: dict[str, Path]) -> Any:
    """Sidebar inputs for the gallery; defaults from options, else the checkpoint's data, else
    the embedded default's catalogue (its layout detected)."""
    from ..data import DATASETS
    from ..serving.catalogue import PHOTOS

    guess = next((g for p in checkpoints.values() if (g := dm.train_gallery(p))), None)
    dataset = args.dataset or (guess.dataset if guess else DETECT)
    root = args.data_root or (guess.root if guess else str(default_dir() / "data"))
    names = [DETECT, *DATASETS.names(), PHOTOS]
    st.sidebar.subheader("Gallery")
    name = st.sidebar.selectbox(
        "Data set", names, index=names.index(dataset) if dataset in names else 0, key="dataset"
    )
    root = st.sidebar.text_input(
        "Data folder", value=root, key="data_root",
        help="the data set's folder; for 'published' also a Hub dataset repo id",
    )
    split_default = args.split or (guess.split if guess else "")
    split = st.sidebar.text_input("Split", value=split_default, key="split",
                                  help="empty: the data set's evaluation split")
    spec = dm.GallerySpec("" if name == DETECT else name, root.strip(), split.strip())
    return spec if root.strip() else None


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
    if found.sessions_files:  # refinement sessions: the sessions view
        settings.sessions_files = _pick("Refinement sessions", found.sessions_files, "sessions_files")
    settings.metrics_files = _pick("Training runs", found.metrics_files, "metrics_files")
    settings.checkpoints = _pick("Checkpoints", found.checkpoints, "checkpoints", limit=6)
    try:
        settings.gallery = _gallery_inputs(args, settings.checkpoints)
    except Exception as exc:  # noqa: BLE001
        st.sidebar.error(f"Gallery settings: {exc}")
    return settings


def main(argv: Sequence[str] | None = None) -> None:
    """Render the whole dashboard (one Streamlit script run)."""
    st.set_page_config(page_title="Fashion retrieval · model comparison", layout="wide")
    settings = sidebar(parse_args(argv))
    views = available_views(settings)
    view = st.radio("View", list(views), horizontal=True, key="view", label_visibility="collapsed")
    try:
        views[view](settings)
    except Exception as exc:  # noqa: BLE001 - the page keeps serving
        st.error(f"{view} failed: {type(exc).__name__}: {exc}")
