"""Every evaluation protocol against a brute-force reference on small random embeddings."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import pytest
import torch

from fashion_retrieval.data.records import Item, RetrievalDataset, Triplet
from fashion_retrieval.evaluation import EVAL_PROTOCOLS, evaluate_embeddings

D = 8
CATS = ("dress", "shirt", "toptee")


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _dataset(seed: int = 0) -> RetrievalDataset:
    """Three categories, repeated captions (so caption hits differ from id hits)."""
    rng = np.random.default_rng(seed)
    items = []
    for c in CATS:
        for i in range(14):
            product = int(rng.integers(0, 6))
            attrs = {"product": f"{c}{product}"} if i % 3 else {}
            items.append(Item(f"{c}-{i}", f"/x/{c}-{i}.png", f"{c} cap{product}", c, attrs))
    triplets = []
    for j in range(60):
        c = CATS[j % 3]
        src, tgt = rng.choice(14, size=2, replace=False)
        tgt_item = next(it for it in items if it.id == f"{c}-{tgt}")
        triplets.append(Triplet(f"{c}-{src}", tgt_item.id, f"text {j}", c, (), tgt_item.caption))
    triplets.append(Triplet("gone", "dress-1", "t", "dress", (), "dress cap1"))
    triplets.append(Triplet("dress-2", "shirt-3", "t", "dress", (), "shirt cap9"))  # cross-cat
    return RetrievalDataset("toy", "val", "/x", items, triplets, "synthetic", Counter(missing=2))


class RandomEmbeddings:
    """Random unit embeddings; queries lean towards their targets so recall is not ~0."""

    def __init__(self, dataset: RetrievalDataset, seed: int = 1) -> None:
        rng = np.random.default_rng(seed)
        self.items = dataset.items
        self.row = {it.id: i for i, it in enumerate(self.items)}
        self.targets = _unit(rng.standard_normal((len(self.items), D)))
        self.image_queries = _unit(self.targets + 0.8 * rng.standard_normal(self.targets.shape))
        self.rng = rng

    def item_embeddings(self) -> torch.Tensor:
        return torch.from_numpy(self.targets).float()

    def image_query_embeddings(self) -> torch.Tensor:
        return torch.from_numpy(self.image_queries).float()

    def query_embeddings(self, triplets: Sequence[Triplet]) -> torch.Tensor:
        rows = [self.targets[self.row[t.target]] for t in triplets]
        noise = self.rng.standard_normal((len(triplets), D))
        return torch.from_numpy(_unit(np.stack(rows) + 1.2 * noise)).float()

    def text_embeddings(self, texts: Sequence[str]) -> torch.Tensor:
        by_cap = {}
        for it, v in zip(self.items, self.targets, strict=True):
            by_cap.setdefault(it.caption, v)
        base = np.stack([by_cap[t] for t in texts])
        return torch.from_numpy(_unit(base + self.rng.standard_normal(base.shape))).float()


class Recorder(RandomEmbeddings):
    """Remembers the embeddings it handed out, for the reference to reuse."""

    def query_embeddings(self, triplets):
        self.q_triplets, self.q = list(triplets), super().query_embeddings(triplets).numpy()
        return torch.from_numpy(self.q)

    def text_embeddings(self, texts):
        self.texts, self.t = list(texts), super().text_embeddings(texts).numpy()
        return torch.from_numpy(self.t)


def _order(q: np.ndarray, g: np.ndarray, exclude: int = -1) -> np.ndarray:
    sim = g.astype(np.float64) @ q.astype(np.float64)
    if exclude >= 0:
        sim[exclude] = -np.inf
    order = np.argsort(-sim, kind="stable")
    return order[:-1] if exclude >= 0 else order


def _run(name: str, seed: int = 0):
    ds = _dataset(seed)
    src = Recorder(ds, seed + 1)
    return ds, src, evaluate_embeddings(src, ds, protocol=name, model="random")


def test_fashion200k_against_brute_force() -> None:
    ds, src, res = _run("fashion200k")
    assert res["queries"] == 61 and res["skipped"] == {
        "data:missing": 2,
        "source_not_in_gallery": 1,
    }
    ids = [it.id for it in ds.items]
    caps = [it.caption for it in ds.items]
    for k in (1, 5, 10, 50, 100):
        ref = [
            t.target_caption in {caps[j] for j in _order(q, src.targets, ids.index(t.source))[:k]}
            for t, q in zip(src.q_triplets, src.q, strict=True)
        ]
        assert res["recall"][f"R@{k}"] == pytest.approx(100 * np.mean(ref), abs=1e-3)
    assert 0 < res["recall"]["R@1"] < res["recall"]["R@10"] < 100
    assert set(res["categories"]) == set(CATS)


def _per_category_reference(ds, src, ks, by_caption, exclude_source):
    per_cat = {}
    for c in CATS:
        rows = [i for i, it in enumerate(ds.items) if it.category == c]
        ids = [ds.items[i].id for i in rows]
        hits = {k: [] for k in ks}
        for t, q in zip(src.q_triplets, src.q, strict=True):
            if t.category != c or (not by_caption and t.target not in ids):
                continue
            ex = ids.index(t.source) if exclude_source and t.source in ids else -1
            top = _order(q, src.targets[rows], ex)
            for k in ks:
                got = [ds.items[rows[j]] for j in top[:k]]
                ok = any(
                    g.caption == t.target_caption if by_caption else g.id == t.target for g in got
                )
                hits[k].append(ok)
        per_cat[c] = {f"R@{k}": 100 * np.mean(v) for k, v in hits.items()}
    return per_cat


def test_fashioniq_against_brute_force() -> None:
    ds, src, res = _run("fashioniq")
    ref = _per_category_reference(ds, src, (10, 50), by_caption=False, exclude_source=False)
    for c in CATS:
        for key in ("R@10", "R@50"):
            assert res["categories"][c][key] == pytest.approx(ref[c][key], abs=1e-3)
    r10 = np.mean([ref[c]["R@10"] for c in CATS])
    r50 = np.mean([ref[c]["R@50"] for c in CATS])
    assert res["recall"]["R@10"] == pytest.approx(r10, abs=1e-3)
    assert res["recall"]["avg"] == pytest.approx((r10 + r50) / 2, abs=1e-3)
    assert res["skipped"]["target_not_in_category_gallery"] == 1
    assert res["queries"] == 60


def test_synthetic_against_brute_force() -> None:
    ds, src, res = _run("synthetic", seed=3)
    ref = _per_category_reference(ds, src, (1, 10, 50), by_caption=True, exclude_source=True)
    for c in CATS:
        for key in ("R@1", "R@10", "R@50"):
            assert res["categories"][c][key] == pytest.approx(ref[c][key], abs=1e-3)
    assert res["recall"]["R@1"] == pytest.approx(np.mean([ref[c]["R@1"] for c in CATS]), abs=1e-3)
    # a 14-item gallery: every reachable caption is found by rank 50, but the dress query
    # whose target caption exists only in the shirt gallery never is
    assert res["categories"]["shirt"]["R@50"] == res["categories"]["toptee"]["R@50"] == 100.0
    assert res["categories"]["dress"]["R@50"] < 100.0


def test_crossmodal_against_brute_force() -> None:
    ds, src, res = _run("crossmodal")
    caps = [it.caption for it in ds.items]
    assert src.texts == list(dict.fromkeys(caps))
    for k in (1, 5, 10):
        t2i = [
            t in {caps[j] for j in _order(q, src.targets)[:k]}
            for t, q in zip(src.texts, src.t, strict=True)
        ]
        i2t = [
            caps[i] in {src.texts[j] for j in _order(src.targets[i], src.t)[:k]}
            for i in range(len(caps))
        ]
        assert res["recall"][f"t2i_R@{k}"] == pytest.approx(100 * np.mean(t2i), abs=1e-3)
        assert res["recall"][f"i2t_R@{k}"] == pytest.approx(100 * np.mean(i2t), abs=1e-3)


def _labels_reference(labels: list[str], q: np.ndarray, g: np.ndarray, ks):
    prec = {k: [] for k in ks}
    aps = []
    for i, lab in enumerate(labels):
        top = _order(q[i], g, i)
        rel = np.array([labels[j] == lab for j in top])
        if not rel.any():
            continue
        for k in ks:
            prec[k].append(rel[:k].mean())
        ranks = np.nonzero(rel)[0] + 1
        aps.append(np.mean(np.arange(1, len(ranks) + 1) / ranks))
    out = {f"P@{k}": 100 * np.mean(v) for k, v in prec.items()}
    out["mAP"] = 100 * np.mean(aps)
    return out, len(aps)


def test_image_to_image_against_brute_force() -> None:
    ds, src, res = _run("image_to_image")
    products = [
        f"product:{it.attributes['product']}" if it.attributes else f"caption:{it.caption}"
        for it in ds.items
    ]
    ref, n = _labels_reference(products, src.image_queries, src.targets, (1, 5, 10))
    cat_ref, _ = _labels_reference(
        [it.category for it in ds.items], src.image_queries, src.targets, (1, 5, 10)
    )
    assert res["queries"] == n
    for key, value in ref.items():
        assert res["recall"][key] == pytest.approx(value, abs=1e-3)
    for key, value in cat_ref.items():
        assert res["category_level"][key] == pytest.approx(value, abs=1e-3)


def test_bad_input_is_explained() -> None:
    ds = _dataset()
    with pytest.raises(ValueError, match="crossmodal, fashion200k, fashioniq"):
        evaluate_embeddings(RandomEmbeddings(ds), ds, protocol="cirr")
    test_split = RetrievalDataset(
        "fashioniq", "test", "/x", ds.items, [Triplet("dress-1", None, "t", "dress")], "fashioniq"
    )
    with pytest.raises(ValueError, match="inference only"):
        evaluate_embeddings(RandomEmbeddings(ds), test_split)
    no_captions = RetrievalDataset(
        "fashioniq", "val", "/x", [Item("a", "/a", "", "dress")], [], "fashioniq"
    )
    with pytest.raises(ValueError, match="no item captions"):
        evaluate_embeddings(RandomEmbeddings(no_captions), no_captions, protocol="crossmodal")


def test_registry_lists_all_protocols() -> None:
    assert EVAL_PROTOCOLS.names() == [
        "crossmodal",
        "fashion200k",
        "fashioniq",
        "image_to_image",
        "one_gallery",
        "synthetic",
    ]


class DirectEmbeddings:
    """Embeddings straight from the model on full image tensors (no feature reuse, no batches)."""

    def __init__(self, model, items) -> None:
        from PIL import Image

        tf = model.transform()
        self.model, self.items = model, items
        self.row = {it.id: i for i, it in enumerate(items)}
        pix = torch.stack([tf(Image.open(it.path).convert("RGB")) for it in items])
        with torch.no_grad():
            self.pix = pix
            self.targets = model.encode_target(images=pix)  # (N, D)
            self.image_queries = model.encode_query(images=pix)  # (N, D)

    def item_embeddings(self):
        return self.targets

    def query_embeddings(self, triplets):
        rows = [self.row[t.source] for t in triplets]
        with torch.no_grad():
            return self.model.encode_query(images=self.pix[rows], texts=[t.text for t in triplets])

    def text_embeddings(self, texts):
        with torch.no_grad():
            return self.model.encode_query(texts=list(texts))

    def image_query_embeddings(self):
        return self.image_queries


def test_evaluate_with_a_real_tiny_model(tmp_path) -> None:
    import json

    from PIL import Image

    from fashion_retrieval.evaluation import evaluate
    from fashion_retrieval.models import ModelConfig, RetrievalModel

    ds = _dataset(seed=5)
    rng = np.random.default_rng(0)
    items = []
    for it in ds.items:
        path = tmp_path / f"{it.id}.png"
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
        items.append(Item(it.id, str(path), it.caption, it.category, it.attributes))
    ds.items = items
    torch.manual_seed(0)
    config = ModelConfig(
        image_encoder="tiny_cnn",
        text_encoder="lstm",
        compositor="tirg",
        embed_dim=16,
        pretrained=False,
    )
    model = RetrievalModel(config, texts=ds.texts()).eval()
    direct = DirectEmbeddings(model, items)
    res = evaluate(model, ds, batch_size=7)  # backbone features computed by evaluate
    assert res["protocol"] == "synthetic" and res["model"] == "tirg(tiny_cnn+lstm)"
    assert set(res) >= {
        "dataset",
        "split",
        "protocol",
        "model",
        "recall",
        "categories",
        "queries",
        "skipped",
    }
    json.dumps(res)  # JSON-ready
    with torch.no_grad():
        feats = model.image_features(direct.pix)  # (N, Dimg)
    by_id = {it.id: row for it, row in zip(items, feats, strict=True)}
    assert evaluate(model, ds, features=by_id)["recall"] == pytest.approx(res["recall"])
    with pytest.raises(ValueError, match="aligned with the items"):
        evaluate(model, ds, features=feats[:3])
    for name in EVAL_PROTOCOLS.names():
        got = (
            res
            if name == "synthetic"
            else evaluate(model, ds, protocol=name, batch_size=5, features=feats)
        )
        ref = evaluate_embeddings(direct, ds, protocol=name, model=res["model"])
        ignore = ("recall", "categories", "category_level")
        assert {k: v for k, v in got.items() if k not in ignore} == {
            k: v for k, v in ref.items() if k not in ignore
        }
        assert got["categories"].keys() == ref["categories"].keys()
        for key, value in ref["recall"].items():
            assert got["recall"][key] == pytest.approx(value, abs=1e-2), (name, key)
