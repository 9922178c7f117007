"""Ranking and retrieval metrics on embeddings only: no model, no data set.

Similarities are inner products of L2-normalised embeddings. Rankings are computed by
matrix product one chunk of queries at a time, so the full query x gallery matrix is never
held in memory (except in :func:`average_precision`, which needs whole rows, but still one
chunk of rows at a time).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence

import numpy as np
import torch

ArrayLike = torch.Tensor | np.ndarray


def _as_tensor(x: ArrayLike | Sequence, name: str, dtype: torch.dtype) -> torch.Tensor:
    """``x`` as a CPU tensor of ``dtype``; a clear error for anything else."""
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
    else:
        try:
            t = torch.as_tensor(np.asarray(x))
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name} must be a tensor or array, got {type(x).__name__}") from err
    return t.to(dtype)


def _check_embeddings(queries: torch.Tensor, gallery: torch.Tensor) -> None:
    """Raise ``ValueError`` unless both are finite 2-D matrices of the same width."""
    for name, x in (("queries", queries), ("gallery", gallery)):
        if x.ndim != 2:
            raise ValueError(f"{name} must be 2-D (N, D), got shape {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError(f"{name} contain NaN or infinite values")
    if queries.shape[1] != gallery.shape[1]:
        raise ValueError(
            f"queries have dimension {queries.shape[1]} but the gallery has {gallery.shape[1]}"
        )


def topk_chunked(
    queries: ArrayLike,
    gallery: ArrayLike,
    k: int,
    *,
    chunk: int = 1024,
    exclude: ArrayLike | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` gallery rows for every query by inner product, ``chunk`` queries at a time.

    ``exclude`` is an optional ``(Q,)`` gallery index per query that must not be ranked
    (the query's own image; -1 for none). ``k`` larger than the gallery is clipped.
    Returns ``scores (Q, k)`` (descending) and ``indices (Q, k)``; a slot that has no
    gallery item left (only possible when an item was excluded and ``k`` equals the
    gallery size) has score ``-inf`` and index -1.
    """
    q = _as_tensor(queries, "queries", torch.float32)  # (Q, D)
    g = _as_tensor(gallery, "gallery", torch.float32)  # (G, D)
    _check_embeddings(q, g)
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    n_q, n_g = q.shape[0], g.shape[0]
    if n_g == 0:
        raise ValueError("the gallery is empty")
    k = min(k, n_g)
    ex = None
    if exclude is not None:
        ex = _as_tensor(exclude, "exclude", torch.long)  # (Q,)
        if ex.shape != (n_q,):
            raise ValueError(f"exclude must have shape ({n_q},), got {tuple(ex.shape)}")
        if ((ex < -1) | (ex >= n_g)).any():
            raise ValueError("exclude holds an index outside the gallery")
    scores = torch.empty(n_q, k)
    indices = torch.empty(n_q, k, dtype=torch.long)
    gt = g.t().contiguous()  # (D, G)
    for start in range(0, n_q, chunk):
        stop = min(start + chunk, n_q)
        sim = q[start:stop] @ gt  # (c, G)
        if ex is not None:
            rows = torch.arange(stop - start)
            cols = ex[start:stop]
            keep = cols >= 0
            sim[rows[keep], cols[keep]] = float("-inf")
        s, i = torch.topk(sim, k, dim=1)  # (c, k)
        i[torch.isneginf(s)] = -1
        scores[start:stop], indices[start:stop] = s, i
    return scores, indices


def encode_labels(*label_lists: Iterable[Hashable]) -> list[torch.Tensor]:
    """Map several label sequences onto shared integer codes, one ``(n,)`` tensor each.

    Equal labels get equal codes across all the lists, so equality of codes is equality of
    labels (captions, product ids, categories...).
    """
    codes: dict[Hashable, int] = {}
    out = []
    for labels in label_lists:
        out.append(
            torch.tensor([codes.setdefault(x, len(codes)) for x in labels], dtype=torch.long)
        )
    return out


def hit_matrix_by_id(indices: torch.Tensor, targets: ArrayLike) -> torch.Tensor:
    """``(Q, K)`` booleans: is the item at each rank the query's target gallery index."""
    t = _as_tensor(targets, "targets", torch.long)  # (Q,)
    if t.shape != (indices.shape[0],):
        raise ValueError(f"targets must have shape ({indices.shape[0]},), got {tuple(t.shape)}")
    return (indices == t[:, None]) & (indices >= 0)


def hit_matrix_by_label(
    indices: torch.Tensor, gallery_labels: ArrayLike, query_labels: ArrayLike
) -> torch.Tensor:
    """``(Q, K)`` booleans: does the item at each rank carry the query's target label.

    Labels are integer codes (see :func:`encode_labels`); an index of -1 never hits.
    """
    gl = _as_tensor(gallery_labels, "gallery_labels", torch.long)  # (G,)
    ql = _as_tensor(query_labels, "query_labels", torch.long)  # (Q,)
    if ql.shape != (indices.shape[0],):
        raise ValueError(
            f"query_labels must have shape ({indices.shape[0]},), got {tuple(ql.shape)}"
        )
    valid = indices >= 0
    retrieved = gl[indices.clamp(min=0)]  # (Q, K)
    return (retrieved == ql[:, None]) & valid


def recall_from_hits(hits: torch.Tensor, ks: Sequence[int]) -> dict[str, float]:
    """``{"R@k": percent}``: the share of queries with a hit among their first ``k`` ranks.

    ``k`` beyond the number of ranked columns counts what was ranked (the gallery was
    smaller than ``k``).
    """
    if hits.shape[0] == 0:
        raise ValueError("no queries to compute recall over")
    out = {}
    for k in ks:
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        out[f"R@{k}"] = 100.0 * hits[:, :k].any(dim=1).float().mean().item()
    return out


def recall_at_k(
    indices: torch.Tensor,
    ks: Sequence[int],
    *,
    targets: ArrayLike | None = None,
    gallery_labels: ArrayLike | None = None,
    query_labels: ArrayLike | None = None,
) -> dict[str, float]:
    """Recall@k in percent from ranked ``indices (Q, K)``.

    Give either ``targets`` (hit = the target gallery index is ranked, FashionIQ) or
    ``gallery_labels`` and ``query_labels`` (hit = an item with the query's label is ranked,
    Fashion200k caption equality).
    """
    if targets is not None:
        hits = hit_matrix_by_id(indices, targets)
    elif gallery_labels is not None and query_labels is not None:
        hits = hit_matrix_by_label(indices, gallery_labels, query_labels)
    else:
        raise ValueError("give targets, or gallery_labels and query_labels")
    return recall_from_hits(hits, ks)


def precision_at_k(hits: torch.Tensor, ks: Sequence[int]) -> dict[str, float]:
    """``{"P@k": percent}``: the mean share of relevant items among the first ``k`` ranks."""
    if hits.shape[0] == 0:
        raise ValueError("no queries to compute precision over")
    out = {}
    for k in ks:
        if k < 1 or k > hits.shape[1]:
            raise ValueError(f"precision@{k} needs between 1 and {hits.shape[1]} ranks")
        out[f"P@{k}"] = 100.0 * hits[:, :k].float().sum(dim=1).div(k).mean().item()
    return out


def average_precision(
    queries: ArrayLike,
    gallery: ArrayLike,
    query_labels: ArrayLike,
    gallery_labels: ArrayLike,
    *,
    exclude: ArrayLike | None = None,
    chunk: int = 256,
) -> torch.Tensor:
    """Average precision of every query over the whole ranked gallery, ``(Q,)``.

    Relevant = same label code. ``exclude`` (``(Q,)``, -1 for none) removes the query's own
    item from its ranking. A query with no relevant item gets NaN (callers skip and count
    them). Rows are ranked ``chunk`` queries at a time.
    """
    q = _as_tensor(queries, "queries", torch.float32)  # (Q, D)
    g = _as_tensor(gallery, "gallery", torch.float32)  # (G, D)
    _check_embeddings(q, g)
    ql = _as_tensor(query_labels, "query_labels", torch.long)  # (Q,)
    gl = _as_tensor(gallery_labels, "gallery_labels", torch.long)  # (G,)
    n_q, n_g = q.shape[0], g.shape[0]
    ex = torch.full((n_q,), -1) if exclude is None else _as_tensor(exclude, "exclude", torch.long)
    ap = torch.empty(n_q)
    ranks = torch.arange(1, n_g + 1, dtype=torch.float32)  # (G,)
    for start in range(0, n_q, chunk):
        stop = min(start + chunk, n_q)
        sim = q[start:stop] @ g.t()  # (c, G)
        rel = gl[None, :] == ql[start:stop, None]  # (c, G)
        rows = torch.arange(stop - start)
        cols = ex[start:stop]
        keep = cols >= 0
        sim[rows[keep], cols[keep]] = float("-inf")
        rel[rows[keep], cols[keep]] = False
        order = torch.argsort(sim, dim=1, descending=True)  # (c, G)
        rel_sorted = torch.gather(rel, 1, order).float()  # (c, G)
        n_rel = rel_sorted.sum(dim=1)  # (c,)
        prec = rel_sorted.cumsum(dim=1) / ranks  # (c, G)
        ap[start:stop] = (prec * rel_sorted).sum(dim=1) / n_rel  # NaN where n_rel == 0
    return ap


def crossmodal_recall(
    text_emb: ArrayLike,
    image_emb: ArrayLike,
    text_labels: ArrayLike,
    image_labels: ArrayLike,
    ks: Sequence[int] = (1, 5, 10),
    *,
    chunk: int = 1024,
) -> dict[str, float]:
    """Recall both ways between texts and images that match when their labels are equal.

    With ``text_labels`` = the index of the image a caption describes and ``image_labels``
    = ``arange(N)``, this is the usual caption <-> image recall, several captions per image
    allowed. Keys: ``"t2i_R@k"`` and ``"i2t_R@k"``.
    """
    k_max = max(ks)
    _, t2i = topk_chunked(text_emb, image_emb, k_max, chunk=chunk)  # (T, K)
    _, i2t = topk_chunked(image_emb, text_emb, k_max, chunk=chunk)  # (N, K)
    out = {}
    for key, value in recall_at_k(
        t2i, ks, gallery_labels=image_labels, query_labels=text_labels
    ).items():
        out[f"t2i_{key}"] = value
    for key, value in recall_at_k(
        i2t, ks, gallery_labels=text_labels, query_labels=image_labels
    ).items():
        out[f"i2t_{key}"] = value
    return out
