"""Where evaluation gets its embeddings: an interface, and its implementation over a model.

Protocols only see an :class:`EmbeddingSource`, so they work on embeddings alone and are
tested against brute force with random ones. :class:`ModelEmbeddings` computes the backbone
features of every gallery image once, then runs the model's heads on them in batches.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import torch

from fashion_retrieval.data.records import Item, Triplet


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


def _aligned_features(
    features: torch.Tensor | Mapping[str, Any], items: Sequence[Item]
) -> torch.Tensor:
    """Precomputed backbone features as an ``(N, Dimg)`` tensor aligned with ``items``."""
    if isinstance(features, Mapping):
        missing = [it.id for it in items if it.id not in features]
        if missing:
            raise ValueError(
                f"precomputed features miss {len(missing)} gallery items, e.g. {missing[:3]}"
            )
        return torch.stack([torch.as_tensor(features[it.id]) for it in items]).float()
    feats = torch.as_tensor(features).float()
    if feats.ndim != 2 or feats.shape[0] != len(items):
        raise ValueError(
            f"precomputed features must be ({len(items)}, Dimg) aligned with the items, "
            f"got shape {tuple(feats.shape)}"
        )
    return feats


class ModelEmbeddings:
    """An :class:`EmbeddingSource` over a ``RetrievalModel`` and a list of gallery items.

    Backbone features (``model.image_features``) of every item are computed once (or taken
    from ``features``: ``{item_id: row}`` or an ``(N, Dimg)`` tensor aligned with ``items``)
    and reused for the target embeddings and for the source images of the queries.

    Everything runs on ``device`` (the model is moved there; default: where the model is)
    under ``mixed_precision`` autocast ("no", "fp16", "bf16"); ``num_workers`` DataLoader
    workers decode the gallery. Embeddings come back float32 on the CPU.
    """

    def __init__(
        self,
        model: Any,
        items: Sequence[Item],
        *,
        batch_size: int = 64,
        num_workers: int = 0,
        features: torch.Tensor | Mapping[str, Any] | None = None,
        device: str | torch.device | None = None,
        mixed_precision: str = "no",
    ) -> None:
        from fashion_retrieval.devices import check_precision, module_device

        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        check_precision(mixed_precision)
        self.model = model
        if device is None:
            self.device = module_device(model)
        else:
            self.device = torch.device(device)
            model.to(self.device)
        self.mixed_precision = mixed_precision
        self.items = list(items)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self._row = {it.id: i for i, it in enumerate(self.items)}
        self._features = None if features is None else _aligned_features(features, self.items)
        self._targets: torch.Tensor | None = None

    def backbone_features(self) -> torch.Tensor:
        """``(N, Dimg)`` backbone features of every item, computed on first use."""
        if self._features is None:
            from fashion_retrieval.models.embedding import embed_images

            paths = [it.path for it in self.items]
            self._features = embed_images(
                self.model,
                paths,
                batch_size=self.batch_size,
                num_workers=self.num_workers,
                target=False,
                device=self.device,
                mixed_precision=self.mixed_precision,
            ).float()
        return self._features

    def _batched(self, fn: Any, n: int) -> torch.Tensor:
        """Concatenate ``fn(start, stop)`` over batches, on CPU, in inference mode and autocast."""
        from fashion_retrieval.devices import autocast

        was_training = self.model.training
        self.model.eval()
        out = []
        try:
            with torch.inference_mode(), autocast(self.device, self.mixed_precision):
                for start in range(0, n, self.batch_size):
                    out.append(fn(start, min(start + self.batch_size, n)).float().cpu())
        finally:
            self.model.train(was_training)
        if not out:
            raise ValueError("nothing to embed")
        return torch.cat(out)

    def _feats(self, rows: Sequence[int] | slice) -> torch.Tensor:
        """Backbone features of the given rows, on the device."""
        from fashion_retrieval.devices import to_device

        return to_device(self.backbone_features()[rows], self.device)

    def item_embeddings(self) -> torch.Tensor:
        """``(N, D)`` target embeddings of every item (computed once)."""
        if self._targets is None:
            self._targets = self._batched(
                lambda a, b: self.model.encode_target(image_features=self._feats(slice(a, b))),
                len(self.items),
            )
        return self._targets

    def query_embeddings(self, triplets: Sequence[Triplet]) -> torch.Tensor:
        """``(Q, D)`` composed queries; every source must be one of the items."""
        missing = [t.source for t in triplets if t.source not in self._row]
        if missing:
            raise ValueError(f"query sources not among the gallery items: {missing[:3]}")
        rows = [self._row[t.source] for t in triplets]
        texts = [t.text for t in triplets]
        return self._batched(
            lambda a, b: self.model.encode_query(
                image_features=self._feats(rows[a:b]), texts=texts[a:b]
            ),
            len(triplets),
        )

    def text_embeddings(self, texts: Sequence[str]) -> torch.Tensor:
        """``(T, D)`` text-only queries."""
        texts = list(texts)
        return self._batched(lambda a, b: self.model.encode_query(texts=texts[a:b]), len(texts))

    def image_query_embeddings(self) -> torch.Tensor:
        """``(N, D)`` image-only queries of every item."""
        return self._batched(
            lambda a, b: self.model.encode_query(image_features=self._feats(slice(a, b))),
            len(self.items),
        )


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
