"""What the demo does, without any UI: prepare a query once, search the chosen models, mark
correct hits.

The Gradio layer (``app.py``) only turns these results into galleries and messages. Bad
input raises :class:`~fashion_retrieval.search.query.QueryError` with a sentence a shopper
can read, so the page shows a message instead of a traceback.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fashion_retrieval.data.records import Item, RetrievalDataset, Triplet
from fashion_retrieval.evaluation.hits import is_correct
from fashion_retrieval.search.query import Query, QueryError, check_k, clean_text
from fashion_retrieval.search.retriever import Hit
from fashion_retrieval.serving.catalogue import Catalogue
from fashion_retrieval.serving.query import DEFAULT_MAX_K, QueryPreparer
from fashion_retrieval.serving.refine import RefinementSessions, SessionView


@dataclass(frozen=True)
class QueryTruth:
    """The known answer of a catalogue query: target ids and caption, under ``protocol``'s
    hit rule (``fashion_retrieval.evaluation.hits``)."""

    source_id: str
    targets: frozenset[str]
    target_caption: str = ""
    protocol: str | None = None

    def is_hit(self, item_id: str, caption: str) -> bool:
        """Whether a retrieved item answers this query."""
        return is_correct(self.protocol, item_id, caption, self.targets, self.target_caption)


@dataclass
class SearchOutcome:
    """One model's answer to one query: rows for the UI/API plus what we know about them."""

    model: str
    rows: list[dict[str, Any]]
    truth: QueryTruth | None = None
    notes: list[str] = field(default_factory=list)
    k: int = 0
    hits: tuple[Hit, ...] = ()

    def first_correct_rank(self) -> int | None:
        """Rank (1-based) of the first correct hit, or None (also when truth is unknown)."""
        for row in self.rows:
            if row.get("correct"):
                return int(row["rank"])
        return None



@dataclass
class SessionOutcome:
    """A refinement session at its current step: the session and each model's outcome."""

    session: SessionView
    outcomes: list[SearchOutcome]

    def strip(self) -> list[tuple[str | None, str]]:
        """The steps as (picture file or None, caption), oldest first."""
        return [(s.picture_path, f"{i}. {s.words or '(the picture alone)'}")
                for i, s in enumerate(self.session.steps, 1)]

    def to_json(self) -> dict[str, Any]:
        """The API's JSON: the session (id, step, policy, steps) and each model's hits."""
        return {**self.session.to_dict(), "results": {o.model: api_rows(o) for o in self.outcomes}}

def normalize_text(text: str) -> str:
    """Lower-case, collapse whitespace and drop trailing punctuation (for truth lookup)."""
    return re.sub(r"\s+", " ", text.strip().lower()).strip(" .!?")


def _round_robin(groups: Mapping[str, list[Any]], n: int) -> list[Any]:
    """Up to ``n`` elements taken one per group in turn (groups in sorted order)."""
    out: list[Any] = []
    depth = max((len(v) for v in groups.values()), default=0)
    for j in range(depth):
        for key in sorted(groups):
            if j < len(groups[key]) and len(out) < n:
                out.append(groups[key][j])
    return out


class DemoBackend:
    """The demo's models and catalogue, and the one search path every tab and the API use.

    ``models`` maps a display name to a :class:`~fashion_retrieval.search.retriever.Retriever`.
    ``catalogue`` (a :class:`Catalogue`, or a data set split) supplies the pictures and,
    when it has triplets, the ground truth; without it the catalogue is the first model's
    gallery and no hits are marked.
    """

    def __init__(
        self,
        models: Mapping[str, Any],
        catalogue: Catalogue | RetrievalDataset | None = None,
        *,
        max_k: int = DEFAULT_MAX_K,
    ) -> None:
        if not models:
            raise ValueError("the demo needs at least one model (a dict name -> Retriever)")
        self.models: dict[str, Any] = dict(models)
        if isinstance(catalogue, RetrievalDataset):
            catalogue = Catalogue.from_dataset(catalogue)
        if catalogue is None:
            first = next(iter(self.models.values()))
            catalogue = Catalogue(first.items, "gallery", "the first model's gallery")
        self.catalogue = catalogue
        self.max_k = int(max_k)
        self.items: list[Item] = list(catalogue.items)
        self.by_id: dict[str, Item] = catalogue.by_id
        self.preparer = QueryPreparer(catalogue, max_k=self.max_k)
        self.sessions = RefinementSessions(self.models, catalogue, max_k=self.max_k)
        self._truth: dict[tuple[str, str], list[Triplet]] = defaultdict(list)
        for t in catalogue.dataset.triplets if catalogue.dataset is not None else []:
            if t.target is not None and t.source in self.by_id:
                self._truth[(t.source, normalize_text(t.text))].append(t)

    # ------------------------------------------------------------------ catalogue
    @property
    def model_names(self) -> list[str]:
        """Model names in the order they were given."""
        return list(self.models)

    def catalogue_dirs(self) -> list[str]:
        """Folders holding the catalogue images (Gradio must be allowed to serve them)."""
        return self.catalogue.folders()

    def example_triplets(self, n: int = 8) -> list[Triplet]:
        """Up to ``n`` ground-truth triplets for clickable examples, spread over categories."""
        by_cat: dict[str, list[Triplet]] = defaultdict(list)
        for triplets in self._truth.values():
            if triplets[0].target in self.by_id:
                by_cat[triplets[0].category].append(triplets[0])
        return _round_robin(by_cat, n)

    def showcase_items(self, n: int = 24) -> list[Item]:
        """Catalogue images for the pick-an-image gallery: example sources first, then a mix."""
        sources = [self.by_id[t.source] for t in self.example_triplets(n)]
        seen = {it.id for it in sources}
        by_cat: dict[str, list[Item]] = defaultdict(list)
        for it in self.items:
            if it.id not in seen:
                by_cat[it.category].append(it)
        return sources + _round_robin(by_cat, n - len(sources))

    def identify(self, path: str | None) -> str | None:
        """The catalogue id of an image file with the same bytes, or None."""
        return self.preparer.identify(path)

    def truth_for(self, source_id: str | None, text: str | None) -> QueryTruth | None:
        """The known targets of (catalogue image, change text), or None when unknown."""
        if source_id is None or not text:
            return None
        triplets = self._truth.get((source_id, normalize_text(text)))
        if not triplets:
            return None
        targets = frozenset(t.target for t in triplets if t.target)
        return QueryTruth(source_id, targets, triplets[0].target_caption, self.catalogue.protocol)

    # ------------------------------------------------------------------ validation
    def validate_k(self, k: Any) -> int:
        """``k`` as an int in 1..max_k, or a QueryError saying what is allowed."""
        return check_k(k, self.max_k)

    def validate_model(self, name: Any) -> Any:
        """The Retriever called ``name``, or a QueryError listing the loaded ones."""
        if name not in self.models:
            raise QueryError(f"Unknown model {name!r}; choose one of: {', '.join(self.models)}.")
        return self.models[name]

    @staticmethod
    def clean_text(text: Any) -> str:
        """The query text, white space collapsed; too long or non-string text is a QueryError."""
        return clean_text(text)

    # ------------------------------------------------------------------ search
    def word_notes(self, model_name: str, text: str, *, has_picture: bool = True) -> list[str]:
        """Notes on words ``model_name`` cannot read (its text encoder says which); a
        QueryError when it reads none of them and there is no picture to rely on."""
        unknown = self.validate_model(model_name).unknown_words(text) if text else []
        if unknown is None:
            if not has_picture:
                raise QueryError(
                    f"Model {model_name!r} knows none of the words in {text!r}; "
                    "try words from the catalogue (colours, patterns, garment types)."
                )
            return ["none of the words are known to this model; it relies on the picture."]
        return [f"unknown words ignored: {', '.join(sorted(set(unknown)))}."] if unknown else []

    def notes(self, model_names: Sequence[str], query: Query) -> dict[str, list[str]]:
        """Each model's notes on ``query``, taken before any model searches: its unknown words
        (:meth:`word_notes`) and a ``k`` above its gallery's size (the Retriever clips it)."""
        notes = {}
        for name in model_names:
            notes[name] = self.word_notes(name, query.text or "", has_picture=query.image is not None)
            if query.k > len(self.models[name]):
                notes[name].append(f"K is {query.k}, but the gallery holds only {len(self.models[name])} items.")
        return notes

    def outcome(
        self, model_name: str, hits: Sequence[Hit], truth: QueryTruth | None, notes: list[str], k: int
    ) -> SearchOutcome:
        """One model's hits as the UI and the API show them (correct hits marked)."""
        rows = []
        for hit in hits:
            row = hit.to_dict()
            row["score"] = round(float(hit.score), 4)
            row["correct"] = truth.is_hit(hit.id, hit.caption) if truth else None
            rows.append(row)
        return SearchOutcome(model_name, rows, truth, notes, k, tuple(hits))

    def search(
        self, model_name: str, image_path: Any, text: Any, k: Any, *, allow_text: bool = True
    ) -> SearchOutcome:
        """Search one model; the query's own catalogue image is left out of its results."""
        self.validate_model(model_name)
        query = self.preparer.prepare(image_path, text, k, allow_text=allow_text)
        notes = self.notes([model_name], query)[model_name]
        hits = self.models[model_name].search_queries([query])[0]
        return self.outcome(model_name, hits, self.truth_for(query.source_id, query.text), notes, query.k)

    # ------------------------------------------------------------------ refinement
    def compose(
        self, model_names: Sequence[str], image_path: Any, text: Any, k: Any, *, policy: Any = None
    ) -> SessionOutcome:
        """The Compose search: the chosen models answer one query (prepared once), and it
        becomes step 1 of a new refinement session (``serving.refine``)."""
        if not model_names:
            raise QueryError("Choose at least one model.")
        for name in model_names:
            self.validate_model(name)
        query = self.preparer.prepare(image_path, text, k)
        notes, truth = self.notes(model_names, query), self.truth_for(query.source_id, query.text)
        outcomes = [self.outcome(name, self.models[name].search_queries([query])[0], truth, notes[name], query.k)
                    for name in model_names]
        shown_as = self.by_id[query.source_id].path if query.source_id else image_path or None
        view = self.sessions.begin(query.source_id, query.text or "", {o.model: o.hits for o in outcomes},
                                   policy=policy, k=query.k, picture_path=shown_as)
        return SessionOutcome(view, outcomes)

    def refine(
        self, session_id: Any, picture: Any, words: Any, model_names: Any, k: Any, *, policy: Any = None
    ) -> SessionOutcome:
        """The next step of a session (none: a new one) from a catalogue picture and words."""
        return self.session_outcome(
            self.sessions.refine(session_id, picture, words, models=model_names, k=k, policy=policy))

    def back(self, session_id: Any, step: Any) -> SessionOutcome:
        """The session back at ``step`` (1-based), with that step's results."""
        return self.session_outcome(self.sessions.back(session_id, step))

    def restore(self, session_id: Any) -> SessionOutcome | None:
        """The session as it stands (a reloaded page), or None when it is unknown or dropped."""
        view = self.sessions.get(session_id)
        return self.session_outcome(view) if view is not None else None

    def session_outcome(self, view: SessionView) -> SessionOutcome:
        """The current step of ``view`` as each model's outcome (known targets marked)."""
        step = view.current
        truth = self.truth_for(step.picture, step.words) if step.words else None
        outcomes = [
            self.outcome(name, hits, truth, self.word_notes(name, step.words), step.k)
            for name, hits in step.results.items() if name in self.models
        ]
        return SessionOutcome(view, outcomes)


def api_rows(outcome: SearchOutcome) -> list[dict[str, Any]]:
    """The API's JSON: hits as {id, score, caption, category, rank} (plus correct if known)."""
    keys = ("id", "score", "caption", "category", "rank")
    out = []
    for row in outcome.rows:
        item = {key: row[key] for key in keys}
        if row.get("correct") is not None:
            item["correct"] = row["correct"]
        out.append(item)
    return out


def gallery_value(outcome: SearchOutcome) -> list[tuple[str, str]]:
    """(image path, caption) pairs for a gr.Gallery; correct hits start with a check mark."""
    value = []
    for row in outcome.rows:
        mark = "✓ " if row.get("correct") else ""
        value.append((row["path"], f"{mark}#{row['rank']} · {row['score']:.3f} · {row['caption'] or row['id']}"))
    return value


def summary_markdown(outcomes: Sequence[SearchOutcome], k: int) -> str:
    """A short Markdown status: per model, where the known target landed, plus notes."""
    lines: list[str] = []
    truth = next((o.truth for o in outcomes if o.truth is not None), None)
    if truth is not None:
        lines.append(f"**Known target** for this catalogue query: {truth.target_caption or ', '.join(sorted(truth.targets))}")
        for o in outcomes:
            rank = o.first_correct_rank()
            found = f"✓ first correct hit at rank {rank}" if rank else f"✗ not in the top {k}"
            lines.append(f"- **{o.model}**: {found} (Recall@{k} = {1 if rank else 0})")
    elif outcomes:
        lines.append(f"Top {k} from {', '.join(o.model for o in outcomes)}.")
    by_note: dict[str, list[str]] = defaultdict(list)  # one line per note, naming its models
    for o in outcomes:
        for note in o.notes:
            by_note[note].append(o.model)
    lines.extend(f"- ⚠ {', '.join(names)}: {note}" for note, names in by_note.items())
    return "\n".join(lines)


POLICY_NOTES = {
    "history": "the earlier requests still count",
    "last_turn": "only the newest request counts",
}


def session_markdown(result: SessionOutcome) -> str:
    """The status of a session step: the requests so far and how they are read, then
    :func:`summary_markdown` of its results."""
    view = result.session
    requests = " → ".join(f"“{w}”" for w in view.requests()) or "none yet"
    how = POLICY_NOTES.get(view.current.policy, view.current.policy)
    head = (f"**Step {view.step}** of this session. Requests so far: {requests} "
            f"(`{view.current.policy}`: {how}). Click any result to refine from it; "
            "each model leaves out what it already showed.")
    k = result.outcomes[0].k if result.outcomes else 0
    return head + "\n\n" + summary_markdown(result.outcomes, k)
