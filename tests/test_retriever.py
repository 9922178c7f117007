"""Retriever with a real tiny model on generated images: hits, order, modes, persistence."""

from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image

from fashion_retrieval.data.records import Item
from fashion_retrieval.models import ModelConfig, RetrievalModel
from fashion_retrieval.search.index import META_FILE
from fashion_retrieval.search.query import NO_QUERY, QueryError
from fashion_retrieval.search.retriever import Hit, Retriever

COLOURS = ["red", "blue", "green", "black", "white", "yellow"]


def _write_items(folder, n: int, start: int = 0) -> list[Item]:
    rng = np.random.default_rng(start)
    items = []
    for i in range(start, start + n):
        arr = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
        arr[:, : 8 + i % 40] = (37 * i) % 256  # a band that differs per image
        path = folder / f"img{i}.png"
        Image.fromarray(arr).save(path)
        colour, cat = COLOURS[i % len(COLOURS)], ("dress", "shirt")[i % 2]
        items.append(Item(f"item{i}", str(path), f"{colour} {cat}", cat))
    return items


@pytest.fixture(scope="module")
def gallery(tmp_path_factory) -> list[Item]:
    return _write_items(tmp_path_factory.mktemp("gallery"), 18)


def _model(compositor: str, items: list[Item], seed: int = 0) -> RetrievalModel:
    torch.manual_seed(seed)
    config = ModelConfig(
        image_encoder="tiny_cnn",
        text_encoder="lstm",
        compositor=compositor,
        embed_dim=32,
        pretrained=False,
    )
    return RetrievalModel(config, texts=[it.caption for it in items]).eval()


@pytest.fixture(scope="module")
def tirg(gallery) -> Retriever:
    return Retriever(_model("tirg", gallery), gallery, batch_size=5)


@pytest.fixture(scope="module")
def image_only(gallery) -> Retriever:
    return Retriever(_model("image_only", gallery), gallery, batch_size=7)


def _brute_force(model, items, image_path=None, text=None) -> tuple[list[str], np.ndarray]:
    """Full similarity against every gallery image, computed straight from the model."""
    tf = model.transform()
    with torch.no_grad():
        pix = torch.stack([tf(Image.open(it.path).convert("RGB")) for it in items])
        targets = model.encode_target(images=pix)  # (N, D)
        q_img = tf(Image.open(image_path).convert("RGB"))[None] if image_path else None
        query = model.encode_query(images=q_img, texts=[text] if text else None)  # (1, D)
    sims = (query @ targets.T)[0].numpy()
    order = np.argsort(-sims)
    return [items[i].id for i in order], sims[order]


def _check_hits(hits: list[Hit], k: int) -> None:
    assert len(hits) == k
    assert [h.rank for h in hits] == list(range(1, k + 1))
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("mode", ["text", "image", "both"])
def test_search_matches_brute_force(tirg, gallery, mode: str) -> None:
    image = gallery[4].path if mode != "text" else None
    text = "blue dress" if mode != "image" else None
    hits = tirg.search(image=image, text=text, k=6)
    _check_hits(hits, 6)
    ids, scores = _brute_force(tirg.model, gallery, image, text)
    assert [h.id for h in hits] == ids[:6]
    assert np.allclose([h.score for h in hits], scores[:6], atol=1e-4)
    by_id = {it.id: it for it in gallery}
    assert all(h.caption == by_id[h.id].caption and h.path == by_id[h.id].path for h in hits)


def test_image_query_finds_itself_from_every_kind_of_source(image_only, gallery) -> None:
    path = gallery[3].path
    pil = Image.open(path).convert("RGB")
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    for src in (path, pil, buf.getvalue(), np.asarray(pil)):
        hits = image_only.search(image=src, k=3)
        assert hits[0].id == "item3" and hits[0].score == pytest.approx(1.0, abs=1e-4)
    hits = image_only.search(image=path, k=3, exclude_ids=["item3"])
    assert "item3" not in [h.id for h in hits] and len(hits) == 3


def test_search_batch_mixes_modes_and_agrees_with_search(tirg, gallery) -> None:
    images = [gallery[0].path, None, gallery[2].path]
    texts = [None, "red shirt", "  green dress "]
    batch = tirg.search_batch(images, texts, k=4, exclude_ids=[["item0"], [], []])
    assert len(batch) == 3
    for img, txt, hits, ex in zip(images, texts, batch, (["item0"], [], []), strict=True):
        single = tirg.search(image=img, text=txt, k=4, exclude_ids=ex)
        assert [h.id for h in hits] == [h.id for h in single]
        assert np.allclose([h.score for h in hits], [h.score for h in single], atol=1e-5)
    assert "item0" not in [h.id for h in batch[0]]


def test_bad_input_gives_clear_errors(tirg, gallery, tmp_path) -> None:
    """One rule set (``search.query``) and one error type, the serving layer's too: a
    non-string text is a QueryError (it was a TypeError), and a k above the gallery size is
    clipped to it (the demo says so in a note; only its own max_k is an error)."""
    with pytest.raises(QueryError, match=NO_QUERY):
        tirg.search()
    with pytest.raises(QueryError, match=NO_QUERY):
        tirg.search(text="   ")
    with pytest.raises(QueryError, match="K must be a whole number of at least 1, not 0"):
        tirg.search(text="red", k=0)
    with pytest.raises(QueryError, match="whole number"):
        tirg.search(text="red", k="3")
    assert len(tirg.search(text="red", k=1000)) == len(gallery)
    assert tirg.search(text="red", k=3.0) == tirg.search(text=" red\n", k=3)  # a whole float; spaces collapsed
    with pytest.raises(QueryError, match="The text must be a string, not int"):
        tirg.search(text=3)
    with pytest.raises(QueryError, match="keep it under 500"):
        tirg.search(text="red " * 200)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(QueryError, match="Could not use the picture 'broken.jpg'"):
        tirg.search(image=str(bad), text="red")
    with pytest.raises(QueryError, match="'missing.png': file not found"):
        tirg.search(image=str(tmp_path / "missing.png"))
    with pytest.raises(QueryError, match="2 images but 1 texts"):
        tirg.search_batch([gallery[0].path] * 2, ["a"])
    with pytest.raises(QueryError, match="Query 1: The text must be a string"):
        tirg.search_batch(None, ["red", 5])
    assert tirg.search(text="an unknownword dress", k=2)  # out-of-vocabulary words are fine
    with pytest.raises(ValueError, match="empty"):
        Retriever(tirg.model, [])
    with pytest.raises(ValueError, match="unique"):
        Retriever(tirg.model, [gallery[0], gallery[0]])


def test_index_is_saved_reused_and_rebuilt_on_change(gallery, tmp_path, monkeypatch) -> None:
    items = _write_items(tmp_path, 6, start=100)
    model = _model("image_only", items)
    first = Retriever(model, items, index_dir=tmp_path / "idx")
    assert (tmp_path / "idx" / META_FILE).is_file()

    def no_rebuild(self, items):
        raise AssertionError("the saved index should have been reused")

    with monkeypatch.context() as m:
        m.setattr(Retriever, "_build", no_rebuild)
        again = Retriever(model, items, index_dir=tmp_path / "idx")
    assert again.index.ids == first.index.ids
    assert again.search(image=items[2].path, k=1)[0].id == items[2].id
    fp = first.fingerprint()
    os.utime(items[0].path, ns=(1, 1))  # the gallery changed on disk
    rebuilt = Retriever(model, items, index_dir=tmp_path / "idx")
    assert rebuilt.fingerprint() != fp and rebuilt.index.fingerprint == rebuilt.fingerprint()
    with torch.no_grad():
        model.image_proj.weight.mul_(2.0)  # the model changed
    assert (
        Retriever(model, items, index_dir=tmp_path / "idx").fingerprint() != rebuilt.fingerprint()
    )


def test_add_items_then_find_them(gallery, tmp_path) -> None:
    items = _write_items(tmp_path, 5, start=200)
    retriever = Retriever(_model("image_only", items), items, index_kind="flat")
    new = _write_items(tmp_path, 3, start=300)
    retriever.add_items(new)
    assert len(retriever) == 8 and len(retriever.index) == 8
    assert retriever.search(image=new[1].path, k=2)[0].id == "item301"
    with pytest.raises(ValueError, match="unique"):
        retriever.add_items([new[0]])
    assert len(retriever.index) == 8


def test_concurrent_searches_agree_with_sequential(tirg, gallery) -> None:
    queries = [(gallery[i].path, COLOURS[i % 6] + " dress") for i in range(8)]
    expected = [[h.id for h in tirg.search(image=p, text=t, k=5)] for p, t in queries]
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(
            pool.map(lambda q: [h.id for h in tirg.search(image=q[0], text=q[1], k=5)], queries)
        )
    assert got == expected


def test_from_checkpoint_keeps_index_beside_it(gallery, tmp_path) -> None:
    from fashion_retrieval.checkpoints import save_checkpoint

    model = _model("tirg", gallery, seed=3)
    ckpt = save_checkpoint(model, tmp_path / "ckpt")
    retriever = Retriever.from_checkpoint(ckpt, gallery[:8])
    assert (ckpt / "index" / META_FILE).is_file()
    direct = Retriever(model, gallery[:8])
    a = retriever.search(image=gallery[1].path, text="red dress", k=3)
    b = direct.search(image=gallery[1].path, text="red dress", k=3)
    assert [h.id for h in a] == [h.id for h in b]


def test_a_refinement_turn_ranks_the_history_policys_query_and_leaves_out_what_was_shown(tirg, gallery) -> None:
    """search_session: the current picture with every request so far, one query by the
    policy (brute force: the normalised weighted mean), results already shown left out."""
    import torch.nn.functional as F

    from fashion_retrieval.models.history import EARLIER_WEIGHT

    picture, texts = gallery[3].path, ["blue dress", "make it green", "shirt"]
    targets = tirg.embed_items(gallery)  # (N, D)
    turns = tirg.encode_queries([picture] * 3, texts)  # (3, D)
    for policy, query in (("last_turn", turns[-1]),
                          ("history", F.normalize(turns[-1] + EARLIER_WEIGHT * turns[:2].mean(0), dim=0))):
        order = [gallery[i].id for i in torch.argsort(targets @ query, descending=True).tolist()]
        hits = tirg.search_session(picture, texts, k=5, policy=policy)
        _check_hits(hits, 5)
        assert [h.id for h in hits] == order[:5]
        shown = order[:4]
        again = tirg.search_session(picture, texts, k=5, policy=policy, exclude_ids=shown)
        assert [h.id for h in again] == [i for i in order if i not in shown][:5]
    one = tirg.search_session(picture, texts[:1], k=5, policy="history")  # one turn: both policies agree
    assert [h.id for h in one] == [h.id for h in tirg.search_session(picture, texts[:1], k=5, policy="last_turn")]
    with pytest.raises(ValueError, match="unknown history policy 'newest'"):
        tirg.search_session(picture, texts, policy="newest")
    with pytest.raises(QueryError, match="Every turn of a refinement needs words"):
        tirg.search_session(picture, ["red", "  "])
    with pytest.raises(QueryError, match="needs a picture"):
        tirg.search_session(None, ["red"])
