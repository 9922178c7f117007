"""The refinement sessions view: success@T curves per model, the figures per model and history
policy, and one recorded session replayed as pictures. Shown when a sessions file (or a
comparison report with sessions) was found; the data shaping is in
:mod:`~fashion_retrieval.dashboard.sessions` and :mod:`~fashion_retrieval.dashboard.replay`."""

from __future__ import annotations

from typing import Any

import streamlit as st

from . import charts
from .loaders import Settings, load_sessions_reports
from .replay import (
    NO_REPLAYS,
    Picture,
    Replay,
    ReplayHit,
    hit_caption,
    replay,
    replay_choices,
    turn_summary,
)
from .results import ResultFileError
from .sessions import (
    SessionsReport,
    policies,
    rank_columns,
    sessions_table,
    setting_line,
    success_columns,
    success_long,
)

SESSIONS_VIEW = "Refinement sessions"
EXPLANATION = (
    "**Success by turn**: a simulated shopper starts from a picture a few attributes away from "
    "a hidden target, picks the result closest to it and asks for one attribute that still "
    "differs, turn after turn. *success@T* is the share of sessions in which, by turn T, an item "
    "with the target's type and every attribute is in the top k; *mean turns* is how many "
    "turns that took; *rank after T* is the target's median rank after turn T. A model with one "
    "policy only (the random baseline) is drawn under every policy."
)


def sessions_view(settings: Settings) -> None:
    """Refinement results, one block per chosen sessions file."""
    st.header("Refinement sessions")
    if not settings.sessions_files:
        st.info(
            "No sessions file chosen. Add a folder holding the JSON of "
            "`python -m fashion_retrieval.evaluation.sessions --json FILE`."
        )
        return
    for i, report in enumerate(load_sessions_reports(settings.sessions_files)):
        st.subheader(f"{report.label} · refinement sessions", divider="gray")
        _sessions_block(report, key=str(i))


def _sessions_block(report: SessionsReport, key: str) -> None:
    """One file: its setting, the curves under a chosen policy, the table, a replay."""
    st.caption(setting_line(report))
    names = policies(report)
    policy = st.selectbox(
        "History policy", names, key=f"session_policy_{key}",
        help="last_turn: the last picture with the last words; history: the earlier words too",
    )
    st.markdown(EXPLANATION)
    long = success_long(report, policy)
    st.altair_chart(charts.success_chart(long, f"Success by turn (%) · {policy}"), width="stretch")
    _figures_table(report)
    _replay_block(report, policy, key)


def _figures_table(report: SessionsReport) -> None:
    """success@T (%), mean turns and median ranks, indexed by model and policy."""
    table = sessions_table(report).set_index(["model", "policy"])
    formats = {c: "{:.1f}" for c in success_columns(report)}
    formats.update({"mean turns": "{:.2f}", **{c: "{:g}" for c in rank_columns(report)}})
    st.table(table.style.format(formats, na_rep="–"))


def _replay_block(report: SessionsReport, policy: str, key: str) -> None:
    """The model chooser and the chosen model's recorded session under ``policy``."""
    st.markdown(
        "**One session, replayed**: each turn's picture and words, then the top k; "
        "the hidden target is marked *✓ target*, the result the shopper went on with "
        "*➜ picked*."
    )
    choices = replay_choices(report)
    if not choices:
        st.info(NO_REPLAYS)
        return
    models = [m for m, recorded in choices.items() if policy in recorded]
    if not models:
        st.info(f"No session is recorded under the {policy} policy; choose another policy.")
        return
    model = st.selectbox("Model to replay", models, key=f"replay_model_{key}")
    try:
        session = replay(report, model, policy)
    except ResultFileError as exc:
        st.error(f"Sessions file {report.label}: {exc}")
        return
    if not report.paths:
        st.info("This file records no image paths: items are shown by id.")
    _show_session(session, report.k)


def _show_session(session: Replay, k: int | None) -> None:
    """The start and target, then one row per turn: picture, words, top k (thumbnails of one
    size throughout: every row has the same columns)."""
    width = max([k or 0, *(len(t.hits) for t in session.turns)])
    spec = [1, 2, *[1] * width]
    head = st.columns(spec)
    _thumb(head[0], session.start, f"start · {session.start.id}")
    head[1].markdown(f"**{session.model}** under **{session.policy}**: {len(session.turns)} turns.")
    _thumb(head[2], session.target, f"target · {session.target.id}")
    for turn in session.turns:
        cells = st.columns(spec)
        _thumb(cells[0], turn.picture, f"picture · {turn.picture.id}")
        cells[1].markdown(f"**“{turn.text or '(no words)'}”**")
        cells[1].caption(turn_summary(turn))
        for cell, hit in zip(cells[2:], turn.hits, strict=False):
            _hit(cell, hit)


def _hit(cell: Any, hit: ReplayHit) -> None:
    """One thumbnail of the top k with its marks."""
    _thumb(cell, hit.picture, hit_caption(hit))
    if hit.target:
        cell.markdown(":green-badge[✓ target]")
    if hit.pick:
        cell.markdown(":blue-badge[➜ picked]")


def _thumb(cell: Any, pic: Picture, caption: str) -> None:
    """An image with its caption, or the caption and why there is no image."""
    if pic.path is None:
        cell.markdown(caption)
        cell.caption(pic.problem)
        return
    try:
        cell.image(pic.path, caption=caption, width="stretch")
    except Exception as exc:  # noqa: BLE001 - an unreadable image is a note, not a traceback
        cell.markdown(caption)
        cell.caption(f"image cannot be shown: {exc}")
