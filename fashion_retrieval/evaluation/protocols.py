"""``evaluate(model, dataset)``: embeddings computed once, then the dataset's protocol.

Protocols (``EVAL_PROTOCOLS``): ``fashion200k``, ``fashioniq``, ``synthetic``,
``crossmodal``, ``image_to_image`` (``one_gallery`` too). The result is the evaluation JSON
object that :func:`fashion_retrieval.evaluation.base.evaluate_embeddings` describes, the one
place its keys are fixed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from fashion_retrieval.data.records import RetrievalDataset
from fashion_retrieval.evaluation import composed, crossmodal, image_to_image  # noqa: F401  (register)
from fashion_retrieval.evaluation.base import evaluate_embeddings
from fashion_retrieval.evaluation.embeddings import ModelEmbeddings, model_name

__all__ = ["evaluate", "evaluate_embeddings"]


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
