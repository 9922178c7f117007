"""PCA / whitening post-processing: the fit itself, image-to-image evaluation, the Retriever."""

from __future__ import annotations

import functools
import warnings
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from fashion_retrieval.data.records import Item, RetrievalDataset
from fashion_retrieval.evaluation import evaluate_embeddings
from fashion_retrieval.evaluation.image_to_image import (
    PostprocessedEmbeddings,
    evaluate_image_to_image,
    image_to_image_protocol,
)
from fashion_retrieval.search.whitening import WHITENING_FILE, PCAWhitening, fit_postprocess


def _correlated(n: int, d: int, seed: int = 0) -> torch.Tensor:
    """``(n, d)`` rows with an uneven spectrum and a non-zero mean."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g) * torch.linspace(3.0, 0.3, d)
    return torch.randn(n, d, generator=g) @ mix.T + 2.0


# ---------------------------------------------------------------------------- the fit


@pytest.mark.parametrize("n, d, dim", [(300, 12, None), (30, 40, 12)])  # covariance / Gram path
def test_whitening_gives_identity_covariance_on_the_fitted_data(
    n: int, d: int, dim: int | None
) -> None:
    x = _correlated(n, d)
    w = PCAWhitening.fit(x, dim=dim, eps=0.0)
    rank = dim or d
    assert w.output_dim == rank and w.input_dim == d
    y = w.transform(x, normalize=False).double()  # (n, rank)
    assert y.mean(dim=0).abs().max() < 1e-4
    cov = torch.cov(y.T)
    assert torch.allclose(cov, torch.eye(rank, dtype=cov.dtype), atol=1e-3)


def test_pca_keeps_the_top_directions_and_their_variances() -> None:
    x = _correlated(400, 10)
    w = PCAWhitening.fit(x, dim=4, whiten=False)
    y = w.transform(x, normalize=False).double()  # (400, 4)
    ref = np.linalg.eigvalsh(np.cov(x.double().numpy(), rowvar=False))[::-1][:4]
    assert np.allclose(torch.var(y, dim=0).numpy(), ref, rtol=1e-4)
    assert torch.allclose(w.eigenvalues.double(), torch.from_numpy(ref.copy()), rtol=1e-4)
    full = PCAWhitening.fit(x, whiten=False).transform(x, normalize=False).double()
    xc = x.double() - x.double().mean(dim=0)
    assert torch.allclose(full @ full.T, xc @ xc.T, atol=1e-3)  # a rotation: distances kept


@pytest.mark.parametrize("mode", ["none", "pca", "whiten"])
def test_transform_is_l2_normalised(mode: str) -> None:
    x = _correlated(50, 8)
    w = fit_postprocess(mode, x, dim=5)
    y = w.transform(torch.randn(7, 8))
    assert y.shape == (7, 8 if mode == "none" else 5) and y.dtype == torch.float32
    assert torch.allclose(y.norm(dim=1), torch.ones(7), atol=1e-5)
    assert w.mode == mode


def test_shrinkage_moves_whitening_towards_pca() -> None:
    x = _correlated(80, 6)
    pca = PCAWhitening.fit(x, whiten=False).transform(x)
    full = PCAWhitening.fit(x, shrinkage=1.0, eps=0.0).transform(x)
    half = PCAWhitening.fit(x, shrinkage=0.5, eps=0.0).transform(x)
    assert torch.allclose(full, pca, atol=1e-5)  # equal scale on every direction
    assert not torch.allclose(half, pca, atol=1e-3)


def test_dim_is_capped_at_the_rank_with_a_warning() -> None:
    x = _correlated(6, 20)
    with pytest.warns(UserWarning, match="exceeds the rank"):
        w = PCAWhitening.fit(x, dim=10, whiten=False)
    assert w.output_dim == 5
    rank2 = torch.randn(30, 2) @ torch.randn(2, 9)  # only two directions of variance
    with pytest.warns(UserWarning, match=r"rank of the gallery \(2\)"):
        assert PCAWhitening.fit(rank2, dim=9).output_dim == 2


def test_whitening_every_direction_of_a_small_gallery_warns() -> None:
    """N items span N - 1 centred directions; whitened in full they form a regular simplex."""
    x = _correlated(8, 20)
    with pytest.warns(UserWarning, match="equally similar"):
        w = PCAWhitening.fit(x)
    y = w.transform(x)  # (8, 7)
    off_diagonal = (y @ y.T)[~torch.eye(8, dtype=torch.bool)]
    assert torch.allclose(off_diagonal, torch.full_like(off_diagonal, -1 / 7), atol=1e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        PCAWhitening.fit(x, dim=4)
        PCAWhitening.fit(x, whiten=False)


def test_state_dict_and_file_round_trip(tmp_path) -> None:
    x = _correlated(40, 12)
    q = torch.randn(5, 12)
    for w in (
        PCAWhitening.fit(x, dim=7, shrinkage=0.2),
        PCAWhitening.fit(x, whiten=False),
        fit_postprocess("none", x),
    ):
        again = PCAWhitening.from_state_dict(w.state_dict())
        assert torch.equal(again.transform(q), w.transform(q))
        path = w.save(tmp_path / f"{w.mode}.safetensors")
        loaded = PCAWhitening.load(path)
        assert torch.equal(loaded.transform(q), w.transform(q))
        assert loaded.describe() == w.describe()
    folder = tmp_path / "index"
    folder.mkdir()
    w.save(folder)
    assert (folder / WHITENING_FILE).is_file() and PCAWhitening.load(folder).mode == "none"


def test_bad_input_is_explained(tmp_path) -> None:
    x = _correlated(20, 5)
    bad = x.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match=r"NaN or infinite values in 1 rows, e.g. rows \[3\]"):
        PCAWhitening.fit(bad)
    with pytest.raises(ValueError, match="at least 2 gallery items, got 1"):
        PCAWhitening.fit(x[:1])
    with pytest.raises(ValueError, match="no variance"):
        PCAWhitening.fit(torch.ones(4, 5))
    with pytest.raises(ValueError, match="2-D"):
        PCAWhitening.fit(torch.ones(5))
    with pytest.raises(ValueError, match="shrinkage"):
        PCAWhitening.fit(x, shrinkage=1.5)
    with pytest.raises(ValueError, match="dim must be a positive integer"):
        PCAWhitening.fit(x, dim=0)
    w = PCAWhitening.fit(x)
    with pytest.raises(ValueError, match="dimension 4, the whiten post-processor was fitted on 5"):
        w.transform(torch.ones(2, 4))
    with pytest.raises(ValueError, match="NaN"):
        w.transform(bad)
    with pytest.raises(ValueError, match="none, pca, whiten"):
        fit_postprocess("zca", x)
    with pytest.raises(ValueError, match="missing whitening file"):
        PCAWhitening.load(tmp_path / "nothing.safetensors")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(ValueError, match="corrupt.safetensors: unreadable"):
        PCAWhitening.load(corrupt)
    with pytest.raises(ValueError, match="lacks"):
        PCAWhitening.from_state_dict({"mode": "pca", "mean": torch.zeros(5)})


# ---------------------------------------------------------------------------- evaluation


class Embeddings:
    """A fixed embedding source: raw (unnormalised is fine) gallery rows, queries = gallery."""

    def __init__(self, rows: np.ndarray) -> None:
        self.rows = torch.nn.functional.normalize(torch.as_tensor(rows).float(), dim=1)

    def item_embeddings(self) -> torch.Tensor:
        return self.rows

    image_query_embeddings = item_embeddings


def _products(n_products: int, per: int, cats=("dress", "shirt")) -> RetrievalDataset:
    items = [
        Item(f"{p}-{m}", f"/x/{p}-{m}.png", f"cap{p}", cats[p % len(cats)], {"product": str(p)})
        for p in range(n_products)
        for m in range(per)
    ]
    items.append(Item("lonely", "/x/l.png", "alone", "dress", {"product": "solo"}))
    return RetrievalDataset("toy", "test", "/x", items, [], "image_to_image", Counter())


def _numpy_postprocess(x: np.ndarray, mode: str, dim: int | None) -> np.ndarray:
    """An independent reference: eigen-decomposition of numpy's covariance."""
    x = x.astype(np.float64)
    if mode != "none":
        vals, vecs = np.linalg.eigh(np.cov(x, rowvar=False))
        vals, vecs = vals[::-1], vecs[:, ::-1]
        rank = min(x.shape[0] - 1, x.shape[1])
        keep = min(dim or rank, rank)
        x = (x - x.mean(axis=0)) @ vecs[:, :keep]
        if mode == "whiten":
            x = x / np.sqrt(vals[:keep] + 1e-6 * vals[0])
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _brute_force(emb: np.ndarray, labels: list[str], ks=(1, 5, 10)) -> dict[str, float]:
    """P@k and mAP (percent) with a full sort of every row; own item and lonely queries out."""
    prec, aps = {k: [] for k in ks}, []
    for i in range(len(labels)):
        others = [j for j in range(len(labels)) if j != i]
        sims = emb[others] @ emb[i]
        rel = np.array([labels[j] == labels[i] for j in others])[np.argsort(-sims)]
        if not rel.any():
            continue
        for k in ks:
            prec[k].append(rel[:k].mean())
        ranks = np.nonzero(rel)[0] + 1
        aps.append(np.mean(np.arange(1, len(ranks) + 1) / ranks))
    out = {f"P@{k}": 100 * float(np.mean(v)) for k, v in prec.items()}
    out["mAP"] = 100 * float(np.mean(aps))
    return out


def _assert_close(got: dict[str, float], ref: dict[str, float]) -> None:
    assert got.keys() == ref.keys()
    for key, value in ref.items():
        assert got[key] == pytest.approx(value, abs=1e-3), key


@pytest.mark.parametrize(
    "mode, dim, d", [("whiten", None, 8), ("whiten", 5, 8), ("pca", 3, 8), ("whiten", 10, 40)]
)
def test_postprocessed_evaluation_against_brute_force(mode: str, dim: int | None, d: int) -> None:
    ds = _products(9, 3)  # 28 items; d=40 exercises N < D
    rng = np.random.default_rng(d)
    rows = rng.standard_normal((len(ds.items), d)) * np.linspace(4, 0.5, d) + 1.0
    source = Embeddings(rows)
    res = evaluate_embeddings(PostprocessedEmbeddings(source, mode, dim=dim), ds)
    raw = source.rows.numpy().astype(np.float64)
    post = _numpy_postprocess(raw, mode, dim)
    products = [it.attributes["product"] for it in ds.items]
    cats = [it.category for it in ds.items]
    _assert_close(res["recall"], _brute_force(post, products))
    _assert_close(res["category_level"], _brute_force(post, cats))
    _assert_close(res["postprocess"]["raw"]["recall"], _brute_force(raw, products))
    _assert_close(res["postprocess"]["raw"]["category_level"], _brute_force(raw, cats))
    assert res["postprocess"]["mode"] == mode and res["postprocess"]["dim"] == post.shape[1]
    assert res["queries"] == 27 and res["skipped"] == {"no_same_product": 1}
    direct = image_to_image_protocol(source, ds, postprocess=mode, dim=dim)
    assert direct["recall"] == res["recall"] and direct["postprocess"] == res["postprocess"]


def test_no_postprocessing_reports_no_raw_block() -> None:
    ds = _products(5, 2)
    res = image_to_image_protocol(Embeddings(np.random.default_rng(0).normal(size=(11, 6))), ds)
    assert "postprocess" not in res


def test_whitening_removes_a_dominant_nuisance_direction() -> None:
    """Every item = product signal + a large shared offset + a large random shift along one
    direction (lighting, say). Raw cosine ranks by the nuisance; whitening shrinks it."""
    rng = np.random.default_rng(0)
    n_products, per, d = 12, 4, 32
    base = rng.standard_normal((n_products, d))
    u = rng.standard_normal(d)
    u /= np.linalg.norm(u)
    rows = np.stack(
        [
            base[p] + 0.5 * rng.standard_normal(d) + 20 * rng.standard_normal() * u + 10
            for p in range(n_products)
            for _ in range(per)
        ]
    )
    ds = _products(n_products, per)
    ds.items.pop()  # no lonely item here
    res = image_to_image_protocol(Embeddings(rows), ds, postprocess="whiten", dim=16)
    raw, whitened = res["postprocess"]["raw"]["recall"], res["recall"]
    pca = image_to_image_protocol(Embeddings(rows), ds, postprocess="pca", dim=16)["recall"]
    assert raw["mAP"] < 40 and whitened["mAP"] > 85 and whitened["P@1"] > 95
    assert whitened["mAP"] > pca["mAP"] + 30  # the rescaling, not the projection, does it


# ---------------------------------------------------------------------------- with a model


def _tiny_model(items: list[Item], seed: int = 0):
    from fashion_retrieval.models import ModelConfig, RetrievalModel

    torch.manual_seed(seed)
    config = ModelConfig(
        image_encoder="tiny_cnn",
        text_encoder="lstm",
        compositor="image_only",
        embed_dim=16,
        pretrained=False,
    )
    return RetrievalModel(config, texts=[it.caption for it in items]).eval()


@pytest.mark.parametrize("space", ["model", "backbone"])
def test_evaluate_image_to_image_on_a_model(space: str) -> None:
    ds = _products(6, 3)
    model = _tiny_model(ds.items)
    feats = torch.randn(len(ds.items), model.image_encoder.output_dim)  # precomputed backbone
    res = evaluate_image_to_image(model, ds, features=feats, space=space, dim=6)
    with torch.no_grad():
        raw = model.encode_target(image_features=feats) if space == "model" else feats
    raw = torch.nn.functional.normalize(raw.double(), dim=1).numpy()
    products = [it.attributes["product"] for it in ds.items]
    _assert_close(res["postprocess"]["raw"]["recall"], _brute_force(raw, products))
    _assert_close(res["recall"], _brute_force(_numpy_postprocess(raw, "whiten", 6), products))
    assert res["protocol"] == "image_to_image" and res["model"].endswith(
        "[backbone]" if space == "backbone" else ")"
    )
    with pytest.raises(ValueError, match="model, backbone"):
        evaluate_image_to_image(model, ds, features=feats, space="pixels")


# ---------------------------------------------------------------------------- the Retriever


def _image_items(folder, n: int, start: int = 0) -> list[Item]:
    """``n`` small generated images that differ in colour and in a band's width."""
    rng = np.random.default_rng(start)
    items = []
    for i in range(start, start + n):
        arr = rng.integers(0, 256, size=(48, 48, 3), dtype=np.uint8)
        arr[:, : 6 + i % 30] = (41 * i) % 256
        path = folder / f"img{i}.png"
        Image.fromarray(arr).save(path)
        items.append(Item(f"item{i}", str(path), f"item {i}", ("dress", "shirt")[i % 2]))
    return items


def _retriever_brute_force(retriever, model, items, query_path) -> list[str]:
    """Ranking by the post-processor applied to directly computed embeddings."""
    from fashion_retrieval.data.images import load_image

    tf = model.transform()
    with torch.no_grad():
        pix = torch.stack([tf(load_image(it.path)) for it in items])  # (N, 3, S, S)
        gallery = retriever.postprocessor.transform(model.encode_target(images=pix))
        query = retriever.postprocessor.transform(
            model.encode_query(images=tf(load_image(query_path))[None])
        )
    order = torch.argsort((query @ gallery.T)[0], descending=True)
    return [items[i].id for i in order]


def test_retriever_whitens_gallery_and_queries(tmp_path, monkeypatch) -> None:
    from fashion_retrieval.search.retriever import Retriever

    items = _image_items(tmp_path, 14)
    model = _tiny_model(items, seed=1)
    plain = Retriever(model, items, index_kind="flat")
    assert plain.postprocessor is None and plain.index.dim == 16
    saved = functools.partial(
        Retriever, model, items, index_kind="flat", postprocess="whiten", postprocess_dim=6
    )
    white = saved(index_dir=tmp_path / "idx")
    assert white.index.dim == 6 and white.postprocessor.mode == "whiten"
    assert (tmp_path / "idx" / WHITENING_FILE).is_file()
    assert white.fingerprint() != plain.fingerprint()
    hits = white.search(image=items[3].path, k=14)
    assert [h.id for h in hits] == _retriever_brute_force(white, model, items, items[3].path)
    assert hits[0].id == "item3" and hits[0].score == pytest.approx(1.0, abs=1e-4)

    def no_rebuild(self, items):
        raise AssertionError("the saved index and whitening should have been reused")

    with monkeypatch.context() as m:
        m.setattr(Retriever, "_build", no_rebuild)
        again = saved(index_dir=tmp_path / "idx")
    assert [h.id for h in again.search(image=items[3].path, k=5)] == [h.id for h in hits[:5]]
    (tmp_path / "idx" / WHITENING_FILE).unlink()  # lost: fitted and indexed again
    rebuilt = saved(index_dir=tmp_path / "idx")
    assert rebuilt.postprocessor is not None and (tmp_path / "idx" / WHITENING_FILE).is_file()
    other_dim = Retriever(model, items, postprocess="whiten", postprocess_dim=4)
    assert other_dim.fingerprint() != white.fingerprint() and other_dim.index.dim == 4


def test_retriever_adds_items_and_takes_a_fitted_postprocessor(tmp_path) -> None:
    from fashion_retrieval.search.index import GalleryIndex
    from fashion_retrieval.search.retriever import Retriever

    items = _image_items(tmp_path, 12)
    model = _tiny_model(items, seed=2)
    retriever = Retriever(model, items, postprocess="pca", postprocess_dim=5, index_kind="flat")
    fitted = retriever.postprocessor
    new = _image_items(tmp_path, 3, start=50)
    retriever.add_items(new)
    assert retriever.postprocessor is fitted  # new items use the gallery's fit, not a refit
    assert retriever.search(image=new[1].path, k=1)[0].id == "item51"
    given = Retriever(model, items, postprocess=fitted, index_kind="flat")
    assert given.index.dim == 5
    assert given.search(image=items[0].path, k=3)[0].id == "item0"
    with pytest.raises(ValueError, match="none, pca, whiten"):
        Retriever(model, items, postprocess="zca")
    index = GalleryIndex.build(np.eye(12, 5, dtype=np.float32), [it.id for it in items], "flat")
    with pytest.raises(ValueError, match="pass the fitted PCAWhitening"):
        Retriever(model, items, index=index, postprocess="whiten")
    with pytest.raises(
        ValueError, match="the index has dimension 5, the post-processor outputs 16"
    ):
        Retriever(model, items, index=index, postprocess=fit_postprocess("none", torch.ones(2, 16)))
