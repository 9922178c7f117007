"""What the sidebar chose (:class:`Settings`) and the cached loaders the page and the views
share: results, shopper reports, refinement sessions, training logs, checkpoints, galleries
and retrievers.

:mod:`fashion_retrieval.dashboard.ui` draws the sidebar, fills a ``Settings`` and calls a view;
:mod:`fashion_retrieval.dashboard.views` reads the ``Settings`` through these loaders. Both
import this module; the views never import the page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import streamlit as st

from . import models as dm
from .curves import load_metrics
from .results import EvalResult, load_eval_result
from .sessions import SessionsReport, load_sessions_report
from .shopper import ShopperReport, load_shopper_report
from .sources import Discovery, scan_result_dirs


@dataclass
class Settings:
    """Everything the sidebar chose; the views read only this."""

    discovery: Discovery
    eval_files: dict[str, Path] = field(default_factory=dict)
    shopper_files: dict[str, Path] = field(default_factory=dict)
    sessions_files: dict[str, Path] = field(default_factory=dict)
    metrics_files: dict[str, Path] = field(default_factory=dict)
    checkpoints: dict[str, Path] = field(default_factory=dict)
    gallery: dm.GallerySpec | None = None


# ---- cached loaders: keyed by path and modification time so edits show up ----------------


def mtime(path: Path) -> float:
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
def cached_sessions(path: str, label: str, mtime: float) -> SessionsReport:
    """Read one sessions file (or a comparison report's sessions)."""
    return load_sessions_report(path, label=label)


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
    return dm.build_retriever(checkpoint, cached_model(checkpoint), cached_gallery(spec))


def _load_each(files: dict[str, Path], read: Any, what: str) -> list[Any]:
    """``read(path, label, mtime)`` of each chosen file; an unreadable one becomes an ``st.error``."""
    out = []
    for label, path in files.items():
        try:
            out.append(read(str(path), label, mtime(path)))
        except Exception as exc:  # noqa: BLE001 - shown in the page, never a traceback
            st.error(f"{what} {label}: {exc}")
    return out


def load_results(files: dict[str, Path]) -> list[EvalResult]:
    """Read the chosen evaluation files; each unreadable one becomes an ``st.error``."""
    return _load_each(files, cached_eval, "Result file")


def load_shopper_reports(files: dict[str, Path]) -> list[ShopperReport]:
    """Read the chosen shopper reports; each unreadable one becomes an ``st.error``."""
    return _load_each(files, cached_shopper, "Shopper report")


def load_sessions_reports(files: dict[str, Path]) -> list[SessionsReport]:
    """Read the chosen sessions files; each unreadable one becomes an ``st.error``."""
    return _load_each(files, cached_sessions, "Sessions file")


def load_retrievers(settings: Settings) -> dict[str, Any]:
    """Retrievers of the chosen checkpoints over the chosen gallery (what every model view
    needs); a checkpoint that fails is an ``st.error``, and when none is left the page says
    what to choose."""
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
    if not out:
        st.info("Choose at least one checkpoint that loads in the sidebar.")
    return out
