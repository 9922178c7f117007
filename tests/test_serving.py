"""The serving layer: one catalogue rule, one index-folder rule, a query prepared once, one hit
rule shared by evaluation, the demo and the dashboard."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import pytest
import torch
from _demo_data import tiny_model, write_tiny_fashioniq

from fashion_retrieval.evaluation.hits import HIT_RULES, hit_rule, is_correct
from fashion_retrieval.paths import fashion_home, gallery_key, index_dir_for
from fashion_retrieval.search.query import CatalogueImage, QueryError
from fashion_retrieval.search.retriever import Retriever
from fashion_retrieval.serving.catalogue import PHOTOS, Catalogue, detect_layout, open_catalogue
from fashion_retrieval.serving.query import QueryPreparer


@pytest.fixture(scope="module")
def fiq(tmp_path_factory) -> Path:
    return write_tiny_fashioniq(tmp_path_factory.mktemp("fiq"))


@pytest.fixture(scope="module")
def catalogue(fiq) -> Catalogue:
    return open_catalogue(fiq, log=lambda _: None)


def test_layouts_are_detected_and_read(fiq, catalogue, tmp_path):
    assert detect_layout(fiq) == "fashioniq" and catalogue.name == "fashioniq"
    assert catalogue.split == "val" and catalogue.protocol == "fashioniq"  # the data set's own split
    assert len(catalogue.items) == 12 and len(catalogue.triplets) == 12
    photos = tmp_path / "shop"
    (photos / "dresses").mkdir(parents=True)
    for it in catalogue.items[:3]:
        shutil.copy(it.path, photos / "dresses" / Path(it.path).name)
    (photos / "broken.jpg").write_bytes(b"not a picture")
    said: list[str] = []
    shop = open_catalogue(photos, log=said.append)
    assert detect_layout(photos) == PHOTOS and shop.name == PHOTOS and shop.protocol is None
    assert sorted(it.id for it in shop.items) == sorted(f"dresses/{Path(i.path).name}" for i in catalogue.items[:3])
    assert [p for p, _ in shop.unreadable] == ["broken.jpg"] and len(said) == 1 and "broken.jpg" in said[0]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_catalogue(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="does not exist"):  # serving never renders a catalogue
        open_catalogue(tmp_path / "nowhere", dataset="synthetic")
    assert not (tmp_path / "nowhere").exists()


def test_a_rendered_synthetic_catalogue_is_read_back_not_rendered(tmp_path):
    from fashion_retrieval.data.synthetic import load_synthetic

    root = tmp_path / "syn"
    load_synthetic(root=root, split="val", preset="easy", products=14, seed=3)
    marker = root / ".synthetic.json"
    before = marker.stat().st_mtime_ns
    cat = open_catalogue(root, log=lambda _: None)
    assert detect_layout(root) == "synthetic" and cat.protocol == "synthetic" and cat.items
    assert marker.stat().st_mtime_ns == before  # same parameters: nothing rendered again


def test_one_index_folder_rule(tmp_path, monkeypatch):
    monkeypatch.setenv("FASHION_RETRIEVAL_HOME", str(tmp_path / "home"))
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    key = gallery_key("fashioniq:/data:val")
    assert index_dir_for(ckpt, key) == ckpt / "index" / key  # beside a writable checkpoint
    assert index_dir_for("someone/tirg", key) == fashion_home() / "indexes" / "someone--tirg" / key
    assert key != gallery_key("fashioniq:/data:test")  # one folder per gallery
    if os.geteuid() != 0:  # root writes anywhere; the read-only case needs a normal user
        ckpt.chmod(0o555)
        assert index_dir_for(ckpt, key).is_relative_to(fashion_home() / "indexes")


def test_hit_rule_per_protocol():
    assert set(HIT_RULES) == {"fashioniq", "fashion200k", "synthetic", "one_gallery"}
    assert not hit_rule("fashioniq").by_caption and hit_rule("fashion200k").by_caption
    assert is_correct("fashioniq", "t", "", {"t"}) and not is_correct("fashioniq", "x", "red", {"t"}, "red")
    assert is_correct("synthetic", "x", "red dress", {"t"}, "red dress")
    assert not is_correct("synthetic", "x", "red dress", {"t"}, "")
    assert not is_correct(None, "x", "red dress", {"t"}, "red dress")  # a photo folder: ids only


def test_demo_and_dashboard_mark_what_evaluation_counts(catalogue):
    """Recall@k from the protocol equals the share of queries whose top k the demo's and the
    dashboard's marks call correct (the same hit rule, the same ranking)."""
    from fashion_retrieval.dashboard.browse import is_correct as board_correct
    from fashion_retrieval.demo.handlers import DemoBackend
    from fashion_retrieval.evaluation import evaluate

    model = tiny_model("tirg", seed=3)
    data = catalogue.dataset
    for protocol, k in (("fashioniq", 10), ("synthetic", 1), ("synthetic", 10)):
        data = dataclasses.replace(data, protocol=protocol)
        cat = Catalogue.from_dataset(data)
        backend = DemoBackend({"tirg": Retriever(model, cat.items)}, cat, max_k=12)
        result = evaluate(model, data, protocol=protocol)
        found = 0
        for t in data.triplets:
            # the protocol ranks within the category gallery; the tiny catalogue has one category
            exclude = hit_rule(protocol).exclude_source
            hits = backend.models["tirg"].search(image=backend.by_id[t.source].path, text=t.text, k=k,
                                                 exclude_ids=[t.source] if exclude else [])
            marks = [board_correct(h.id, h.caption, t, protocol) for h in hits]
            truth = backend.truth_for(t.source, t.text)
            assert truth is not None and marks == [truth.is_hit(h.id, h.caption) for h in hits]
            found += any(marks)
        assert 100 * found / len(data.triplets) == pytest.approx(result["recall"][f"R@{k}"], abs=1e-3)  # rounded to 4 places


class _Counting:
    """Counts calls of a function it wraps."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *a, **kw):
        self.calls += 1
        return self.fn(*a, **kw)


def test_a_query_is_prepared_once_and_a_catalogue_pick_skips_decoding_and_backbone(catalogue, tmp_path, monkeypatch):
    import fashion_retrieval.data.images as images
    from fashion_retrieval.demo.handlers import DemoBackend

    models = {n: Retriever(tiny_model(n, seed=i), catalogue.items)
              for i, n in enumerate(("tirg", "text_only", "image_only"))}
    backend = DemoBackend(models, catalogue, max_k=10)
    decode = _Counting(images.load_image)
    monkeypatch.setattr(images, "load_image", decode)
    backbones = {n: _Counting(r.model.image_features) for n, r in models.items()}
    for n, r in models.items():
        monkeypatch.setattr(r.model, "image_features", backbones[n])

    picked = catalogue.items[4]
    copy = tmp_path / "copy.png"  # what Gradio hands over: a copy of the catalogue file
    shutil.copyfile(picked.path, copy)
    outcomes = backend.compose(list(models), str(copy), "  is   red ", 5).outcomes
    assert decode.calls == 0 and all(c.calls == 0 for c in backbones.values())
    assert all(o.k == 5 and len(o.rows) == 5 for o in outcomes)
    assert all(picked.id not in [row["id"] for row in o.rows] for o in outcomes)  # the pick is left out

    upload = tmp_path / "upload.png"
    from PIL import Image

    Image.open(picked.path).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(upload)
    backend.compose(list(models), str(upload), "is red", 5)
    assert decode.calls == 1  # decoded once for three models
    assert all(c.calls == 1 for c in backbones.values())  # one backbone pass per model


def test_a_catalogue_pick_answers_as_the_decoded_picture_does(catalogue):
    model = tiny_model("tirg", seed=5)
    retriever = Retriever(model, catalogue.items)
    preparer = QueryPreparer(catalogue, max_k=12)
    for it in catalogue.items[:4]:
        pick = preparer.prepare(it.path, "is blue", 6)
        assert isinstance(pick.image, CatalogueImage) and pick.source_id == it.id
        by_pick = retriever.search_queries([pick])[0]
        by_pixels = retriever.search(image=it.path, text="is blue", k=6, exclude_ids=[it.id])
        assert [h.id for h in by_pick] == [h.id for h in by_pixels]
        assert [h.score for h in by_pick] == pytest.approx([h.score for h in by_pixels], abs=2e-3)
    from fashion_retrieval.data.images import load_image

    stored = retriever.stored_features([catalogue.items[0].id])  # (1, Dimg)
    with torch.inference_mode():
        fresh = model.image_features(model.transform(train=False)(load_image(catalogue.items[0].path))[None])
    assert torch.allclose(stored, fresh, atol=1e-2)


def test_bad_input_is_refused_once_with_a_readable_reason(catalogue, tmp_path):
    preparer = QueryPreparer(catalogue, max_k=10)
    with pytest.raises(QueryError, match="K must be a whole number from 1 to 10"):
        preparer.prepare(None, "red", 11)
    with pytest.raises(QueryError, match="Give a picture, a description, or both"):
        preparer.prepare(None, "   ", 3)
    with pytest.raises(QueryError, match="characters long"):
        preparer.prepare(None, "red " * 200, 3)
    bad = tmp_path / "bad.png"
    bad.write_bytes(Path(catalogue.items[0].path).read_bytes()[::-1])  # same size, other bytes
    with pytest.raises(QueryError, match="Could not use the picture 'bad.png'"):
        preparer.prepare(str(bad), "red", 3)
    assert preparer.prepare(None, "red\n dress", 3).text == "red dress"


def test_the_model_fingerprint_is_kept_beside_the_index_while_the_checkpoint_files_stay(catalogue, tmp_path,
                                                                                         monkeypatch):
    """A warm start does not hash every weight again; a changed or damaged file means a fresh hash."""
    import json

    import fashion_retrieval.search.retriever as retriever_module
    from fashion_retrieval.checkpoints import load_model, save_checkpoint
    from fashion_retrieval.serving.models import FINGERPRINT_FILE, load_retriever

    ck = save_checkpoint(tiny_model("tirg", seed=0), tmp_path / "ck")
    hashed = _Counting(retriever_module.model_fingerprint)
    monkeypatch.setattr(retriever_module, "model_fingerprint", hashed)
    first = load_retriever(ck, catalogue, home=tmp_path / "home")
    memo = index_dir_for(ck, catalogue.key, tmp_path / "home") / FINGERPRINT_FILE
    assert hashed.calls == 1 and memo.is_file()
    assert json.loads(memo.read_text())["fingerprint"] == hashed.fn(load_model(str(ck)))

    again = load_retriever(ck, catalogue, home=tmp_path / "home")
    assert hashed.calls == 1  # read back, not hashed
    assert again._model_fp == first._model_fp and again.index.ids == first.index.ids

    save_checkpoint(tiny_model("tirg", seed=1), ck)  # other weights in the same folder
    changed = load_retriever(ck, catalogue, home=tmp_path / "home")
    assert hashed.calls == 2 and changed._model_fp != first._model_fp

    memo.write_text("{not json")
    load_retriever(ck, catalogue, home=tmp_path / "home")
    assert hashed.calls == 3 and json.loads(memo.read_text())["fingerprint"] == changed._model_fp
