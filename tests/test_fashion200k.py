"""The Fashion200k loader on a hand-written label tree, bad lines, and TIRG's pairing rule."""

from __future__ import annotations

import itertools
import logging
import random

import pytest
from helpers import write_standin_images

from fashion_retrieval.data import load_retrieval_dataset
from fashion_retrieval.data.fashion200k import (
    clean_caption,
    generate_pairs,
    load_fashion200k,
    modification_text,
)
from fashion_retrieval.data.records import Item

# These tests exercise the project's "normalize" clean-up (lowercase, no punctuation);
# tests/test_published_tirg.py covers TIRG's, the default.
NORMALIZE = "normalize"
DRESS = "women/dresses/casual_and_day_dresses/{0}/{0}_0.jpeg"
PANTS = "women/pants/wide-leg_pants/{0}/{0}_0.jpeg"
TRAIN_LINES = {
    "dress": [
        (DRESS.format(1), "0.91", "Blue Floral Dress."),
        (DRESS.format(2), "0.8", "red  floral dress"),
        (DRESS.format(3), "0.7", "RED floral, dress!"),
        (DRESS.format(4), "0.7", "green maxi gown"),
        (DRESS.format(7), "0.7", "red blue midi"),
        (DRESS.format(8), "0.7", "blue red midi"),  # a permutation of 7: no word to replace
    ],
    "pants": [
        (PANTS.format(5), "0.9", "black slim pants"),
        (PANTS.format(6), "0.9", "white slim pants"),
    ],
}


def _write(root, split, lines_by_cat, extra=b""):
    (root / "labels").mkdir(parents=True, exist_ok=True)
    paths = []
    for cat, lines in lines_by_cat.items():
        body = "".join("\t".join(f) + "\n" for f in lines).encode() + (
            extra if cat == "dress" else b""
        )
        (root / "labels" / f"{cat}_{split}_detect_all.txt").write_bytes(body)
        paths += [f[0] for f in lines]
    write_standin_images(root, paths, size=8)
    return root


def test_captions_pairs_and_texts(tmp_path):
    root = _write(tmp_path, "train", TRAIN_LINES)
    ds = load_fashion200k(root, "train", caption_cleanup=NORMALIZE)
    by_id = ds.item_by_id()
    assert ds.protocol == "fashion200k" and len(ds.items) == 8 and not ds.skipped
    assert by_id[DRESS.format(1)].caption == "blue floral dress"
    assert by_id[DRESS.format(3)].caption == "red floral dress"
    assert by_id[PANTS.format(5)].category == "pants"
    assert by_id[DRESS.format(1)].path == str(root / DRESS.format(1))
    got = {t.source: t for t in ds.triplets}
    assert set(got) == {DRESS.format(i) for i in (1, 2, 3)} | {PANTS.format(5), PANTS.format(6)}
    assert got[DRESS.format(1)].text == "replace blue with red"
    assert got[DRESS.format(1)].target in {DRESS.format(2), DRESS.format(3)}
    assert got[DRESS.format(1)].target_caption == "red floral dress"
    assert (
        got[DRESS.format(2)].target == DRESS.format(1)
        and got[DRESS.format(2)].text == "replace red with blue"
    )
    assert got[PANTS.format(6)].text == "replace white with black"
    assert got[PANTS.format(6)].captions == ("white slim pants", "black slim pants")


def test_pairs_are_deterministic_and_category_filter(tmp_path):
    root = _write(tmp_path, "train", TRAIN_LINES)
    a = load_fashion200k(root, "train", seed=3, caption_cleanup=NORMALIZE).triplets
    assert a == load_fashion200k(root, "train", seed=3, caption_cleanup=NORMALIZE).triplets
    targets = {load_fashion200k(root, "train", seed=s, caption_cleanup=NORMALIZE).triplets[0].target for s in range(20)}
    assert targets == {DRESS.format(2), DRESS.format(3)}  # the seed picks among equal captions
    pants = load_retrieval_dataset("fashion200k", root, "train", categories=["pants"], caption_cleanup=NORMALIZE)
    assert [it.category for it in pants.items] == ["pants", "pants"] and len(pants.triplets) == 2
    with pytest.raises(ValueError, match="skirt.*available: \\['dress', 'pants'\\]"):
        load_fashion200k(root, "train", ["skirt"])


def test_generate_pairs_matches_brute_force():
    rng = random.Random(0)
    vocab = ["red", "blue", "black", "long", "short", "floral", "dress", "top", "slim", "red"]
    items = [
        Item(f"img{i}", f"/x/{i}.jpg", " ".join(rng.sample(vocab, rng.randint(2, 4))), "c")
        for i in range(300)
    ]
    caption = {it.id: it.caption for it in items}

    def parents(c):
        w = c.split()
        return {" ".join(w[:i] + w[i + 1 :]) for i in range(len(w))}

    def valid(a, b):
        return a != b and bool(parents(a) & parents(b)) and modification_text(a, b) is not None

    expected_sources = {a.id for a in items if any(valid(a.caption, b.caption) for b in items)}
    triplets = generate_pairs(items, seed=1)
    assert {t.source for t in triplets} == expected_sources and len(triplets) == len(
        expected_sources
    )
    for t in triplets:
        src, tgt = caption[t.source], caption[t.target]
        assert valid(src, tgt) and t.target_caption == tgt
        x, y = t.text.removeprefix("replace ").split(" with ")
        assert (
            x in src.split() and x not in tgt.split() and y in tgt.split() and y not in src.split()
        )


def test_bad_lines_are_reported_with_file_and_line(tmp_path, caplog):
    extra = (
        b"only/two\tfields\n"
        b"women/a.jpeg\tnot-a-score\tred dress\n"
        b"women/b.jpeg\t0.5\t ...!\n"
        + f"{DRESS.format(1)}\t0.5\tduplicate line\n".encode()
        + b"women/c.jpeg\t0.5\tcaf\xe9 dress\n"
        + b"\n"
    )
    root = _write(tmp_path, "train", TRAIN_LINES, extra=extra)
    with (
        caplog.at_level(logging.WARNING, logger="fashion_retrieval.data"),
        pytest.warns(UserWarning, match="skipped records"),
    ):
        ds = load_fashion200k(root, "train", caption_cleanup=NORMALIZE)
    assert ds.skipped == {
        "bad_fields": 1,
        "bad_score": 1,
        "empty_caption": 1,
        "duplicate": 1,
        "bad_encoding": 1,
    }
    assert len(ds.items) == 8
    label = root / "labels" / "dress_train_detect_all.txt"
    for lineno in (7, 8, 9, 10, 11):
        assert f"{label}:{lineno}" in caplog.text


def test_missing_images_skipped_and_counted(tmp_path, recwarn):
    root = _write(tmp_path, "train", TRAIN_LINES)
    (root / DRESS.format(2)).unlink()
    (root / PANTS.format(6)).unlink()
    ds = load_fashion200k(root, "train", caption_cleanup=NORMALIZE)
    assert ds.skipped == {"missing_image": 2} and ds.meta["missing_images"] == 2
    assert len(ds.items) == 6 and {t.source for t in ds.triplets} == {
        DRESS.format(1),
        DRESS.format(3),
    }
    assert [str(w.message) for w in recwarn if "skipped" in str(w.message)] == [
        f"Fashion200k train at {root}: skipped records: missing_image=2"
    ]
    assert len(load_fashion200k(root, "train", check_images=False, caption_cleanup=NORMALIZE).items) == 8


def test_test_queries_file_and_generated_queries(tmp_path):
    root = _write(tmp_path, "test", TRAIN_LINES)
    with pytest.warns(UserWarning, match="test_queries.txt not found"):
        generated = load_fashion200k(root, "test", caption_cleanup=NORMALIZE)
    assert generated.meta["queries_generated"] and len(generated.triplets) == 5
    (root / DRESS.format(3)).unlink()
    (root / "test_queries.txt").write_text(
        f"{DRESS.format(1)} {DRESS.format(2)}\n"
        f"{PANTS.format(5)} {PANTS.format(6)}\n"
        f"{DRESS.format(1)} women/unknown.jpeg\n"
        f"{DRESS.format(3)} {DRESS.format(1)}\n"
        f"{DRESS.format(7)} {DRESS.format(8)}\n"
        "one-field-only\n"
    )
    with pytest.warns(UserWarning, match="skipped records"):
        ds = load_fashion200k(root, "test", caption_cleanup=NORMALIZE)
    assert [(t.source, t.target, t.text) for t in ds.triplets] == [
        (DRESS.format(1), DRESS.format(2), "replace blue with red"),
        (PANTS.format(5), PANTS.format(6), "replace black with white"),
    ]
    assert ds.triplets[0].target_caption == "red floral dress"
    assert ds.skipped == {
        "missing_image": 1,
        "unknown_query_path": 1,
        "query_missing_image": 1,
        "no_word_difference": 1,
        "bad_fields": 1,
    }
    assert not ds.meta["queries_generated"]


def test_structural_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="labels"):
        load_fashion200k(tmp_path, "train")
    _write(tmp_path, "train", TRAIN_LINES)
    with pytest.raises(FileNotFoundError, match="_test_detect_all.txt"):
        load_fashion200k(tmp_path, "test")
    with pytest.raises(ValueError, match="split"):
        load_fashion200k(tmp_path, "val")


@pytest.mark.parametrize(
    "raw, clean",
    [("  Blue  Floral-Print DRESS. ", "blue floralprint dress"), ("women's top!", "womens top")],
)
def test_clean_caption(raw, clean):
    assert clean_caption(raw) == clean


def test_modification_text_rules():
    assert modification_text("red floral dress", "blue floral dress") == "replace red with blue"
    assert modification_text("red dress", "dress red") is None
    for a, b in itertools.permutations(["a b c", "a b d", "x b c"], 2):
        assert modification_text(a, b).startswith("replace ")
