"""What the demo does, without any UI: validate input, search every model, mark correct hits.

The Gradio layer (``app.py``) only turns these results into galleries and messages.
Everything here raises :class:`DemoInputError` with a sentence a shopper can read when the
input is bad, so the page shows a message instead of a traceback.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fashion_retrieval.data.records import Item, RetrievalDataset, Triplet

MAX_TEXT_CHARS = 500
DEFAULT_MAX_K = 50


class DemoInputError(ValueError):
    """Bad user input; the message is shown in the page as is."""


@dataclass(frozen=True)
class QueryTruth:
    """The known answer of a catalogue query: target ids and the target caption.

    A hit counts as correct when its id is a target, or (synthetic and Fashion200k rule)
    when its caption equals the target caption, so every view of the target product counts.
    """

    source_id: str
    targets: frozenset[str]
    target_caption: str = ""

    def is_hit(self, item_id: str, caption: str) -> bool:
        """Whether a retrieved item answers this query."""
        if item_id in self.targets:
            return True
        return bool(self.target_caption) and caption == self.target_caption


@dataclass
class SearchOutcome:
    """One model's answer to one query: rows for the UI/API plus what we know about them."""

    model: str
    rows: list[dict[str, Any]]
    truth: QueryTruth | None = None
    notes: list[str] = field(default_factory=list)

    def first_correct_rank(self) -> int | None:
        """Rank (1-based) of the first correct hit, or None (also when truth is unknown)."""
        for row in self.rows:
            if row.get("correct"):
                return int(row["rank"])
        return None


def _words(text: str) -> list[str]:
    """The words a word-level text encoder reads in ``text``."""
    from fashion_retrieval.models.vocab import tokenize

    return tokenize(text)


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


def _file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class DemoBackend:
    """The demo's models and catalogue, and the one search path every tab and the API use.

    ``models`` maps a display name to a :class:`~fashion_retrieval.retriever.Retriever`.
    ``dataset`` (optional) supplies the catalogue and its ground-truth triplets; without it
    the catalogue is the first model's gallery and no hits are marked.
    """

    def __init__(
        self,
        models: Mapping[str, Any],
        dataset: RetrievalDataset | None = None,
        *,
        max_k: int = DEFAULT_MAX_K,
    ) -> None:
        if not models:
            raise ValueError("the demo needs at least one model (a dict name -> Retriever)")
        self.models: dict[str, Any] = dict(models)
        self.dataset = dataset
        self.max_k = int(max_k)
        first = next(iter(self.models.values()))
        self.items: list[Item] = list(dataset.items if dataset is not None else first.items)
        self.by_id: dict[str, Item] = {it.id: it for it in self.items}
        self._truth: dict[tuple[str, str], list[Triplet]] = defaultdict(list)
        for t in dataset.triplets if dataset is not None else []:
            if t.target is not None and t.source in self.by_id:
                self._truth[(t.source, normalize_text(t.text))].append(t)
        self._size_index: dict[int, list[str]] | None = None
        self._digests: dict[str, str] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ catalogue
    @property
    def model_names(self) -> list[str]:
        """Model names in the order they were given."""
        return list(self.models)

    def catalogue_dirs(self) -> list[str]:
        """Folders holding the catalogue images (Gradio must be allowed to serve them)."""
        dirs = {os.path.dirname(os.path.abspath(it.path)) for it in self.items}
        # Keep the command short: collapse to common roots where possible.
        common = os.path.commonpath(sorted(dirs)) if dirs else None
        return [common] if common and common != os.sep else sorted(dirs)

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
        """The catalogue id of an image file with the same bytes, or None.

        Gradio copies files it serves, so ids are found by content: file size first (a stat
        per catalogue item, once), then a SHA-256 of the few items with that size.
        """
        if not path or not os.path.isfile(path):
            return None
        with self._lock:
            if self._size_index is None:
                index: dict[int, list[str]] = defaultdict(list)
                for it in self.items:
                    try:
                        index[os.path.getsize(it.path)].append(it.id)
                    except OSError:
                        continue
                self._size_index = index
            candidates = self._size_index.get(os.path.getsize(path), [])
        if not candidates:
            return None
        digest = _file_digest(path)
        for item_id in candidates:
            if item_id not in self._digests:
                self._digests[item_id] = _file_digest(self.by_id[item_id].path)
            if self._digests[item_id] == digest:
                return item_id
        return None

    def truth_for(self, source_id: str | None, text: str) -> QueryTruth | None:
        """The known targets of (catalogue image, change text), or None when unknown."""
        if source_id is None:
            return None
        triplets = self._truth.get((source_id, normalize_text(text)))
        if not triplets:
            return None
        targets = frozenset(t.target for t in triplets if t.target)
        return QueryTruth(source_id, targets, triplets[0].target_caption)

    # ------------------------------------------------------------------ validation
    def validate_k(self, k: Any) -> int:
        """``k`` as an int in 1..max_k, or a DemoInputError saying what is allowed."""
        try:
            value = float(k)
        except (TypeError, ValueError):
            raise DemoInputError(f"K must be a whole number from 1 to {self.max_k}, not {k!r}.") from None
        if value != value or value != int(value) or not 1 <= value <= self.max_k:
            raise DemoInputError(f"K must be a whole number from 1 to {self.max_k}, not {k!r}.")
        return int(value)

    def validate_model(self, name: Any) -> Any:
        """The Retriever called ``name``, or a DemoInputError listing the loaded ones."""
        if name not in self.models:
            raise DemoInputError(f"Unknown model {name!r}; choose one of: {', '.join(self.models)}.")
        return self.models[name]

    @staticmethod
    def clean_text(text: Any) -> str:
        """The query text, stripped; too long or non-string text is a DemoInputError."""
        if text is None:
            return ""
        if not isinstance(text, str):
            raise DemoInputError("The text must be a string.")
        text = " ".join(text.split())
        if len(text) > MAX_TEXT_CHARS:
            raise DemoInputError(f"The text is {len(text)} characters long; keep it under {MAX_TEXT_CHARS}.")
        return text

    @staticmethod
    def read_image(path: Any) -> Any:
        """Decode a query image file to RGB PIL (any mode, EXIF, size checks), or None.

        Every decoding problem (not an image, truncated, too many pixels) becomes a
        DemoInputError naming the file by its base name (server paths are not shown).
        """
        if path is None or path == "":
            return None
        from fashion_retrieval.data.images import load_image

        try:
            return load_image(path)
        except (ValueError, OSError) as err:
            name = os.path.basename(str(path))
            reason = str(err).replace(str(path), name).removeprefix(f"{name}: ")
            raise DemoInputError(f"Could not use the uploaded image {name!r}: {reason}") from None

    @staticmethod
    def unknown_words(retriever: Any, text: str) -> list[str] | None:
        """Words of ``text`` outside the model's word vocabulary; None if the model has none.

        Only word-level encoders (the LSTM) have a closed vocabulary; sub-word encoders
        (MiniLM, CLIP) read any word.
        """
        vocab = getattr(getattr(getattr(retriever, "model", None), "config", None), "vocab", None)
        if not vocab or not text:
            return None
        from fashion_retrieval.models.vocab import tokenize

        known = set(vocab)
        return [w for w in tokenize(text) if w not in known]

    # ------------------------------------------------------------------ search
    def search(
        self, model_name: str, image_path: str | None, text: Any, k: Any, *, allow_text: bool = True
    ) -> SearchOutcome:
        """Search one model; the query's own catalogue image is left out of its results."""
        retriever = self.validate_model(model_name)
        k = self.validate_k(k)
        text = self.clean_text(text) if allow_text else ""
        image = self.read_image(image_path)
        if image is None and not text:
            raise DemoInputError("Give a picture, a description, or both.")
        notes: list[str] = []
        unknown = self.unknown_words(retriever, text)
        # Emoji or symbols only tokenise to no word at all: nothing the model can read either.
        if unknown is not None and text and len(unknown) == len(_words(text)):
            if image is None:
                raise DemoInputError(
                    f"Model {model_name!r} knows none of the words in {text!r}; "
                    "try words from the catalogue (colours, patterns, garment types)."
                )
            notes.append("none of the words are known to this model; it relies on the picture.")
        elif unknown:
            notes.append(f"unknown words ignored: {', '.join(sorted(set(unknown)))}.")
        source_id = self.identify(image_path) if image is not None else None
        truth = self.truth_for(source_id, text) if text else None
        exclude = [source_id] if source_id else []  # the query image itself is no answer
        try:
            hits = retriever.search(image=image, text=text or None, k=k, exclude_ids=exclude)
        except ValueError as err:  # the Retriever's own input checks
            raise DemoInputError(f"{model_name}: {err}") from None
        rows = [
            {
                "id": hit.id,
                "score": round(float(hit.score), 4),
                "caption": hit.caption,
                "category": hit.category,
                "rank": hit.rank,
                "path": hit.path,
                "correct": truth.is_hit(hit.id, hit.caption) if truth else None,
            }
            for hit in hits
        ]
        return SearchOutcome(model_name, rows, truth, notes)


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
