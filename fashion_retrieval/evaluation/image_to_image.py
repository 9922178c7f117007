"""Image-to-image protocol: precision@K and mAP, at product level and category level.

Every item queries the gallery with its image alone (image-only ``encode_query``, as the
Retriever does) against ``encode_target`` embeddings, its own image excluded. Positives:
items of the same product (the ``product`` attribute where the catalogue records it,
else the same caption); the category-level variant counts every item of the same
category. Queries that have no positive in the gallery are skipped and counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch

from fashion_retrieval.data.records import Item, RetrievalDataset
from fashion_retrieval.evaluation.base import EVAL_PROTOCOLS, as_long, protocol_result
from fashion_retrieval.evaluation.embeddings import EmbeddingSource
from fashion_retrieval.evaluation.ranking import (
    average_precision,
    encode_labels,
    hit_matrix_by_label,
    precision_at_k,
    topk_chunked,
)

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


@EVAL_PROTOCOLS.register("image_to_image")
def image_to_image_protocol(
    source: EmbeddingSource, dataset: RetrievalDataset, *, chunk: int = 1024
) -> dict[str, Any]:
    """P@1/5/10 and mAP by product ("recall"), by category ("category_level"), per category."""
    items = dataset.items
    ks = tuple(k for k in IMAGE_KS if k < len(items))
    if not ks:
        raise ValueError("image-to-image evaluation needs at least two gallery items")
    queries = source.image_query_embeddings()  # (N, D)
    gallery = source.item_embeddings()  # (N, D)
    hits, ap, has_pos = _rank(queries, gallery, [product_label(it) for it in items], ks, chunk)
    if not has_pos.any():
        raise ValueError("no two gallery items share a product or caption: nothing to find")
    skipped = Counter()
    if not has_pos.all():
        skipped["no_same_product"] = int((~has_pos).sum())
    categories = {}
    for cat in sorted({it.category for it in items}):
        in_cat = as_long([it.category == cat for it in items]).bool() & has_pos
        if in_cat.any():
            categories[cat] = _summary(hits, ap, in_cat, ks)
    c_hits, c_ap, c_pos = _rank(queries, gallery, [it.category for it in items], ks, chunk)
    category_level = _summary(c_hits, c_ap, c_pos, ks) if c_pos.any() else {}
    result = protocol_result(
        _summary(hits, ap, has_pos, ks), categories, int(has_pos.sum()), skipped
    )
    result["category_level"] = {k: round(v, 4) for k, v in category_level.items()}
    return result
