"""GalleryIndex: exact and approximate kinds against brute force, persistence, fingerprints."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fashion_retrieval.search.index import (
    IDS_FILE,
    INDEX_FILE,
    META_FILE,
    GalleryIndex,
    IndexLoadError,
    combine_fingerprints,
    resolve_kind,
)


def _normed(seed: int, n: int, d: int = 16) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _ids(n: int, prefix: str = "item") -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


# Every kind of index, with the parameters that select it.
KINDS = [("flat", {}), ("ivf", {}), ("ivf", {"codes": "pq"}), ("hnsw", {})]
KIND_IDS = ["flat", "ivf", "ivf-pq", "hnsw"]


def test_flat_is_exact() -> None:
    g, q = _normed(0, 300), _normed(1, 20)
    index = GalleryIndex.build(g, _ids(300), kind="flat")
    scores, pos = index.search(q, 10)
    ref = np.argsort(-(q @ g.T), axis=1)[:, :10]
    assert np.array_equal(pos, ref)
    assert np.allclose(scores, np.take_along_axis(q @ g.T, ref, axis=1), atol=1e-5)
    hits = index.search_ids(q[:1], 3)[0]
    assert [h[0] for h in hits] == [f"item{i}" for i in ref[0, :3]]


def test_few_query_path_matches_faiss_after_add_and_reload(tmp_path) -> None:
    g, q = _normed(4, 500), _normed(5, 3)
    index = GalleryIndex.build(g[:400], _ids(400), kind="flat")
    index.add(g[400:], _ids(100, "new"))
    index = GalleryIndex.load(index.save(tmp_path / "idx"))
    few_scores, few_pos = index.search(q, 7)  # fewer than FEW_QUERIES: the torch path
    ref_scores, ref_pos = index._index.search(q, 7)  # faiss's own scan
    assert np.array_equal(few_pos, ref_pos)
    assert np.allclose(few_scores, ref_scores, atol=1e-5)


def test_set_search_params() -> None:
    index = GalleryIndex.build(_normed(6, 400), _ids(400), kind="ivf", nlist=8, nprobe=1)
    index.set_search_params(nprobe=8)
    assert index.params["nprobe"] == 8 and index._index.nprobe == 8
    with pytest.raises(ValueError, match="efSearch"):
        index.set_search_params(efSearch=10)


@pytest.mark.parametrize(
    "kind, params",
    [
        ("ivf", {"nlist": 16, "nprobe": 8}),
        ("ivf", {"nlist": 16, "nprobe": 8, "codes": "pq", "pq_m": 4, "rerank": 30}),
        ("hnsw", {"M": 16, "efSearch": 64}),
    ],
)
def test_approximate_kinds_recall_against_exact(kind: str, params: dict) -> None:
    g, q = _normed(2, 2000), _normed(3, 50)
    exact = np.argsort(-(q @ g.T), axis=1)[:, :10]
    index = GalleryIndex.build(g, _ids(2000), kind=kind, **params)
    assert index.kind == kind and index.params.items() >= params.items()
    _, pos = index.search(q, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(pos, exact, strict=True)])
    assert recall > 0.8, recall


def test_ivf_pq_codes_rerank_to_exact_scores() -> None:
    g, q = _normed(8, 3000, 32), _normed(9, 40, 32)
    sims = q @ g.T
    index = GalleryIndex.build(g, _ids(3000), kind="ivf", nlist=8, nprobe=8, codes="pq")
    assert index.params == {"nlist": 8, "nprobe": 8, "codes": "pq", "pq_m": 4, "rerank": 30}
    scores, pos = index.search(q, 5)
    # Re-ranked against the stored vectors: every returned score is the exact inner product.
    assert np.allclose(scores, np.take_along_axis(sims, pos, axis=1), atol=1e-5)

    def top1(params: dict) -> float:
        index = GalleryIndex.build(g, _ids(3000), kind="ivf", nlist=8, nprobe=8, codes="pq", **params)
        return float(np.mean(index.search(q, 5)[1][:, 0] == sims.argmax(axis=1)))

    # Every cell is visited, so only the codes can lose the true best match: finer codes
    # and a deeper re-ranking find it, PQ order alone (rerank=1) with coarse codes does not.
    assert top1({"pq_m": 16, "rerank": 10}) >= 0.95
    assert top1({"pq_m": 4, "rerank": 1}) < 0.5
    index.set_search_params(rerank=1)
    assert index._index.k_factor == 1 and index.params["rerank"] == 1


def test_ivf_parameter_errors() -> None:
    g = _normed(0, 200, 32)
    with pytest.raises(ValueError, match="codes must be one of"):
        GalleryIndex.build(g, _ids(200), kind="ivf", codes="sq8")
    with pytest.raises(ValueError, match="pq_m must divide the dimension 32"):
        GalleryIndex.build(g, _ids(200), kind="ivf", codes="pq", pq_m=5)
    with pytest.raises(ValueError, match="codes='pq' only"):
        GalleryIndex.build(g, _ids(200), kind="ivf", rerank=4)
    flat_ivf = GalleryIndex.build(g, _ids(200), kind="ivf", nlist=4)
    with pytest.raises(ValueError, match="no search parameter"):
        flat_ivf.set_search_params(rerank=4)


def test_auto_above_the_exact_limit_builds_reranked_ivf_pq(monkeypatch) -> None:
    import fashion_retrieval.search.index as index_module

    monkeypatch.setattr(index_module, "AUTO_EXACT_LIMIT", 1000)
    g = _normed(10, 2000, 32)
    index = GalleryIndex.build(g, _ids(2000), kind="auto")
    assert index.kind == "ivf" and index.params["codes"] == "pq" and index.params["rerank"] == 30
    assert index.params["nprobe"] == 16  # max(16, nlist // 16) with nlist 51
    small = GalleryIndex.build(g[:999], _ids(999), kind="auto")
    assert small.kind == "flat"
    explicit = GalleryIndex.build(g, _ids(2000), kind="auto", codes="flat")
    assert "rerank" not in explicit.params


def test_auto_kind_by_size() -> None:
    assert resolve_kind("auto", 10) == "flat"
    assert resolve_kind("auto", 10_000_000) == "ivf"
    with pytest.raises(ValueError, match="flat, hnsw, ivf"):
        resolve_kind("annoy", 10)
    with pytest.raises(ValueError, match="unknown ivf parameters"):
        GalleryIndex.build(_normed(0, 50), _ids(50), kind="ivf", M=3)


def test_validation_errors() -> None:
    index = GalleryIndex.build(_normed(0, 5), _ids(5))
    with pytest.raises(ValueError, match="dimension 8 but the index has dimension 16"):
        index.search(_normed(1, 2, 8), 3)
    with pytest.raises(ValueError, match="at least 1"):
        index.search(_normed(1, 2), 0)
    assert index.search(_normed(1, 2), 50)[1].shape == (2, 5)  # k clipped
    bad = _normed(1, 3)
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        GalleryIndex.build(bad, _ids(3))
    with pytest.raises(ValueError, match="NaN"):
        index.search(bad, 2)
    with pytest.raises(ValueError, match="3 embeddings but 2 ids"):
        GalleryIndex.build(_normed(0, 3), _ids(2))
    with pytest.raises(ValueError, match="unique"):
        GalleryIndex.build(_normed(0, 2), ["a", "a"])


@pytest.mark.parametrize("kind, params", KINDS, ids=KIND_IDS)
def test_add_then_find_new_items(kind: str, params: dict) -> None:
    g = _normed(4, 200)
    index = GalleryIndex.build(g[:150], _ids(150), kind=kind, **params)
    index.add(g[150:], _ids(50, "new"))
    assert len(index) == 200 and "new7" in index
    hits = index.search_ids(g[150:160], 1)
    assert [h[0][0] for h in hits] == _ids(10, "new")
    with pytest.raises(ValueError, match="already in the index"):
        index.add(g[:1], ["item0"])
    with pytest.raises(ValueError, match="dimension"):
        index.add(_normed(0, 1, 4), ["x"])


@pytest.mark.parametrize("kind, params", KINDS, ids=KIND_IDS)
def test_save_load_round_trip(tmp_path, kind: str, params: dict) -> None:
    g, q = _normed(5, 400), _normed(6, 5)
    index = GalleryIndex.build(g, _ids(400), kind=kind, fingerprint="fp1", **params)
    index.save(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {INDEX_FILE, IDS_FILE, META_FILE}
    meta = json.loads((tmp_path / META_FILE).read_text())
    assert meta["kind"] == kind and meta["count"] == 400 and meta["dim"] == 16
    loaded = GalleryIndex.load(tmp_path)
    assert loaded.ids == index.ids and loaded.fingerprint == "fp1" and loaded.params == index.params
    assert np.array_equal(loaded.search(q, 5)[1], index.search(q, 5)[1])


def test_load_or_build_rebuilds_on_fingerprint_change_and_corruption(tmp_path) -> None:
    g = _normed(7, 30)
    calls = []

    def build() -> GalleryIndex:
        calls.append(1)
        return GalleryIndex.build(g, _ids(30))

    a = GalleryIndex.load_or_build(tmp_path, "fp-a", build)
    b = GalleryIndex.load_or_build(tmp_path, "fp-a", build)
    assert len(calls) == 1 and b.fingerprint == "fp-a" and b.ids == a.ids
    GalleryIndex.load_or_build(tmp_path, "fp-b", build)
    assert len(calls) == 2
    assert json.loads((tmp_path / META_FILE).read_text())["fingerprint"] == "fp-b"
    (tmp_path / INDEX_FILE).write_bytes(b"garbage")
    with pytest.raises(IndexLoadError, match=INDEX_FILE):
        GalleryIndex.load(tmp_path)
    GalleryIndex.load_or_build(tmp_path, "fp-b", build)
    assert len(calls) == 3
    (tmp_path / IDS_FILE).write_text("[1, 2,\n oops")
    with pytest.raises(IndexLoadError, match=r"ids.json: invalid JSON at line 2"):
        GalleryIndex.load(tmp_path)
    (tmp_path / META_FILE).unlink()
    with pytest.raises(IndexLoadError, match="meta.json: missing"):
        GalleryIndex.load(tmp_path)


def test_combine_fingerprints_is_stable_and_order_sensitive() -> None:
    assert combine_fingerprints("a", "b") == combine_fingerprints("a", "b")
    assert combine_fingerprints("a", "b") != combine_fingerprints("b", "a")
    assert combine_fingerprints("ab", "") != combine_fingerprints("a", "b")


def test_each_kind_is_one_entry_holding_build_and_search_parameters() -> None:
    from fashion_retrieval.search.index import INDEX_KINDS, IndexKind, choose_kind, index_kind

    assert INDEX_KINDS.names() == ["flat", "hnsw", "ivf"]
    g, q = _normed(11, 600), _normed(12, 4)
    for name in INDEX_KINDS.names():
        entry = index_kind(name)
        assert isinstance(entry, IndexKind) and entry.name == name
        faiss_index, params = entry.build(g)
        # Defaults of both kinds of parameters come from the entry itself.
        assert set(params) <= set(entry.build_params) | set(entry.search_params)
        assert set(entry.allowed_search(params)) <= set(params)
        index = GalleryIndex(faiss_index, _ids(600), name, params)
        assert index.search(q, 3)[1].shape == (4, 3)
    hnsw = index_kind("hnsw")
    assert hnsw.search_defaults({"M": 32}) == {"efSearch": 64}
    faiss_index, params = hnsw.build(g, M=8, efSearch=20)
    assert params == {"M": 8, "efConstruction": 80, "efSearch": 20}
    assert faiss_index.hnsw.efSearch == 20  # applied by the entry
    ivf = index_kind("ivf")
    assert ivf.search_defaults({"nlist": 64, "codes": "pq"}) == {"nprobe": 16, "rerank": 30}
    assert ivf.search_defaults({"nlist": 640, "codes": "pq"})["nprobe"] == 40
    faiss_index, params = ivf.build(g, nlist=4, nprobe=99)
    assert params == {"nlist": 4, "nprobe": 4}  # clipped to the cells there are
    assert ivf.set_search(faiss_index, params, nprobe=2) == {"nlist": 4, "nprobe": 2}
    assert faiss_index.nprobe == 2
    with pytest.raises(ValueError, match="no search parameter"):
        ivf.set_search(faiss_index, params, efSearch=3)
    # "auto" is decided in one place, for every caller.
    assert choose_kind("auto", 10, {"x": 1}) == ("flat", {"x": 1})
    assert choose_kind("auto", 10**7) == ("ivf", {"codes": "pq"})
    assert choose_kind("auto", 10**7, {"codes": "flat"}) == ("ivf", {"codes": "flat"})
    assert choose_kind("hnsw", 10, {"M": 4}) == ("hnsw", {"M": 4})
