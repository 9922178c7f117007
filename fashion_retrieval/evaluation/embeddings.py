"""Where evaluation gets its embeddings: an interface, and its implementation over a model.

Protocols only see an :class:`EmbeddingSource`, so they work on embeddings alone and are
tested against brute force with random ones. :class:`ModelEmbeddings` (it lives in the model
layer, ``fashion_retrieval.models.embedding``, where the Retriever also uses it) computes the
backbone features of every gallery image once, then runs the model's heads on them in batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch

from fashion_retrieval.data.records import Triplet
from fashion_retrieval.models.embedding import ModelEmbeddings, aligned_features

__all__ = ["EmbeddingSource", "ModelEmbeddings", "aligned_features", "model_name"]


class EmbeddingSource(Protocol):
    """The embeddings a protocol asks for; rows are L2-normalised ``(n, D)`` tensors."""

    def item_embeddings(self) -> torch.Tensor:
        """Target (gallery) embeddings of every item, ``(N, D)`` in item order."""

    def query_embeddings(self, triplets: Sequence[Triplet]) -> torch.Tensor:
        """Composed query embeddings (source image + text), ``(Q, D)``."""

    def text_embeddings(self, texts: Sequence[str]) -> torch.Tensor:
        """Text-only query embeddings, ``(T, D)``."""

    def image_query_embeddings(self) -> torch.Tensor:
        """Image-only query embeddings of every item, ``(N, D)`` in item order."""


def model_name(model: Any) -> str:
    """A readable name for the JSON: ``model.name``, else built from its config."""
    name = getattr(model, "name", None)
    if isinstance(name, str) and name:
        return name
    config = getattr(model, "config", None)
    parts = [getattr(config, key, None) for key in ("compositor", "image_encoder", "text_encoder")]
    if all(isinstance(p, str) for p in parts):
        return "{}({}+{})".format(*parts)
    return type(model).__name__
