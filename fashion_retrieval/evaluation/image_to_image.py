"""Image-to-image protocol: precision@K and mAP, at product level and category level.

Every item queries the gallery with its image alone (image-only ``encode_query``, as the
Retriever does) against ``encode_target`` embeddings, its own image excluded. Positives:
items of the same product (the ``product`` attribute where the catalogue records it,
else the same caption); the category-level variant counts every item of the same
category. Queries that have no positive in the gallery are skipped and counted.

Optional post-processing fitted on the gallery (PCA or PCA whitening, see
:mod:`fashion_retrieval.search.whitening`) is applied to queries and gallery alike; the numbers
before it are reported beside those after it. :func:`evaluate_image_to_image` runs it all
on a model, on its trained embeddings or on its raw backbone features.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from fashion_retrieval.data.records import Item, RetrievalDataset, Triplet
from fashion_retrieval.evaluation.base import (
    EVAL_PROTOCOLS,
    as_long,
    evaluate_embeddings,
    protocol_result,
)
from fashion_retrieval.evaluation.embeddings import EmbeddingSource, ModelEmbeddings, model_name
from fashion_retrieval.evaluation.ranking import (
    average_precision,
    encode_labels,
    hit_matrix_by_label,
    precision_at_k,
    topk_chunked,
)
from fashion_retrieval.search.whitening import POSTPROCESS_MODES, PCAWhitening, fit_postprocess

IMAGE_KS = (1, 5, 10)
PRODUCT_KEYS = ("product", "product_id")


def product_label(item: Item) -> str:
    """The item's product: a ``product`` attribute if recorded, else its caption, else its id."""
    for key in PRODUCT_KEYS:
        if item.attributes.get(key):
            return f"product:{item.attributes[key]}"
    return f"caption:{item.caption}" if item.caption else f"id:{item.id}"


def _summary(
    hits: torch.Tensor, ap: torch.Tensor, mask: torch.Tensor, ks: Sequence[int]
) -> dict[str, float]:
    """Precision@k and mAP (percent) over the queries selected by ``mask``."""
    out = precision_at_k(hits[mask], ks)
    out["mAP"] = 100.0 * ap[mask].mean().item()
    return out


def _rank(
    queries: torch.Tensor,
    gallery: torch.Tensor,
    labels: Sequence[str],
    ks: Sequence[int],
    chunk: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hits ``(N, K)``, average precision ``(N,)`` and has-a-positive mask ``(N,)``."""
    (codes,) = encode_labels(labels)
    self_rows = torch.arange(len(codes))
    has_positive = torch.bincount(codes)[codes] > 1  # (N,)
    _, idx = topk_chunked(queries, gallery, max(ks), exclude=self_rows, chunk=chunk)
    hits = hit_matrix_by_label(idx, codes, codes)
    ap = average_precision(queries, gallery, codes, codes, exclude=self_rows, chunk=min(chunk, 256))
    return hits, ap, has_positive


def _metrics(
    source: EmbeddingSource, items: Sequence[Item], ks: Sequence[int], chunk: int
) -> dict[str, Any]:
    """Product-level, per-category and category-level numbers for one embedding source."""
    queries = source.image_query_embeddings()  # (N, D)
    gallery = source.item_embeddings()  # (N, D)
    hits, ap, has_pos = _rank(queries, gallery, [product_label(it) for it in items], ks, chunk)
    if not has_pos.any():
        raise ValueError("no two gallery items share a product or caption: nothing to find")
    categories = {}
    for cat in sorted({it.category for it in items}):
        in_cat = as_long([it.category == cat for it in items]).bool() & has_pos
        if in_cat.any():
            categories[cat] = _summary(hits, ap, in_cat, ks)
    c_hits, c_ap, c_pos = _rank(queries, gallery, [it.category for it in items], ks, chunk)
    return {
        "recall": _summary(hits, ap, has_pos, ks),
        "categories": categories,
        "category_level": _summary(c_hits, c_ap, c_pos, ks) if c_pos.any() else {},
        "has_positive": has_pos,
    }


def _rounded(metrics: dict[str, float]) -> dict[str, float]:
    """Metrics rounded for readable JSON."""
    return {k: round(v, 4) for k, v in metrics.items()}


@EVAL_PROTOCOLS.register("image_to_image")
def image_to_image_protocol(
    source: EmbeddingSource,
    dataset: RetrievalDataset,
    *,
    chunk: int = 1024,
    postprocess: str = "none",
    dim: int | None = None,
    shrinkage: float = 0.0,
) -> dict[str, Any]:
    """P@1/5/10 and mAP by product ("recall"), by category ("category_level"), per category.

    ``postprocess`` ("none", "pca", "whiten"; ``dim``, ``shrinkage``) fits that
    post-processing on the gallery embeddings first (see :class:`PostprocessedEmbeddings`,
    which may also be passed as ``source`` directly). Post-processed numbers are the
    headline; the raw ones are reported beside them under ``postprocess.raw``.
    """
    items = dataset.items
    ks = tuple(k for k in IMAGE_KS if k < len(items))
    if not ks:
        raise ValueError("image-to-image evaluation needs at least two gallery items")
    if postprocess != "none":
        source = PostprocessedEmbeddings(source, postprocess, dim=dim, shrinkage=shrinkage)
    main = _metrics(source, items, ks, chunk)
    has_pos = main["has_positive"]
    skipped = Counter()
    if not has_pos.all():
        skipped["no_same_product"] = int((~has_pos).sum())
    result = protocol_result(main["recall"], main["categories"], int(has_pos.sum()), skipped)
    result["category_level"] = _rounded(main["category_level"])
    if isinstance(source, PostprocessedEmbeddings):
        raw = _metrics(source.raw, items, ks, chunk)
        result["postprocess"] = {
            **source.postprocessor.describe(),
            "raw": {
                "recall": _rounded(raw["recall"]),
                "category_level": _rounded(raw["category_level"]),
            },
        }
    return result


class PostprocessedEmbeddings:
    """An :class:`EmbeddingSource` whose embeddings pass through a gallery-fitted post-processor.

    The post-processor (``mode`` "none", "pca" or "whiten", see
    :mod:`fashion_retrieval.search.whitening`) is fitted on ``raw.item_embeddings()`` on first
    use, or given ready-made as ``postprocessor``; every embedding the source hands out
    (targets, image queries, composed and text queries) is transformed by it.
    """

    def __init__(
        self,
        raw: EmbeddingSource,
        mode: str = "whiten",
        *,
        dim: int | None = None,
        shrinkage: float = 0.0,
        postprocessor: PCAWhitening | None = None,
    ) -> None:
        POSTPROCESS_MODES.get(mode)  # an unknown mode lists the valid ones
        self.raw = raw
        self.mode = mode
        self.dim = dim
        self.shrinkage = shrinkage
        self._post = postprocessor
        self._items: torch.Tensor | None = None

    @property
    def postprocessor(self) -> PCAWhitening:
        """The fitted post-processor (fitted on the raw gallery embeddings on first use)."""
        if self._post is None:
            gallery = self.raw.item_embeddings()  # (N, D)
            self._post = fit_postprocess(self.mode, gallery, dim=self.dim, shrinkage=self.shrinkage)
        return self._post

    def item_embeddings(self) -> torch.Tensor:
        """``(N, d)`` post-processed gallery embeddings."""
        if self._items is None:
            self._items = self.postprocessor.transform(self.raw.item_embeddings())
        return self._items

    def query_embeddings(self, triplets: Sequence[Triplet]) -> torch.Tensor:
        """``(Q, d)`` post-processed composed queries."""
        return self.postprocessor.transform(self.raw.query_embeddings(triplets))

    def text_embeddings(self, texts: Sequence[str]) -> torch.Tensor:
        """``(T, d)`` post-processed text queries."""
        return self.postprocessor.transform(self.raw.text_embeddings(texts))

    def image_query_embeddings(self) -> torch.Tensor:
        """``(N, d)`` post-processed image-only queries."""
        return self.postprocessor.transform(self.raw.image_query_embeddings())


class BackboneEmbeddings:
    """An :class:`EmbeddingSource` of L2-normalised backbone features, no trained heads.

    The classic image-to-image baseline: pretrained features for both the query and the
    gallery. ``source`` must offer ``backbone_features()`` (as :class:`ModelEmbeddings`
    does); text queries have no backbone space and are an error.
    """

    def __init__(self, source: Any) -> None:
        if not callable(getattr(source, "backbone_features", None)):
            raise ValueError(f"{type(source).__name__} has no backbone_features()")
        self.source = source

    def item_embeddings(self) -> torch.Tensor:
        """``(N, Dimg)`` normalised backbone features of the gallery."""
        feats = self.source.backbone_features().float()  # (N, Dimg)
        return torch.nn.functional.normalize(feats, dim=1)

    image_query_embeddings = item_embeddings

    def query_embeddings(self, triplets: Sequence[Triplet]) -> torch.Tensor:
        """Not available: composed queries need the model's heads."""
        raise ValueError("backbone features answer image-only queries only")

    def text_embeddings(self, texts: Sequence[str]) -> torch.Tensor:
        """Not available: texts have no backbone features."""
        raise ValueError("backbone features answer image-only queries only")


EMBEDDING_SPACES = ("model", "backbone")


def evaluate_image_to_image(
    model: Any,
    dataset: RetrievalDataset,
    *,
    postprocess: str = "whiten",
    dim: int | None = None,
    shrinkage: float = 0.0,
    space: str = "model",
    batch_size: int = 64,
    num_workers: int = 0,
    features: torch.Tensor | Mapping[str, Any] | None = None,
    chunk: int = 1024,
    device: str | torch.device | None = None,
    mixed_precision: str = "no",
) -> dict[str, Any]:
    """Image-to-image evaluation of ``model`` with gallery-fitted post-processing.

    ``space`` "model" ranks ``encode_query``/``encode_target`` embeddings; "backbone" ranks
    raw backbone features (``features``, as in :func:`evaluate`, skips recomputing them).
    Returns the evaluation JSON object (see :func:`.base.evaluate_embeddings`) with the
    post-processed numbers as ``recall`` and the raw ones under ``postprocess.raw`` (absent
    for ``postprocess="none"``). The heads run on ``device`` (default: where the model is)
    under ``mixed_precision`` autocast.
    """
    if space not in EMBEDDING_SPACES:
        raise ValueError(f"unknown embedding space {space!r}; valid: {', '.join(EMBEDDING_SPACES)}")
    source: Any = ModelEmbeddings(
        model, dataset.items, batch_size=batch_size, num_workers=num_workers, features=features,
        device=device, mixed_precision=mixed_precision,
    )
    if space == "backbone":
        source = BackboneEmbeddings(source)
    if postprocess != "none":
        source = PostprocessedEmbeddings(source, postprocess, dim=dim, shrinkage=shrinkage)
    name = model_name(model) + (" [backbone]" if space == "backbone" else "")
    return evaluate_embeddings(source, dataset, protocol="image_to_image", model=name, chunk=chunk)
