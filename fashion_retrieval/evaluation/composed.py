"""Composed-query protocols: Fashion200k, FashionIQ and the synthetic catalogue.

- ``fashion200k``: gallery = every item of the split; a retrieved item is a hit when its
  caption equals the triplet's target caption exactly (captions as the loader cleaned them:
  TIRG's clean-up by default); the source image is excluded from its own ranking;
  R@1/5/10/50/100 (plus a per-category breakdown of the same ranking). ``queries`` is the
  number ranked; ``query_lines`` the lines of ``test_queries.txt`` (TIRG: 33,480 over
  29,789 test images, every one a query) and ``caption_cleanup`` the rule used.
- ``fashioniq``: one gallery per category; a hit is the target item itself; R@10, R@50
  per category, and their means over categories plus ``avg`` = (R@10 + R@50) / 2.
- ``synthetic``: one gallery per category like FashionIQ, but hits by caption equality (all
  views of the target product count) with the source excluded; R@1/10/50.
- ``one_gallery``: like ``fashion200k`` (one gallery of every garment type, caption hits,
  source excluded) with R@1/10/50: what a shop's search box sees.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

import torch

from fashion_retrieval.data.records import RetrievalDataset, Triplet
from fashion_retrieval.evaluation.base import (
    EVAL_PROTOCOLS,
    as_long,
    index_rows,
    mean_over,
    protocol_result,
)
from fashion_retrieval.evaluation.embeddings import EmbeddingSource
from fashion_retrieval.evaluation.hits import hit_rule
from fashion_retrieval.evaluation.ranking import (
    encode_labels,
    hit_matrix_by_id,
    hit_matrix_by_label,
    recall_from_hits,
    topk_chunked,
)

FASHION200K_KS = (1, 5, 10, 50, 100)
FASHIONIQ_KS = (10, 50)
SYNTHETIC_KS = (1, 10, 50)


def usable_triplets(
    dataset: RetrievalDataset, *, need_caption: bool
) -> tuple[list[Triplet], list[str], Counter]:
    """The triplets that can be ranked, their target labels, and skip counts by reason.

    With ``need_caption`` the label is the target caption (falling back to the target
    item's own caption); otherwise it is the target id. A split without targets (FashionIQ
    test) is an error: it is for inference only.
    """
    if any(t.target is None for t in dataset.triplets) and not need_caption:
        raise ValueError(
            f"{dataset.name} {dataset.split!r} has no target images (a test split is for "
            "inference only); evaluate the val split instead"
        )
    by_id = dataset.item_by_id()
    kept, labels, skipped = [], [], Counter()
    for t in dataset.triplets:
        if t.source not in by_id:
            skipped["source_not_in_gallery"] += 1
            continue
        if need_caption:
            label = t.target_caption or (by_id[t.target].caption if t.target in by_id else "")
            if not label:
                skipped["no_target_caption"] += 1
                continue
        else:
            if t.target not in by_id:
                skipped["target_not_in_gallery"] += 1
                continue
            label = t.target
        kept.append(t)
        labels.append(label)
    if not kept:
        raise ValueError(
            f"no rankable queries in {dataset.name} {dataset.split!r} "
            f"({len(dataset.triplets)} triplets, skipped: {dict(skipped)})"
        )
    return kept, labels, skipped


def _hits(
    q: torch.Tensor,
    g: torch.Tensor,
    gallery_keys: Sequence[str],
    query_keys: Sequence[str],
    exclude: torch.Tensor | None,
    k: int,
    by_caption: bool,
    chunk: int,
) -> torch.Tensor:
    """``(Q, k)`` hit booleans; keys are captions (label rule) or ids (id rule)."""
    _, idx = topk_chunked(q, g, k, exclude=exclude, chunk=chunk)  # (Q, k)
    if by_caption:
        gl, ql = encode_labels(gallery_keys, query_keys)
        return hit_matrix_by_label(idx, gl, ql)
    rows = index_rows(gallery_keys)
    return hit_matrix_by_id(idx, as_long([rows[key] for key in query_keys]))


def _whole_gallery(
    source: EmbeddingSource, dataset: RetrievalDataset, ks: Sequence[int], chunk: int, protocol: str
) -> dict[str, Any]:
    """Every query against the whole split under ``protocol``'s hit rule (caption equality,
    source excluded, for the protocols that use it), recall at ``ks`` overall and per
    category (the same ranking, split by the query's category)."""
    rule = hit_rule(protocol)
    triplets, labels, skipped = usable_triplets(dataset, need_caption=rule.by_caption)
    gallery = source.item_embeddings()  # (N, D)
    queries = source.query_embeddings(triplets)  # (Q, D)
    rows = index_rows([it.id for it in dataset.items])
    exclude = as_long([rows[t.source] for t in triplets]) if rule.exclude_source else None
    keys = [it.caption for it in dataset.items] if rule.by_caption else [it.id for it in dataset.items]
    hits = _hits(queries, gallery, keys, labels, exclude, max(ks), rule.by_caption, chunk)
    by_cat: dict[str, list[int]] = defaultdict(list)
    for j, t in enumerate(triplets):
        by_cat[t.category].append(j)
    categories = {c: recall_from_hits(hits[as_long(js)], ks) for c, js in sorted(by_cat.items())}
    return protocol_result(recall_from_hits(hits, ks), categories, len(triplets), skipped)


@EVAL_PROTOCOLS.register("fashion200k")
def fashion200k_protocol(
    source: EmbeddingSource, dataset: RetrievalDataset, *, chunk: int = 1024
) -> dict[str, Any]:
    """Fashion200k: whole-split gallery, caption-equality hits, source excluded; the loader's
    ``caption_cleanup``, ``query_lines``, ``queries_without_word_difference`` and
    ``duplicate_rows`` (repeated label lines kept as gallery rows, as TIRG does; only the
    query's own row is left out) are reported beside ``queries`` (how many were ranked)."""
    result = _whole_gallery(source, dataset, FASHION200K_KS, chunk, "fashion200k")
    keys = ("caption_cleanup", "query_lines", "queries_without_word_difference", "duplicate_rows")
    result.update({k: dataset.meta[k] for k in keys if k in dataset.meta})
    return result


def _per_category(
    source: EmbeddingSource,
    dataset: RetrievalDataset,
    *,
    ks: Sequence[int],
    protocol: str,
    chunk: int,
) -> tuple[dict[str, float], dict[str, dict[str, float]], int, Counter]:
    """Rank each category's queries against that category's gallery under ``protocol``'s hit
    rule; the mean over categories of recall at ``ks``, and recall per category."""
    rule = hit_rule(protocol)
    by_caption, exclude_source = rule.by_caption, rule.exclude_source
    triplets, labels, skipped = usable_triplets(dataset, need_caption=by_caption)
    gallery = source.item_embeddings()  # (N, D)
    queries = source.query_embeddings(triplets)  # (Q, D)
    item_rows: dict[str, list[int]] = defaultdict(list)
    for r, it in enumerate(dataset.items):
        item_rows[it.category].append(r)
    query_rows: dict[str, list[int]] = defaultdict(list)
    for j, t in enumerate(triplets):
        query_rows[t.category].append(j)
    per_cat, ranked = {}, 0
    for cat, qrows in sorted(query_rows.items()):
        grows = item_rows.get(cat, [])
        gids = [dataset.items[r].id for r in grows]
        local = index_rows(gids)
        if not by_caption:  # the target must be in this category's gallery
            dropped = [j for j in qrows if labels[j] not in local]
            skipped["target_not_in_category_gallery"] += len(dropped)
            qrows = [j for j in qrows if labels[j] in local]
        if not qrows:
            continue
        keys = [dataset.items[r].caption for r in grows] if by_caption else gids
        exclude = as_long([local.get(triplets[j].source, -1) for j in qrows])
        hits = _hits(
            queries[as_long(qrows)],
            gallery[as_long(grows)],
            keys,
            [labels[j] for j in qrows],
            exclude if exclude_source else None,
            max(ks),
            by_caption,
            chunk,
        )
        per_cat[cat] = recall_from_hits(hits, ks)
        ranked += len(qrows)
    return mean_over(per_cat, [f"R@{k}" for k in ks]), per_cat, ranked, skipped


@EVAL_PROTOCOLS.register("fashioniq")
def fashioniq_protocol(
    source: EmbeddingSource, dataset: RetrievalDataset, *, chunk: int = 1024
) -> dict[str, Any]:
    """FashionIQ: per-category galleries, target-id hits; R@10, R@50 and their average, and
    the loader's ``caption_mode`` (which query text was ranked) when it recorded one."""
    recall, per_cat, ranked, skipped = _per_category(source, dataset, ks=FASHIONIQ_KS, protocol="fashioniq", chunk=chunk)
    recall["avg"] = (recall["R@10"] + recall["R@50"]) / 2
    extra = {"caption_mode": dataset.meta["caption_mode"]} if "caption_mode" in dataset.meta else {}
    return protocol_result(recall, per_cat, ranked, skipped, **extra)


@EVAL_PROTOCOLS.register("synthetic")
def synthetic_protocol(
    source: EmbeddingSource, dataset: RetrievalDataset, *, chunk: int = 1024
) -> dict[str, Any]:
    """Synthetic: per-category galleries, caption-equality hits, source excluded."""
    recall, per_cat, ranked, skipped = _per_category(source, dataset, ks=SYNTHETIC_KS, protocol="synthetic", chunk=chunk)
    return protocol_result(recall, per_cat, ranked, skipped)


@EVAL_PROTOCOLS.register("one_gallery")
def one_gallery_protocol(
    source: EmbeddingSource, dataset: RetrievalDataset, *, chunk: int = 1024
) -> dict[str, Any]:
    """A shop's search box: one gallery across all garment types, caption-equality hits,
    source excluded; R@1, R@10, R@50."""
    return _whole_gallery(source, dataset, SYNTHETIC_KS, chunk, "one_gallery")
