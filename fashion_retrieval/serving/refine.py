"""Refinement sessions: a shopper who keeps talking, kept on the server.

A session is a sequence of steps. Each step holds a picture (a catalogue item id: its stored
features are used, nothing is uploaded or decoded), the words the shopper typed, and each
model's results. A next step's query, for every model, is the step's picture with every
request so far (``Retriever.search_session``), made one query by the session's history
policy (``history`` by default, ``last_turn`` the one-turn alternative; see
``models/history.py``); it leaves out the results that model already showed in the session
and every picture picked: what a shopper passed over is not shown again.

One picture chain, per-model results. The shopper picks a result of one model; that picture
becomes the next step's picture for *every* model shown side by side, so the models answer
the same request and stay comparable. Each model keeps its own results and leaves out only
what it showed itself.

Back to step N drops the steps after N: the session is then exactly as it was at step N
(its results, what each model showed, the requests so far) and the next step follows from
there.

Sessions live in memory, keyed by an unguessable id: at most ``max_sessions`` (the least
recently used is dropped first), at most ``max_steps`` steps each. An unknown or dropped id
is a :class:`QueryError` for :meth:`RefinementSessions.refine` and ``back``, and None for
:meth:`RefinementSessions.get` (a reloaded page then starts a new session cleanly).
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fashion_retrieval.data.records import Item
from fashion_retrieval.models.history import HISTORY_POLICIES
from fashion_retrieval.search.query import CatalogueImage, QueryError, check_k, clean_text
from fashion_retrieval.search.retriever import Hit
from fashion_retrieval.serving.catalogue import Catalogue
from fashion_retrieval.serving.query import DEFAULT_MAX_K

DEFAULT_POLICY = "history"
DEFAULT_MAX_SESSIONS = 256
DEFAULT_MAX_STEPS = 30
ENDED = "This refinement session has ended (or never existed); start a new one with a search."


@dataclass(frozen=True)
class Step:
    """One step of a session: ``picture`` (a catalogue item id; None only for a first step
    whose picture was uploaded, or that had none), ``words`` (empty only for a first step
    with a picture alone), each model's ``results``, the ``policy`` that answered it, ``k``
    and ``picture_path`` (the file that shows the picture)."""

    picture: str | None
    words: str
    results: Mapping[str, tuple[Hit, ...]]
    policy: str = DEFAULT_POLICY
    k: int = 0
    picture_path: str | None = None


@dataclass(frozen=True)
class SessionView:
    """A session as it stands (a snapshot, safe to hand out): its ``id``, the ``policy`` of
    its next step and its ``steps`` (at least one, the current one last)."""

    id: str
    policy: str
    steps: tuple[Step, ...]

    @property
    def step(self) -> int:
        """The current step's number (1-based)."""
        return len(self.steps)

    @property
    def current(self) -> Step:
        """The current (last) step."""
        return self.steps[-1]

    def requests(self) -> list[str]:
        """Every request so far, oldest first."""
        return [s.words for s in self.steps if s.words]

    def pictures(self) -> set[str]:
        """The catalogue pictures of every step (left out of later results)."""
        return {s.picture for s in self.steps if s.picture}

    def shown(self, model: str) -> set[str]:
        """The ids ``model`` showed in this session (left out of its later results)."""
        return {h.id for s in self.steps for h in s.results.get(model, ())}

    def to_dict(self) -> dict[str, Any]:
        """The session's JSON (without results): id, current step, policy, the steps."""
        return {
            "session": self.id, "step": self.step, "policy": self.policy,
            "steps": [{"step": i, "picture": s.picture, "words": s.words, "policy": s.policy,
                       "models": list(s.results)} for i, s in enumerate(self.steps, 1)],
        }


@dataclass
class _Session:
    id: str
    policy: str
    steps: list[Step]
    lock: threading.Lock = field(default_factory=threading.Lock)

    def view(self) -> SessionView:
        return SessionView(self.id, self.policy, tuple(self.steps))


def check_policy(policy: Any) -> str:
    """A history policy's name (None or blank: ``history``), or a QueryError listing them."""
    if policy is None or (isinstance(policy, str) and not policy.strip()):
        return DEFAULT_POLICY
    names = HISTORY_POLICIES.names()
    if not isinstance(policy, str) or policy.strip() not in names:
        raise QueryError(f"Unknown history policy {policy!r}; choose one of: {', '.join(names)}.")
    return policy.strip()


def check_step(step: Any, steps: int) -> int:
    """``step`` as a step number in 1..steps, or a QueryError naming the valid ones."""
    try:
        value = float(step)
    except (TypeError, ValueError):
        value = float("nan")
    if isinstance(step, bool) or value != value or value != int(value) or not 1 <= value <= steps:
        raise QueryError(f"There is no step {step!r} in this session; choose a step from 1 to {steps}.")
    return int(value)


class RefinementSessions:
    """The refinement sessions of one service: ``models`` (name -> Retriever) over
    ``catalogue``. Thread-safe; the steps of one session are taken one at a time."""

    def __init__(
        self,
        models: Mapping[str, Any],
        catalogue: Catalogue,
        *,
        max_k: int = DEFAULT_MAX_K,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        max_steps: int = DEFAULT_MAX_STEPS,
    ) -> None:
        if max_sessions < 1 or max_steps < 1:
            raise ValueError("max_sessions and max_steps must be at least 1")
        self.models = dict(models)
        self.catalogue = catalogue
        self.max_k, self.max_sessions, self.max_steps = int(max_k), int(max_sessions), int(max_steps)
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sessions)

    # ------------------------------------------------------------------ checks
    def check_models(self, models: str | Iterable[str] | None) -> list[str]:
        """Model names (a list, or a comma-separated string; none: every model)."""
        if isinstance(models, str):
            models = [m.strip() for m in models.split(",") if m.strip()]
        names = list(models or []) or list(self.models)
        for name in names:
            if name not in self.models:
                raise QueryError(f"Unknown model {name!r}; choose one of: {', '.join(self.models)}.")
        return names

    def check_picture(self, picture: Any) -> Item:
        """The catalogue item a step's picture names, or a QueryError."""
        if not isinstance(picture, str) or not picture.strip():
            raise QueryError("Pick the next picture first: click a result (or name a catalogue item by its id).")
        item = self.catalogue.by_id.get(picture.strip())
        if item is None:
            raise QueryError(f"There is no catalogue item {picture!r}; pick a picture from the results.")
        return item

    # ------------------------------------------------------------------ sessions
    def get(self, session_id: Any) -> SessionView | None:
        """The session ``session_id`` as it stands, or None when unknown or dropped."""
        with self._lock:
            session = self._sessions.get(session_id) if isinstance(session_id, str) else None
            if session is not None:
                self._sessions.move_to_end(session.id)
        if session is None:
            return None
        with session.lock:
            return session.view()

    def begin(
        self,
        picture: str | None,
        words: str,
        results: Mapping[str, Sequence[Hit]],
        *,
        policy: str | None = None,
        k: int = 0,
        picture_path: str | None = None,
    ) -> SessionView:
        """A new session whose step 1 is a search already answered (the demo's Compose search:
        its ``picture`` may be None for an uploaded picture, shown from ``picture_path``)."""
        policy = check_policy(policy)
        names = self.check_models(list(results))
        if picture is not None:
            picture_path = picture_path or self.check_picture(picture).path
        step = Step(picture, clean_text(words), {n: tuple(results[n]) for n in names}, policy,
                    int(k), picture_path)
        return self._add(policy, step).view()

    def refine(
        self,
        session_id: str | None,
        picture: str,
        words: str,
        *,
        models: str | Iterable[str] | None = None,
        k: Any = 8,
        policy: str | None = None,
    ) -> SessionView:
        """The next step of session ``session_id`` (None or empty: a new session, this its
        step 1): the catalogue item ``picture`` as the picture and ``words`` as the next
        request, answered by ``models`` (default: every model) under ``policy`` (default:
        the session's; given, it stays the session's from now on)."""
        names = self.check_models(models)
        k = check_k(k, self.max_k)
        item = self.check_picture(picture)
        words = clean_text(words)
        if not words:
            raise QueryError("Say what should change from this picture (for example: \"in red\").")
        if not session_id:
            policy = check_policy(policy)
            return self._add(policy, self._answer(None, item, words, names, k, policy)).view()
        session = self._open(session_id)
        with session.lock:
            if len(session.steps) >= self.max_steps:
                raise QueryError(f"This session already has {self.max_steps} steps, the most one "
                                 "keeps; go back to an earlier step or start a new search.")
            chosen = check_policy(policy) if policy else session.policy
            step = self._answer(session.view(), item, words, names, k, chosen)
            session.policy = chosen
            session.steps.append(step)
            return session.view()

    def back(self, session_id: str, step: Any) -> SessionView:
        """Session ``session_id`` back at ``step`` (1-based): the steps after it are dropped."""
        session = self._open(session_id)
        with session.lock:
            n = check_step(step, len(session.steps))
            del session.steps[n:]
            return session.view()

    def result(self, session_id: str, model: str, index: Any) -> Hit:
        """The result at ``index`` (0-based) among ``model``'s results of the current step:
        the picture a shopper clicked to refine from."""
        view = self.get(session_id)
        hits = view.current.results.get(model, ()) if view is not None else ()
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(hits):
            raise QueryError("That result is no longer shown; search again, then pick a result.")
        return hits[index]

    # ------------------------------------------------------------------ internals
    def _answer(
        self, view: SessionView | None, item: Item, words: str, names: list[str], k: int, policy: str
    ) -> Step:
        """The step after ``view`` (None: a first step): every model's results."""
        texts = [*(view.requests() if view else []), words]
        image = CatalogueImage(item.id, item.path)
        pictures = {item.id, *(view.pictures() if view else ())}
        results: dict[str, tuple[Hit, ...]] = {}
        for name in names:
            exclude = pictures | (view.shown(name) if view else set())
            results[name] = tuple(self.models[name].search_session(image, texts, k, policy=policy,
                                                                   exclude_ids=exclude))
        return Step(item.id, words, results, policy, k, item.path)

    def _open(self, session_id: Any) -> _Session:
        with self._lock:
            session = self._sessions.get(session_id) if isinstance(session_id, str) else None
            if session is None:
                raise QueryError(ENDED)
            self._sessions.move_to_end(session.id)
            return session

    def _add(self, policy: str, step: Step) -> _Session:
        session = _Session(secrets.token_urlsafe(16), policy, [step])
        with self._lock:
            self._sessions[session.id] = session
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
        return session
