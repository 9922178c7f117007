"""The query browser: every model's top-K for one query, with correct targets marked."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import pandas as pd

from ..data.records import Triplet
from ..evaluation.hits import is_correct as hit_is_correct
from ..search.query import NO_QUERY, QueryError, check_k, clean_text

HIT_COLUMNS = ["rank", "id", "caption", "score", "category", "path", "correct"]


class Searcher(Protocol):
    """What the browser needs of a Retriever."""

    def search(self, image: Any = None, text: str | None = None, k: int = 10) -> list[Any]:
        """Top-k hits for an image, a text, or both."""
        ...


def is_correct(hit_id: str, hit_caption: str, triplet: Triplet | None, protocol: str) -> bool:
    """Whether a hit answers ``triplet`` under ``protocol``'s hit rule (``evaluation.hits``)."""
    if triplet is None or triplet.target is None:
        return False
    return hit_is_correct(protocol, hit_id, hit_caption, {triplet.target}, triplet.target_caption)


def hits_frame(
    hits: list[Any],
    k: int,
    triplet: Triplet | None = None,
    protocol: str = "",
    exclude: str | None = None,
) -> pd.DataFrame:
    """A table of at most ``k`` hits, without ``exclude`` (the query image), ranks from 1."""
    rows = []
    for hit in hits:
        if exclude is not None and hit.id == exclude:
            continue
        rows.append(
            {
                "rank": len(rows) + 1,
                "id": hit.id,
                "caption": hit.caption,
                "score": float(hit.score),
                "category": hit.category,
                "path": str(hit.path) if getattr(hit, "path", None) is not None else "",
                "correct": is_correct(hit.id, hit.caption, triplet, protocol),
            }
        )
        if len(rows) == k:
            break
    return pd.DataFrame(rows, columns=HIT_COLUMNS)


def compare_models(
    searchers: Mapping[str, Searcher],
    image: Any = None,
    text: str | None = None,
    k: int = 5,
    triplet: Triplet | None = None,
    protocol: str = "",
    exclude: str | None = None,
) -> dict[str, pd.DataFrame]:
    """Ask every model the same query; one hits table per model name.

    ``exclude`` is the id of the query's own catalogue image, dropped from the rankings as
    the evaluation protocols do (one extra hit is asked for to keep ``k`` results). Bad
    input is a QueryError under the search layer's rules (``search.query``).
    """
    k = check_k(k)
    if image is None and not clean_text(text):
        raise QueryError(NO_QUERY)
    extra = 1 if exclude is not None else 0
    return {
        name: hits_frame(
            searcher.search(image=image, text=text or None, k=k + extra),
            k,
            triplet=triplet,
            protocol=protocol,
            exclude=exclude,
        )
        for name, searcher in searchers.items()
    }


def query_options(triplets: list[Triplet], limit: int = 200) -> list[str]:
    """Readable labels for the first ``limit`` test queries, in order."""
    return [f"{i}: [{t.category}] {t.source} + “{t.text}”" for i, t in enumerate(triplets[:limit])]
