"""The dashboard's views, each a function of the sidebar's ``Settings``; the shopper view
only when a comparison or default-quality report was found, the refinement sessions view
(:mod:`~fashion_retrieval.dashboard.refinement_view`) only when a sessions file was found."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from . import charts
from .browse import compare_models, query_options
from .curves import combine_runs, metric_groups
from .embedmap import color_options, project_gallery, subsample
from .loaders import (
    Settings,
    cached_gallery,
    cached_metrics,
    cached_retriever,
    load_results,
    load_retrievers,
    load_shopper_reports,
    mtime,
)
from .models import gallery_embeddings
from .projection import PROJECTIONS, ProjectionUnavailable
from .refinement_view import SESSIONS_VIEW, sessions_view
from .results import (
    category_table,
    group_results,
    is_recall_metric,
    recall_long,
    recall_table,
    sort_metrics,
)
from .shopper import (
    EXPLANATIONS,
    ShopperReport,
    control_long,
    control_table,
    numeric_columns,
    one_gallery_table,
    ordering_line,
    phrasing_table,
    words_note,
    words_table,
)

SHOPPER_VIEW = "Shopper view"


def recall_view(settings: Settings) -> None:
    """Recall tables and bar charts, one block per data set/split/protocol; per-category bars
    where the results have categories."""
    st.header("Recall")
    if not settings.eval_files:
        st.info("No evaluation results chosen. Add a folder holding evaluation JSON files.")
        return
    groups = group_results(load_results(settings.eval_files))
    for i, (title, results) in enumerate(groups.items()):
        if len(groups) > 1:
            st.subheader(title, divider="gray")
        _recall_block(results, key=f"category_metric_{i}")


def _recall_block(results: list[Any], key: str) -> None:
    """One comparable group: table, overall bars, per-category bars for a chosen metric."""
    table = recall_table(results).set_index("result")
    numeric = [c for c in table.columns if is_recall_metric(c)]
    st.table(table.style.format("{:.1f}", subset=numeric, na_rep="–"))
    st.altair_chart(charts.recall_bars(recall_long(results)), width="stretch")
    cats = category_table(results)
    if cats.empty:
        return
    metrics = sort_metrics(set(cats["metric"]))
    default = metrics.index("R@10") if "R@10" in metrics else 0
    metric = st.selectbox("Per-category metric", metrics, index=default, key=key)
    st.altair_chart(charts.category_bars(cats, metric), width="stretch")


def curves_view(settings: Settings) -> None:
    """Loss, learning rate and eval recall against step; one line per run."""
    st.header("Training curves")
    if not settings.metrics_files:
        st.info("No training runs chosen. Add a folder holding runs with metrics.jsonl.")
        return
    per_run = {}
    for label, path in settings.metrics_files.items():
        try:
            per_run[label] = cached_metrics(str(path), mtime(path))
        except Exception as exc:  # noqa: BLE001
            st.error(f"Training log {label}: {exc}")
    curves = combine_runs(per_run)
    if curves.empty:
        st.warning("The chosen training logs hold no numeric metrics yet.")
        return
    groups = metric_groups(list(curves["metric"].unique()))
    for title, metrics in groups.items():
        chart = charts.curve_chart(curves, metrics, title, log_y=title == "learning rate")
        st.altair_chart(chart, width="stretch")


@st.cache_data(show_spinner="Projecting…")
def _projection(checkpoint: str, _spec: Any, spec_key: str, method: str, max_points: int) -> Any:
    """A model's gallery projected to 2-D (cached per model, gallery, method and size)."""
    items = cached_gallery(_spec).items
    idx = subsample(len(items), max_points)
    chosen = [items[i] for i in idx]
    emb = gallery_embeddings(cached_retriever(checkpoint, _spec), chosen)  # (n, D)
    return project_gallery(chosen, emb, method=method)


def embedding_view(settings: Settings) -> None:
    """Each model's gallery embeddings in 2-D, side by side, coloured by category/attribute."""
    st.header("Embedding map")
    retrievers = load_retrievers(settings)
    if not retrievers:  # load_retrievers said what is missing
        return
    items = cached_gallery(settings.gallery).items
    c1, c2, c3 = st.columns(3)
    method = c1.selectbox("Projection", PROJECTIONS.names(), key="projection")
    color_by = c2.selectbox("Colour by", color_options(items), key="color_by")
    max_points = c3.number_input("Points", 10, 5000, min(1000, len(items)), key="max_points")
    cols = st.columns(min(len(retrievers), 3))
    for i, label in enumerate(retrievers):
        path = str(settings.checkpoints[label])
        try:
            frame = _projection(path, settings.gallery, repr(settings.gallery), method, max_points)
        except ProjectionUnavailable as exc:
            st.warning(str(exc))
            return
        except Exception as exc:  # noqa: BLE001
            cols[i % len(cols)].error(f"{label}: projection failed: {exc}")
            continue
        chart = charts.embedding_scatter(frame, color_by, title=label)
        cols[i % len(cols)].altair_chart(chart, width="stretch")


def _query_inputs(dataset: Any) -> tuple[Any, str, Any, str | None]:
    """The query widgets: a test query or a catalogue image plus text."""
    mode = st.radio("Query", ["Test query", "Make one"], horizontal=True, key="query_mode")
    by_id = dataset.by_id
    if mode == "Test query" and dataset.triplets:
        labels = query_options(dataset.triplets)
        pick = st.selectbox(
            "Test query", range(len(labels)), format_func=labels.__getitem__, key="query_pick"
        )
        triplet = dataset.triplets[pick]
        return by_id[triplet.source].path, triplet.text, triplet, triplet.source
    if mode == "Test query":
        st.info("This split has no test queries; make one instead.")
    ids = [it.id for it in dataset.items]
    source = st.selectbox("Catalogue image (optional)", ["(none)", *ids], key="query_image")
    text = st.text_input("Change to make (or words to search)", key="query_text")
    image = by_id[source].path if source != "(none)" else None
    return image, text, None, source if source != "(none)" else None


def _show_hits(label: str, hits: Any, k: int) -> None:
    """One model's top-K as a row of images; correct targets marked ✓ with a green badge."""
    st.subheader(label, divider="gray")
    cells = st.columns(k)
    for cell, row in zip(cells, hits.itertuples(), strict=False):
        mark = "✓ " if row.correct else ""  # a glyph every font has (no colour emoji)
        caption = f"{mark}{row.rank}. {row.caption or row.id} · {row.score:.3f}"
        if row.path:
            cell.image(row.path, caption=caption, width="stretch")
        else:
            cell.write(caption)
        if row.correct:
            cell.markdown(":green-badge[✓ correct target]")


def _show_query(dataset: Any, image: Any, text: str, triplet: Any, source: str | None) -> None:
    """The query (image and words) and, for a test query, its known target."""
    cols = st.columns([1, 1, 4])
    if image is not None:
        cols[0].image(image, caption=f"query image · {source}", width="stretch")
    target = dataset.by_id.get(triplet.target) if triplet and triplet.target else None
    if target is not None:
        cols[1].image(
            target.path, caption=f"target · {target.caption or target.id}", width="stretch"
        )
    cols[2].markdown(f"**Words:** {text or '(none)'}")


def query_view(settings: Settings) -> None:
    """Pick or make a query; every model's top-K side by side, correct targets marked."""
    st.header("Query browser")
    retrievers = load_retrievers(settings)
    if not retrievers:  # load_retrievers said what is missing
        return
    dataset = cached_gallery(settings.gallery)
    image, text, triplet, source = _query_inputs(dataset)
    k = st.slider("Top K", 1, 10, 5, key="top_k")
    if image is None and not (text or "").strip():
        st.info("Pick a catalogue image, type a change, or both.")
        return
    _show_query(dataset, image, text, triplet, source)
    results = compare_models(
        retrievers,
        image=image,
        text=text,
        k=k,
        triplet=triplet,
        protocol=dataset.protocol,
        exclude=source,
    )
    for label, hits in results.items():
        _show_hits(label, hits, k)


def shopper_view(settings: Settings) -> None:
    """Quality as a shopper sees it, one block per chosen comparison or default-quality report."""
    st.header("Shopper view: composition control")
    if not settings.shopper_files:
        st.info("No shopper report chosen. Add a folder holding a comparison or default-quality JSON.")
        return
    for report in load_shopper_reports(settings.shopper_files):
        st.subheader(f"{report.label} · {report.kind} report", divider="gray")
        _shopper_block(report)


def _percent_table(table: Any) -> None:
    """A model-indexed table of percentages, one decimal."""
    fmt = table.set_index("model").style.format("{:.1f}", subset=numeric_columns(table), na_rep="–")
    st.table(fmt)


def _shopper_block(report: ShopperReport) -> None:
    """One report: its setting, then each figure with its one-line explanation."""
    st.caption(report.setting)
    if line := ordering_line(report):
        st.markdown(line)
    st.markdown(EXPLANATIONS["one_gallery"])
    _percent_table(one_gallery_table(report))
    st.markdown(EXPLANATIONS["control"])
    _percent_table(control_table(report))
    st.altair_chart(charts.control_chart(control_long(report)), width="stretch")
    phrasing = phrasing_table(report)
    if not phrasing.empty:
        st.markdown(EXPLANATIONS["phrasing"])
        _percent_table(phrasing)
    words = words_table(report)
    if not words.empty:
        note = words_note(report)
        st.markdown(EXPLANATIONS["words_to_image"] + (f" ({note})" if note else ""))
        _percent_table(words)


VIEWS: dict[str, Callable[[Settings], None]] = {
    "Recall": recall_view,
    "Training curves": curves_view,
    "Embedding map": embedding_view,
    "Query browser": query_view,
}


def available_views(settings: Settings) -> dict[str, Callable[[Settings], None]]:
    """The views to offer: the four always, the shopper view when a report was found, the
    refinement sessions view when a sessions file was found."""
    views = dict(VIEWS)
    if settings.discovery.shopper_files:
        views[SHOPPER_VIEW] = shopper_view
    if settings.discovery.sessions_files:
        views[SESSIONS_VIEW] = sessions_view
    return views
