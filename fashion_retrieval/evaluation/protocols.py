"""``evaluate(model, dataset)``: embeddings computed once, then the dataset's protocol.

Protocols (``EVAL_PROTOCOLS``): ``fashion200k``, ``fashioniq``, ``synthetic``,
``crossmodal``, ``image_to_image``. The result has DESIGN.md's JSON shape::

    {"dataset", "split", "protocol", "model", "recall": {...}, "categories": {...},
     "queries": n, "skipped": {reason: count}}

with recall in percent. ``skipped`` merges what the data loader skipped (missing images...)
with the queries the protocol could not rank.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

import torch

from fashion_retrieval.data.records import RetrievalDataset
from fashion_retrieval.evaluation import composed, crossmodal, image_to_image  # noqa: F401  (register)
from fashion_retrieval.evaluation.base import EVAL_PROTOCOLS
from fashion_retrieval.evaluation.embeddings import EmbeddingSource, ModelEmbeddings, model_name


def evaluate_embeddings(
    source: EmbeddingSource,
    dataset: RetrievalDataset,
    *,
    protocol: str | None = None,
    model: str = "",
    chunk: int = 1024,
) -> dict[str, Any]:
    """Run ``protocol`` (default: the dataset's own) on embeddings from ``source``."""
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
        "skipped": dict(sorted(skipped.items())),
    }


def evaluate(
    model: Any,
    dataset: RetrievalDataset,
    *,
    protocol: str | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    features: torch.Tensor | Mapping[str, Any] | None = None,
    chunk: int = 1024,
    device: str | torch.device | None = None,
    mixed_precision: str = "no",
) -> dict[str, Any]:
    """Evaluate a ``RetrievalModel`` on ``dataset`` under ``protocol`` (default: its own).

    Backbone features of every gallery image are computed once (or taken from
    ``features``: ``{item_id: row}`` or an ``(N, Dimg)`` tensor aligned with
    ``dataset.items``); the heads then run on them in batches of ``batch_size``, on
    ``device`` (default: where the model is) under ``mixed_precision`` autocast.
    """
    source = ModelEmbeddings(
        model, dataset.items, batch_size=batch_size, num_workers=num_workers, features=features,
        device=device, mixed_precision=mixed_precision,
    )
    return evaluate_embeddings(
        source, dataset, protocol=protocol, model=model_name(model), chunk=chunk
    )
