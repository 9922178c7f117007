"""The stand-in generators of the ``realscale`` benchmark: every named image written except
the seeded missing ones, files distinct, and the real loaders count what was written."""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ is a folder of scripts beside the package
    sys.path.insert(0, str(ROOT))

from benchmarks.realscale_data import (  # noqa: E402
    choose_missing,
    fashioniq_expected_counts,
    fashioniq_image_ids,
    slice_fashioniq,
    standin_jpegs,
    write_fashion200k_standins,
    write_fashioniq_standins,
)
from fashion_retrieval.data.fashion200k import load_fashion200k, word_difference  # noqa: E402
from fashion_retrieval.data.fashioniq import load_fashioniq  # noqa: E402
from fashion_retrieval.data.images import load_image  # noqa: E402


def test_standins_are_distinct_jpegs_of_the_asked_size():
    files = list(standin_jpegs(50, seed=3, size=(48, 64)))
    assert len(set(files)) == 50
    img = load_image(files[0])
    assert img.size == (48, 64) and img.mode == "RGB"
    assert files == list(standin_jpegs(50, seed=3, size=(48, 64)))  # seeded
    with pytest.raises(ValueError, match="multiple of"):
        next(standin_jpegs(1, size=(50, 64)))


def test_missing_choice_is_seeded_and_sized():
    names = [f"id{i}" for i in range(100)]
    chosen = choose_missing(names, 7, seed=1)
    assert len(chosen) == 7 and chosen <= set(names)
    assert chosen == choose_missing(reversed(names), 7, seed=1)  # order of the input irrelevant
    assert chosen != choose_missing(names, 7, seed=2)
    with pytest.raises(ValueError, match="cannot leave out 101 of 100"):
        choose_missing(names, 101)


@pytest.fixture
def fiq_slice(fashioniq_annotations, tmp_path) -> Path:
    return slice_fashioniq(fashioniq_annotations, tmp_path / "slice", triplets=12, gallery=25)


def test_fashioniq_standins_cover_every_named_image_but_the_missing(fiq_slice, tmp_path):
    root = tmp_path / "fiq"
    written = write_fashioniq_standins(fiq_slice, root, missing=9, seed=0)
    named = fashioniq_image_ids(fiq_slice)
    assert written["named"] == named and len(written["missing"]) == 9
    on_disk = {p.stem for p in (root / "images").iterdir()}
    assert on_disk == set(named) - set(written["missing"])
    assert written["images"] == len(named) - 9
    # The slice keeps the files' own first entries, and every triplet's images are in its gallery.
    for cap in (fiq_slice / "captions").iterdir():
        entries = json.loads(cap.read_text())
        _, category, split, _ = cap.name.split(".")
        gallery = set(json.loads((fiq_slice / "image_splits" / f"split.{category}.{split}.json").read_text()))
        assert len(entries) == 12
        assert {e["candidate"] for e in entries} <= gallery


def test_fashioniq_loader_counts_match_the_written_files(fiq_slice, tmp_path):
    root = tmp_path / "fiq"
    absent = set(write_fashioniq_standins(fiq_slice, root, missing=30, seed=1)["missing"])
    for split in ("train", "val"):
        expected = fashioniq_expected_counts(root, split, absent)
        warns = expected["missing_images"] > 0
        with pytest.warns(UserWarning, match="skipped records") if warns else nullcontext():
            ds = load_fashioniq(root, split)
        assert len(ds.items) == expected["images"]
        assert len(ds.triplets) == expected["queries"]
        assert ds.meta["missing_images"] == expected["missing_images"]
    assert any(fashioniq_expected_counts(root, s, absent)["missing_images"] for s in ("train", "val"))


def test_fashion200k_standins_have_the_release_layout_and_counts(tmp_path):
    root = tmp_path / "f200k"
    out = write_fashion200k_standins(root, train=400, test=200, queries=150, missing=40, seed=0)
    assert (out["train_images"], out["test_images"], out["queries"]) == (400, 200, 150)
    assert out["missing_test"] > 0 and out["queries_with_missing"] > 0  # both splits lose some
    labels = sorted(p.name for p in (root / "labels").iterdir())
    assert labels == sorted(f"{c}_{s}_detect_all.txt" for c in ("dress", "jacket", "pants", "skirt", "top")
                            for s in ("train", "test"))
    lines = [ln for p in (root / "labels").glob("*_test_*") for ln in p.read_text().splitlines()]
    assert len(lines) == 200
    path, score, caption = lines[0].split("\t")
    assert path.startswith("women/") and path.endswith(".jpeg") and 0.5 <= float(score) <= 1.0
    assert sum(1 for p in root.glob("women/**/*.jpeg")) == 600 - 40 == out["images"]
    queries = (root / "test_queries.txt").read_text().splitlines()
    assert len(queries) == len(set(queries)) == 150
    with pytest.warns(UserWarning, match="query_missing_image"):
        test = load_fashion200k(root, "test")
    assert len(test.items) == 200 - out["missing_test"]
    assert len(test.triplets) == 150 - out["queries_with_missing"]
    assert test.skipped["query_missing_image"] == out["queries_with_missing"]
    for t in test.triplets:  # every query is one word apart: "replace X with Y"
        assert word_difference(*t.captions) is not None and t.text.startswith("replace ")
    with pytest.warns(UserWarning, match="missing_image"):
        train = load_fashion200k(root, "train")
    assert len(train.items) == 400 - (40 - out["missing_test"])
    assert len(train.triplets) > 0.5 * len(train.items)  # parent-caption siblings exist

