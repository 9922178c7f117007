"""The protocol registry, the result shape every protocol returns, and
:func:`evaluate_embeddings`, which runs a registered protocol by name.

A protocol is ``fn(source: EmbeddingSource, dataset: RetrievalDataset, *, chunk) -> dict``
with the keys ``recall`` (the headline numbers, percent), ``categories`` (per-category
numbers, possibly empty), ``queries`` (how many queries were ranked) and ``skipped``
(reason -> count of queries that could not be ranked). The protocol modules register
themselves here; importing :mod:`fashion_retrieval.evaluation` imports them all.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import torch

from fashion_retrieval.data.records import RetrievalDataset
from fashion_retrieval.evaluation.embeddings import EmbeddingSource
from fashion_retrieval.registry import Registry

EVAL_PROTOCOLS: Registry[Callable[..., dict[str, Any]]] = Registry("evaluation protocol")


def protocol_result(
    recall: dict[str, float],
    categories: dict[str, dict[str, float]] | None,
    queries: int,
    skipped: Counter,
    **extra: Any,
) -> dict[str, Any]:
    """The dict a protocol returns (rounded for readable JSON)."""
    out = {
        "recall": {k: round(v, 4) for k, v in recall.items()},
        "categories": {
            c: {k: round(v, 4) for k, v in m.items()} for c, m in (categories or {}).items()
        },
        "queries": int(queries),
        "skipped": dict(sorted(skipped.items())),
    }
    out.update(extra)
    return out


def mean_over(per_category: dict[str, dict[str, float]], keys: Sequence[str]) -> dict[str, float]:
    """The unweighted mean over categories of each metric in ``keys``."""
    if not per_category:
        raise ValueError("no category had any query to evaluate")
    return {k: sum(m[k] for m in per_category.values()) / len(per_category) for k in keys}


def index_rows(ids: Sequence[str]) -> dict[str, int]:
    """``{id: row}`` for a gallery."""
    return {i: r for r, i in enumerate(ids)}


def as_long(values: Sequence[int]) -> torch.Tensor:
    """A ``(n,)`` long tensor (also for an empty list)."""
    return torch.tensor(list(values), dtype=torch.long)


def evaluate_embeddings(
    source: EmbeddingSource,
    dataset: RetrievalDataset,
    *,
    protocol: str | None = None,
    model: str = "",
    chunk: int = 1024,
) -> dict[str, Any]:
    """Run ``protocol`` (default: the dataset's own) on embeddings from ``source``.

    The result is the evaluation JSON object (``training/evaluate.py`` writes it, the
    dashboard reads it)::

        {"dataset", "split", "protocol", "model", "recall": {...}, "categories": {...},
         "queries": n, "gallery": n, "skipped": {reason: count}, ...the protocol's extra keys}

    with recall in percent. ``skipped`` merges what the data loader skipped (``data:``
    reasons, e.g. missing images) with the queries the protocol could not rank.
    """
    name = protocol or dataset.protocol
    run = EVAL_PROTOCOLS.get(name)  # unknown names list the valid ones
    if not dataset.items:
        raise ValueError(f"{dataset.name} {dataset.split!r} has no gallery items to rank")
    result = run(source, dataset, chunk=chunk)
    skipped = Counter({f"data:{k}": v for k, v in dataset.skipped.items()})
    skipped.update(result.pop("skipped", {}))
    return {
        "dataset": dataset.name,
        "split": dataset.split,
        "protocol": name,
        "model": model,
        **result,
        "gallery": len(dataset.items),  # images ranked (per-category protocols: all categories)
        "skipped": dict(sorted(skipped.items())),
    }
