"""The simulated shopper of a refinement session, and the session loop, on embeddings.

A session has a hidden target (a gallery item) and a start picture of the target's garment
type ``start_distance`` attributes away. At each turn the model ranks the gallery for the
current picture and every request so far (one query by a history policy,
``models/history.py``); the shopper sees the top ``k``, with the results shown in earlier
turns and the pictures already picked left out. The turn succeeds when an item with the
target's caption (its type and every attribute: the synthetic catalogue's hit rule,
``evaluation/hits.py``) is among them; the session then ends. Otherwise the shopper picks
the result closest to the target by attributes (another garment type is farthest; of
equally close ones the higher ranked), which becomes the next picture, and asks for one
attribute that still differs (``asks=2``: two) in plain words of ``phrasing``.

The shopper reads the catalogue's attributes; the models never do: they only rank.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from fashion_retrieval.data import DATASETS
from fashion_retrieval.data.records import Item, Triplet
from fashion_retrieval.evaluation.embeddings import EmbeddingSource
from fashion_retrieval.evaluation.hits import is_correct

# The synthetic catalogue's attributes and phrasing, through its data set entry.
_ATTRIBUTES, _PHRASING = (DATASETS.get("synthetic").helper(m) for m in ("attributes", "phrasing"))
differing, get_category = _ATTRIBUTES.differing, _ATTRIBUTES.get_category
change_request, multi_change_request = _PHRASING.change_request, _PHRASING.multi_change_request

# Phrasings the evaluation asks in: held-out templates only, never trained on. The training
# phrasing ("train") and the development words ("dev") are what choices are made on.
EVALUATION_PHRASINGS = ("plain", "heldout")
CHOICE_PHRASINGS = ("train", "dev")


@dataclass(frozen=True)
class SessionSpec:
    """What a run of simulated sessions is: the shopper's view, its length, its requests."""

    k: int = 8  # results the shopper sees per turn
    turns: int = 5
    start_distance: int = 5  # attributes between the start picture and the target
    sessions: int = 1000
    asks: int = 1  # attributes asked per turn (1 or 2)
    phrasing: str = "plain"  # the held-out sentences with the catalogue's words
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("k", "turns", "start_distance", "sessions"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.asks not in (1, 2):
            raise ValueError(f"asks must be 1 or 2, got {self.asks}")


@dataclass(frozen=True)
class Session:
    """One drawn session: gallery rows of the hidden target and the start picture."""

    index: int
    target: int
    start: int
    distance: int  # attributes apart: spec.start_distance, or the largest the gallery holds


@dataclass(frozen=True)
class Turn:
    """What happened in one turn (gallery rows; ``rank``: the target item's, 1-based)."""

    picture: int
    text: str
    hits: tuple[int, ...]
    rank: int
    success: bool


@dataclass
class SessionLog:
    """A played session: its turns, the last one the success if there was one."""

    session: Session
    turns: list[Turn] = field(default_factory=list)

    @property
    def found_turn(self) -> int | None:
        """The turn (1-based) whose top k held the target, or None."""
        return len(self.turns) if self.turns and self.turns[-1].success else None


def attribute_distance(item: Item, target: Item) -> int:
    """How many of the target's attributes ``item`` lacks; another garment type is farther
    than any item of the target's type."""
    if item.category != target.category:
        return len(target.attributes) + 1
    return len(differing(target.attributes, item.attributes))


def described_rows(items: Sequence[Item]) -> list[int]:
    """Rows of the items with a garment type and attributes (what a session can be about)."""
    rows = [i for i, it in enumerate(items) if it.category and it.attributes]
    if not rows:
        raise ValueError("no gallery item carries attributes: sessions need a catalogue with "
                         "attribute ground truth (the synthetic catalogue)")
    return rows


def draw_sessions(items: Sequence[Item], spec: SessionSpec) -> list[Session]:
    """``spec.sessions`` seeded (target, start) pairs. The start is of the target's type and
    ``spec.start_distance`` attributes away; where the gallery holds none that far (a type
    with fewer attributes), the farthest it holds below that (``Session.distance`` says)."""
    rows = described_rows(items)
    by_type: dict[str, list[int]] = {}
    for r in rows:
        by_type.setdefault(items[r].category, []).append(r)
    rng = np.random.default_rng([spec.seed, 24])
    out: list[Session] = []
    tries = 0
    while len(out) < spec.sessions:
        tries += 1
        if tries > 20 * spec.sessions + 100:
            raise ValueError("no item of any target's garment type differs from it: the gallery "
                             "is too small for sessions")
        target = rows[int(rng.integers(len(rows)))]
        dist = {j: attribute_distance(items[j], items[target]) for j in by_type[items[target].category]}
        reach = [d for d in set(dist.values()) if 1 <= d <= spec.start_distance]
        if not reach:
            continue
        d = max(reach)
        starts = [j for j, dj in dist.items() if dj == d]
        out.append(Session(len(out), target, starts[int(rng.integers(len(starts)))], d))
    return out


def ask(picture: Item, target: Item, rng: np.random.Generator, asks: int = 1,
        phrasing: str = "plain") -> str:
    """The shopper's request: ``asks`` of the attributes the picture still lacks (drawn with
    ``rng``), with the target's values, in ``phrasing``."""
    names = differing(target.attributes, picture.attributes) or list(target.attributes)
    chosen = sorted(int(i) for i in rng.choice(len(names), size=min(asks, len(names)), replace=False))
    noun = get_category(target.category).noun
    changes = {names[i]: target.attributes[names[i]] for i in chosen}  # caption order
    if len(changes) == 1:
        (name, value), = changes.items()
        return change_request(name, value, noun, rng, phrasing)
    return multi_change_request(noun, changes, rng, phrasing)


class Ranker(Protocol):
    """Scores of every gallery item for a batch of session turns."""

    def scores(self, pictures: Sequence[int], requests: Sequence[Sequence[str]]) -> torch.Tensor:
        """``(A, N)`` scores: row ``a`` for picture row ``pictures[a]`` and its requests so far."""


Policy = Callable[[torch.Tensor], torch.Tensor]  # (T, D) turns -> (D,) query


def policy_function(policy: str | Policy) -> Policy:
    """A history policy by name (``models.history.session_query``), or a given function."""
    if callable(policy):
        return policy
    from fashion_retrieval.models.history import HISTORY_POLICIES, session_query

    HISTORY_POLICIES.get(policy)  # an unknown name lists the valid ones, before any work
    return lambda turns: session_query(policy, turns)


class PolicyRanker:
    """A model's ranking: the current picture composed with each request so far (``(T, D)``,
    oldest first), made one query by the history policy, against the gallery."""

    def __init__(self, source: EmbeddingSource, items: Sequence[Item], policy: str | Policy) -> None:
        self.source, self.items = source, list(items)
        self.policy = policy_function(policy)
        self.gallery = source.item_embeddings()  # (N, D)

    def scores(self, pictures: Sequence[int], requests: Sequence[Sequence[str]]) -> torch.Tensor:
        """``(A, N)`` cosine scores of the policy's queries."""
        triplets = [Triplet(self.items[p].id, None, text, self.items[p].category)
                    for p, texts in zip(pictures, requests, strict=True) for text in texts]
        turns = self.source.query_embeddings(triplets)  # (sum of T_a, D)
        queries, at = [], 0
        for texts in requests:
            queries.append(self.policy(turns[at:at + len(texts)]))  # (D,)
            at += len(texts)
        return torch.stack(queries) @ self.gallery.T  # (A, N)


class RandomRanker:
    """The baseline: a fresh seeded random order of the gallery for every turn."""

    def __init__(self, n: int, seed: int = 0) -> None:
        self.n = n
        self.generator = torch.Generator().manual_seed(seed)

    def scores(self, pictures: Sequence[int], requests: Sequence[Sequence[str]]) -> torch.Tensor:
        """``(A, N)`` uniform scores (float64: ties are negligible)."""
        return torch.rand(len(pictures), self.n, generator=self.generator, dtype=torch.float64)


@dataclass
class _Live:
    """A session being played."""

    log: SessionLog
    picture: int
    requests: list[str]
    excluded: set[int]
    rng: np.random.Generator
    done: bool = False


def _play_turn(live: _Live, row: torch.Tensor, items: Sequence[Item], spec: SessionSpec,
               protocol: str) -> None:
    """One turn of one session from its ``(N,)`` scores: the top k, the verdict, the pick."""
    target = items[live.log.session.target]
    row = row.clone()
    row[list(live.excluded)] = float("-inf")  # shown before, or picked
    k = min(spec.k, len(items) - len(live.excluded))
    if k < 1:  # nothing left to show
        live.done = True
        return
    top = torch.topk(row, k).indices.tolist()
    rank = 1 + int((row > row[live.log.session.target]).sum())
    success = any(is_correct(protocol, items[j].id, items[j].caption, {target.id}, target.caption) for j in top)
    live.log.turns.append(Turn(live.picture, live.requests[-1], tuple(top), rank, success))
    if success:
        live.done = True
        return
    live.excluded.update(top)
    live.picture = min(top, key=lambda j: attribute_distance(items[j], target))  # first of the closest
    live.requests.append(ask(items[live.picture], target, live.rng, spec.asks, spec.phrasing))


def run_sessions(ranker: Ranker, items: Sequence[Item], sessions: Sequence[Session], spec: SessionSpec,
                 protocol: str = "synthetic") -> list[SessionLog]:
    """Play every session for up to ``spec.turns`` turns (all sessions' turn ``t`` ranked in
    one batch); the shopper's words are seeded per session, so every model and policy gets
    the same first request."""
    live = []
    for s in sessions:
        rng = np.random.default_rng([spec.seed, 25, s.index])
        first = ask(items[s.start], items[s.target], rng, spec.asks, spec.phrasing)
        live.append(_Live(SessionLog(s), s.start, [first], {s.start}, rng))
    for _ in range(spec.turns):
        active = [x for x in live if not x.done]
        if not active:
            break
        scores = ranker.scores([x.picture for x in active], [x.requests for x in active])  # (A, N)
        for x, row in zip(active, scores, strict=True):
            _play_turn(x, row, items, spec, protocol)
    return [x.log for x in live]
