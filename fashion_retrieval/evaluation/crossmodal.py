"""Cross-modal protocol: captions -> images and images -> captions, R@1/5/10.

Texts are the distinct non-empty item captions. A caption matches every image that carries
it (captions repeat across products, so matching by equality is the fair rule). Text
queries are text-only ``encode_query``; images are ``encode_target`` embeddings.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from fashion_retrieval.data.records import RetrievalDataset
from fashion_retrieval.evaluation.base import EVAL_PROTOCOLS, as_long, protocol_result
from fashion_retrieval.evaluation.embeddings import EmbeddingSource
from fashion_retrieval.evaluation.ranking import crossmodal_recall, encode_labels

CROSSMODAL_KS = (1, 5, 10)


@EVAL_PROTOCOLS.register("crossmodal")
def crossmodal_protocol(
    source: EmbeddingSource, dataset: RetrievalDataset, *, chunk: int = 1024
) -> dict[str, Any]:
    """Text -> image and image -> text recall (``t2i_R@k``, ``i2t_R@k``) and ``rsum``."""
    rows = [r for r, it in enumerate(dataset.items) if it.caption.strip()]
    skipped = Counter()
    if len(rows) < len(dataset.items):
        skipped["item_without_caption"] = len(dataset.items) - len(rows)
    if not rows:
        raise ValueError(
            f"{dataset.name} {dataset.split!r} has no item captions: the cross-modal "
            "protocol needs them (real FashionIQ has none)"
        )
    captions = [dataset.items[r].caption for r in rows]
    texts = list(dict.fromkeys(captions))  # distinct, in first-seen order
    text_labels, image_labels = encode_labels(texts, captions)
    images = source.item_embeddings()[as_long(rows)]  # (N', D)
    text_emb = source.text_embeddings(texts)  # (T, D)
    recall = crossmodal_recall(
        text_emb, images, text_labels, image_labels, CROSSMODAL_KS, chunk=chunk
    )
    recall["rsum"] = sum(recall.values())
    return protocol_result(
        recall, {}, len(texts) + len(rows), skipped, texts=len(texts), images=len(rows)
    )
