"""One recorded refinement session made ready to show as pictures: per turn the picture, the
words and the top k, with the hidden target and the shopper's pick marked.

A session is ``report.replays[model][policy]`` of a :class:`~.sessions.SessionsReport`:
``{"target": id, "start": id, "turns": [{"picture": id, "text": str, "hits": [id, ...],
"target_rank": int | null, "success": bool}]}``. The pick of a turn is the next turn's
picture (or the turn's own ``"pick"`` when the file gives one). Images come from
``report.paths``; a relative path is looked up beside the file first, then from the working
folder. Nothing here imports Streamlit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .results import ResultFileError
from .sessions import SessionsReport

NO_REPLAYS = (
    "This file records no session replays (written before replays were kept): "
    "the curves and the table only."
)


@dataclass
class Picture:
    """A catalogue item to show: its id, an image file that exists (or None) and, when there
    is none, why (``problem``)."""

    id: str
    path: str | None
    problem: str = ""


@dataclass
class ReplayHit:
    """One of a turn's top k: rank from 1, the picture, whether it is the target or the pick."""

    rank: int
    picture: Picture
    target: bool
    pick: bool


@dataclass
class ReplayTurn:
    """One turn: the picture and words asked with, the top k, the target's rank after it and
    whether the hit rule was met by then."""

    turn: int
    picture: Picture
    text: str
    hits: list[ReplayHit]
    target_rank: int | None
    success: bool


@dataclass
class Replay:
    """A whole session of one model under one policy."""

    model: str
    policy: str
    target: Picture
    start: Picture
    turns: list[ReplayTurn]


def replay_choices(report: SessionsReport) -> dict[str, list[str]]:
    """model -> the policies it has a replay for, in the file's order (models without one,
    such as the random baseline, are left out)."""
    out = {}
    for model, per_policy in report.replays.items():
        named = [str(p) for p, r in per_policy.items() if isinstance(r, dict)]
        if named:
            out[model] = named
    return out


def picture(report: SessionsReport, item_id: Any) -> Picture:
    """The image of one item id, or a ``Picture`` that says why there is none."""
    item = str(item_id)
    raw = report.paths.get(item)
    if raw is None:
        why = "no image paths in the file" if not report.paths else "no image path for it"
        return Picture(item, None, why)
    path = Path(raw).expanduser()
    candidates = [path] if path.is_absolute() else [Path(report.base_dir) / path, path]
    for candidate in candidates:
        if candidate.is_file():
            return Picture(item, str(candidate), "")
    return Picture(item, None, f"image not found: {raw}")


def _rank(value: Any, where: str) -> int | None:
    """A target rank (None when the target was not ranked)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ResultFileError(f"{where}: expected a rank or null, got {value!r}")
    return int(value)


def _item(value: Any, where: str) -> str:
    """An item id (a string or an integer)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ResultFileError(f"{where}: expected an item id, got {value!r}")
    return str(value)


def _turn(
    report: SessionsReport, raw: Any, pick: str | None, target: str, where: str, n: int
) -> ReplayTurn:
    """One raw turn checked and resolved; ``pick`` is the id the shopper went on with."""
    if not isinstance(raw, dict):
        raise ResultFileError(f"{where}: expected an object, got {type(raw).__name__}")
    hits = raw.get("hits")
    if not isinstance(hits, list):
        raise ResultFileError(f"{where}: no 'hits' list")
    ids = [_item(h, f"{where}.hits[{i}]") for i, h in enumerate(hits)]
    text = raw.get("text", "")
    return ReplayTurn(
        turn=n,
        picture=picture(report, _item(raw.get("picture"), f"{where}.picture")),
        text=text if isinstance(text, str) else str(text),
        hits=[
            ReplayHit(rank, picture(report, i), i == target, i == pick)
            for rank, i in enumerate(ids, start=1)
        ],
        target_rank=_rank(raw.get("target_rank"), f"{where}.target_rank"),
        success=raw.get("success") is True,
    )


def replay(report: SessionsReport, model: str, policy: str) -> Replay:
    """The recorded session of ``model`` under ``policy``, checked; ``ResultFileError``
    naming the file and the bad entry when it is missing or malformed."""
    where = f"{report.path}: replays[{model!r}][{policy!r}]"
    raw = report.replays.get(model, {}).get(policy)
    if not isinstance(raw, dict):
        raise ResultFileError(f"{where}: no recorded session")
    turns = raw.get("turns")
    if not isinstance(turns, list) or not turns:
        raise ResultFileError(f"{where}: no 'turns' list")
    target = _item(raw.get("target"), f"{where}.target")
    start = _item(raw.get("start", _first_picture(turns)), f"{where}.start")
    out = []
    for i, turn in enumerate(turns):
        nxt = turns[i + 1] if i + 1 < len(turns) else None
        pick = turn.get("pick") if isinstance(turn, dict) else None
        if pick is None and isinstance(nxt, dict):
            pick = nxt.get("picture")
        out.append(_turn(report, turn, None if pick is None else str(pick), target,
                         f"{where}.turns[{i}]", i + 1))
    return Replay(model, policy, picture(report, target), picture(report, start), out)


def _first_picture(turns: list[Any]) -> Any:
    """The first turn's picture (the start, when the file does not name it)."""
    return turns[0].get("picture") if isinstance(turns[0], dict) else None


def turn_summary(turn: ReplayTurn) -> str:
    """One line under a turn's words: the target's rank and whether the hit rule was met."""
    rank = "not in the ranking" if turn.target_rank is None else f"rank {turn.target_rank}"
    return f"turn {turn.turn} · target {rank} · {'found ✓' if turn.success else 'not yet'}"


def hit_caption(hit: ReplayHit) -> str:
    """A thumbnail's caption: rank and id, with the target and pick marked in words."""
    marks = [m for m, on in (("✓ target", hit.target), ("➜ picked", hit.pick)) if on]
    return " · ".join([f"{hit.rank}. {hit.picture.id}", *marks])
