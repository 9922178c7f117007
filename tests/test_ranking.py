"""Ranking metrics against straightforward brute-force references on small random data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fashion_retrieval.evaluation.ranking import (
    average_precision,
    crossmodal_recall,
    encode_labels,
    hit_matrix_by_label,
    precision_at_k,
    recall_at_k,
    topk_chunked,
)


def _normed(rng: np.random.Generator, n: int, d: int) -> torch.Tensor:
    x = torch.from_numpy(rng.standard_normal((n, d)).astype(np.float32))
    return x / x.norm(dim=1, keepdim=True)


def _brute_order(q: torch.Tensor, g: torch.Tensor, exclude=None) -> np.ndarray:
    sim = (q.double() @ g.double().t()).numpy()  # (Q, G) full matrix on purpose
    if exclude is not None:
        for i, e in enumerate(exclude):
            if e >= 0:
                sim[i, e] = -np.inf
    return np.argsort(-sim, axis=1, kind="stable")


@pytest.mark.parametrize("chunk", [1, 7, 1024])
def test_topk_matches_full_sort(chunk: int) -> None:
    rng = np.random.default_rng(0)
    q, g = _normed(rng, 23, 8), _normed(rng, 40, 8)
    exclude = rng.integers(-1, 40, size=23)
    scores, idx = topk_chunked(q, g, 10, chunk=chunk, exclude=torch.from_numpy(exclude))
    ref = _brute_order(q, g, exclude)[:, :10]
    assert np.array_equal(idx.numpy(), ref)
    assert torch.all(scores[:, :-1] >= scores[:, 1:])
    for i, e in enumerate(exclude):
        assert e not in idx[i].tolist() or e < 0


def test_topk_clips_k_and_marks_excluded_slot() -> None:
    rng = np.random.default_rng(1)
    q, g = _normed(rng, 3, 4), _normed(rng, 5, 4)
    scores, idx = topk_chunked(q, g, 50, exclude=[0, -1, 4])
    assert idx.shape == (3, 5)
    assert idx[0, -1] == -1 and torch.isneginf(scores[0, -1])
    assert sorted(idx[1].tolist()) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"k": 0}, "k must be at least 1"),
        ({"gallery": torch.zeros(4, 3)}, "dimension"),
        ({"queries": torch.full((2, 4), float("nan"))}, "NaN"),
        ({"exclude": [0, 9]}, "outside the gallery"),
    ],
)
def test_topk_bad_input(kwargs, match) -> None:
    args = {"queries": torch.ones(2, 4), "gallery": torch.ones(5, 4), "k": 2}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        topk_chunked(args["queries"], args["gallery"], args["k"], exclude=args.get("exclude"))


def test_recall_by_id_and_by_label_match_brute_force() -> None:
    rng = np.random.default_rng(2)
    q, g = _normed(rng, 30, 6), _normed(rng, 50, 6)
    targets = rng.integers(0, 50, size=30)
    captions = [f"c{x}" for x in rng.integers(0, 12, size=50)]
    wanted = [f"c{x}" for x in rng.integers(0, 14, size=30)]  # some labels never in gallery
    exclude = rng.integers(0, 50, size=30)
    order = _brute_order(q, g, exclude)
    _, idx = topk_chunked(q, g, 20, chunk=4, exclude=exclude)
    ks = (1, 5, 10, 20)
    by_id = recall_at_k(idx, ks, targets=targets)
    gl, ql = encode_labels(captions, wanted)
    by_label = recall_at_k(idx, ks, gallery_labels=gl, query_labels=ql)
    for k in ks:
        ref_id = np.mean([targets[i] in order[i, :k] for i in range(30)]) * 100
        ref_lab = (
            np.mean([wanted[i] in {captions[j] for j in order[i, :k]} for i in range(30)]) * 100
        )
        assert by_id[f"R@{k}"] == pytest.approx(ref_id)
        assert by_label[f"R@{k}"] == pytest.approx(ref_lab)
    assert 0 < by_label["R@20"] < 100


def test_encode_labels_shares_codes() -> None:
    a, b = encode_labels(["x", "y", "x"], ["y", "z"])
    assert a.tolist() == [0, 1, 0] and b.tolist() == [1, 2]


def test_precision_and_map_match_brute_force() -> None:
    rng = np.random.default_rng(3)
    emb = _normed(rng, 40, 5)
    labels = rng.integers(0, 6, size=40)
    labels[7] = 99  # a query with no other item of its label
    self_idx = np.arange(40)
    order = _brute_order(emb, emb, self_idx)[:, :-1]  # drop the excluded self at the end
    _, idx = topk_chunked(emb, emb, 10, exclude=self_idx, chunk=9)
    (codes,) = encode_labels(labels.tolist())
    hits = hit_matrix_by_label(idx, codes, codes)
    prec = precision_at_k(hits, (1, 5, 10))
    ap = average_precision(emb, emb, codes, codes, exclude=self_idx, chunk=6)
    for k in (1, 5, 10):
        ref = np.mean([np.mean(labels[order[i, :k]] == labels[i]) for i in range(40)]) * 100
        assert prec[f"P@{k}"] == pytest.approx(ref)
    for i in range(40):
        rel = labels[order[i]] == labels[i]
        if not rel.any():
            assert torch.isnan(ap[i])
            continue
        ranks = np.nonzero(rel)[0] + 1
        ref_ap = np.mean(np.arange(1, len(ranks) + 1) / ranks)
        assert ap[i].item() == pytest.approx(ref_ap, rel=1e-5)


def test_crossmodal_recall_with_several_captions_per_image() -> None:
    rng = np.random.default_rng(4)
    images = _normed(rng, 12, 6)
    owner = np.repeat(np.arange(12), 3)[:30]  # 30 captions over 10 images, two images have none
    texts = _normed(rng, 30, 6)
    res = crossmodal_recall(texts, images, owner, np.arange(12), ks=(1, 5))
    t2i = _brute_order(texts, images)
    i2t = _brute_order(images, texts)
    for k in (1, 5):
        ref_t = np.mean([owner[t] in t2i[t, :k] for t in range(30)]) * 100
        ref_i = np.mean([i in owner[i2t[i, :k]] for i in range(12)]) * 100
        assert res[f"t2i_R@{k}"] == pytest.approx(ref_t)
        assert res[f"i2t_R@{k}"] == pytest.approx(ref_i)


def test_perfect_embeddings_give_full_recall() -> None:
    g = torch.eye(8)
    _, idx = topk_chunked(g, g, 1)
    assert recall_at_k(idx, (1,), targets=torch.arange(8)) == {"R@1": 100.0}
