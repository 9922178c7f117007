"""The synthetic catalogue: vocabulary, rendering, captions, presets, writers, loader."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fashion_retrieval.data.synthetic import (
    CATEGORIES,
    COLORS,
    PATTERNS,
    build_catalog,
    load_synthetic,
    parse_caption,
    render_image,
    write_catalog,
)
from fashion_retrieval.data.synthetic.__main__ import main as cli_main
from fashion_retrieval.data.synthetic.attributes import (
    Product,
    attribute_values,
    caption_of,
    differing,
    random_attributes,
    random_style,
)
from fashion_retrieval.data.synthetic.catalog import PRESETS, caption
from fashion_retrieval.data.synthetic.grid import make_grid
from fashion_retrieval.data.synthetic.relative import _PATTERN_ADJ, _PATTERN_NOUN, _VALUE_PHRASES

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
SMALL = {"products": 20, "image_size": 64, "views": 2, "workers": 1}


def _product(category: str, seed: int = 0, number: int = 1) -> Product:
    rng = np.random.default_rng(seed)
    return Product(str(number), number, category, random_attributes(category, rng),
                   random_style(rng))


def test_vocabulary_sizes() -> None:
    assert len(CATEGORIES) >= 7 and len(COLORS) >= 12 and len(PATTERNS) >= 5
    assert {"dress", "skirt", "pants", "shorts", "shirt", "jacket"} <= set(CATEGORIES)
    for name, spec in CATEGORIES.items():
        assert spec.attributes, f"{name} has no attributes of its own"
    for words in [COLORS, PATTERNS] + [v for s in CATEGORIES.values() for v in s.attributes.values()]:
        assert all(" " not in w for w in words), "every attribute value must be one caption word"


def test_caption_determines_attributes_and_is_deterministic() -> None:
    rng = np.random.default_rng(3)
    for cat in CATEGORIES:
        for _ in range(20):
            attrs = random_attributes(cat, rng)
            text = caption_of(cat, attrs)
            assert parse_caption(text) == (cat, attrs)
            assert caption_of(cat, dict(attrs)) == text
    assert caption_of("shirt", {"color": "blue", "pattern": "striped", "sleeve": "long-sleeve",
                                "fit": "slim"}) == "blue striped long-sleeve slim shirt"
    with pytest.raises(ValueError, match="valid categories"):
        caption_of("hat", {})


def test_render_is_deterministic_and_views_differ() -> None:
    p = _product("dress")
    a = np.asarray(render_image(p, 0, 64, seed=1))
    b = np.asarray(render_image(p, 0, 64, seed=1))
    c = np.asarray(render_image(p, 1, 64, seed=1))
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 1.0
    with pytest.raises(ValueError, match="at least 16"):
        render_image(p, 0, 8)


def test_garment_covers_the_centre_and_colour_shows() -> None:
    for cat in CATEGORIES:
        p = Product("1", 1, cat, {**random_attributes(cat, np.random.default_rng(0)),
                                  "color": "red", "pattern": "solid"}, random_style(np.random.default_rng(0)))
        img = np.asarray(render_image(p, 0, 96)).astype(int)
        centre = img[40:56, 40:56].reshape(-1, 3).mean(0)
        assert centre[0] > centre[1] + 60 and centre[0] > centre[2] + 60, (cat, centre)


def test_patterns_are_visible() -> None:
    base = _product("shirt")
    stds = {}
    for pattern in PATTERNS:
        p = Product("1", 1, "shirt", {**base.attributes, "pattern": pattern, "color": "navy"},
                    base.style)
        stds[pattern] = np.asarray(render_image(p, 0, 96))[30:66, 30:66].std()
    assert all(stds[k] > stds["solid"] + 15 for k in PATTERNS if k != "solid"), stds


def _catalog_hash(seed: int) -> str:
    code = ("from fashion_retrieval.data.synthetic.catalog import build_catalog;"
            f"c=build_catalog(60,{seed},'hard');"
            "print(repr([(p.id,p.attributes,p.style) for p in c.products()]"
            "+[c.splits[s].pairs for s in c.splits]))")
    out = {}
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        text = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, check=True, cwd=Path(__file__).parents[1]).stdout
        out[hash_seed] = hashlib.md5(text.encode()).hexdigest()
    return out


def test_catalog_is_deterministic_across_processes() -> None:
    hashes = _catalog_hash(5)
    assert hashes["1"] == hashes["2"]


def _stated(text: str, attr: str, value: str) -> bool:
    """Whether ``text`` states ``value`` of ``attr`` explicitly."""
    words = f" {text.lower().replace(',', ' ')} "
    if attr == "color":
        return f" {value} " in words
    if attr == "pattern":
        options = _PATTERN_ADJ[value] + _PATTERN_NOUN.get(value, [])
        if value == "solid":
            options += ["no pattern", "without a pattern", "no "]
        return any(f" {o} " in words or f" {o}" in words for o in options)
    return any(p.split(" ", 1)[1] in words for p in _VALUE_PHRASES[value])


@pytest.mark.parametrize("preset", ["easy", "hard"])
def test_pairs_and_relative_captions(preset: str) -> None:
    cat = build_catalog(300, seed=2, preset=preset)
    lo, hi = PRESETS[preset].changes
    n_changed = []
    for split in cat.splits.values():
        by_id = {p.id: p for p in split.products}
        for pair in split.pairs:
            src, tgt = by_id[pair.source], by_id[pair.target]
            assert src.category == tgt.category
            changed = differing(src.attributes, tgt.attributes)
            assert lo <= len(changed) <= hi and tuple(changed) == pair.changed
            n_changed.append(len(changed))
            c1, c2 = pair.captions
            assert c1.strip() and c2.strip()
            joined = f"{c1} and {c2}"
            for attr in changed:
                assert _stated(joined, attr, tgt.attributes[attr]), (attr, tgt.attributes, joined)
            if "color" not in changed:  # unchanged attributes are never named
                assert not any(f" {c} " in f" {joined.lower().replace(',', ' ')} " for c in COLORS), joined
    assert len(n_changed) > 50
    if preset == "hard":
        assert set(n_changed) == {1, 2, 3}
    texts = {c for s in cat.splits.values() for p in s.pairs for c in p.captions}
    assert len(texts) > 150  # many templates, not a handful of fixed strings


def test_hard_preset_neither_modality_alone_identifies_the_target() -> None:
    # The size the comparison and the demo use: ambiguity grows with the catalogue.
    cat = build_catalog(1200, seed=1, preset="hard")
    split = cat.splits["train"]
    by_id = {p.id: p for p in split.products}
    text_ambiguous = source_misleads = near_duplicates = 0
    for pair in split.pairs:
        src, tgt = by_id[pair.source], by_id[pair.target]
        same_cat = [p for p in split.products if p.category == tgt.category]
        # text only: products other than the target's caption that fit every stated value
        fits = {caption(p) for p in same_cat
                if all(p.attributes[a] == tgt.attributes[a] for a in pair.changed)}
        text_ambiguous += len(fits - {caption(tgt)}) > 0
        d_target = len(differing(src.attributes, tgt.attributes))
        source_misleads += any(len(differing(src.attributes, p.attributes)) < d_target
                               or (p.id != src.id and caption(p) == caption(src))
                               for p in same_cat if caption(p) != caption(tgt))
        near_duplicates += any(len(differing(p.attributes, tgt.attributes)) == 1 for p in same_cat)
    n = len(split.pairs)
    assert near_duplicates == n
    assert text_ambiguous / n > 0.9
    assert source_misleads / n > 0.7


def _read(path: Path):
    return json.loads(path.read_text())


def test_fashioniq_layout_and_round_trip(tmp_path: Path) -> None:
    from fashion_retrieval.data.fashioniq import load_fashioniq

    summary = write_catalog(tmp_path, "fashioniq", preset="hard", **SMALL)
    assert summary["images"] == 40 and len(list((tmp_path / "images").glob("*.jpg"))) == 40
    meta = _read(tmp_path / "image_meta.json")
    assert set(meta) == {p.stem for p in (tmp_path / "images").glob("*.jpg")}
    assert {"caption", "category", "attributes", "product"} <= set(next(iter(meta.values())))
    products_by_split = {}
    for split in ("train", "val", "test"):
        ids, n_entries = [], 0
        for f in sorted((tmp_path / "image_splits").glob(f"split.*.{split}.json")):
            ids += _read(f)
        for f in sorted((tmp_path / "captions").glob(f"cap.*.{split}.json")):
            for e in _read(f):
                keys = {"candidate", "captions"} | ({"target"} if split != "test" else set())
                assert set(e) == keys and len(e["captions"]) == 2
                n_entries += 1
        products_by_split[split] = {meta[i]["product"] for i in ids}
        ds = load_fashioniq(tmp_path, split)
        assert len(ds.items) == len(ids) and len(ds.triplets) == n_entries
        assert sum(ds.skipped.values()) == 0
        assert all(t.target_caption == meta[t.target]["caption"] for t in ds.triplets if t.target)
    a, b, c = products_by_split.values()
    assert not (a & b or a & c or b & c)


def test_fashion200k_layout(tmp_path: Path) -> None:
    write_catalog(tmp_path, "fashion200k", products=40, image_size=64, views=2, workers=1)
    line_re = re.compile(r"^women/\w+/\w+/(\d+)/\1_\d\.jpeg\t\d\.\d{6}\t[a-z\- ]+$")
    captions, products = {}, {"train": set(), "test": set()}
    for f in sorted((tmp_path / "labels").glob("*_detect_all.txt")):
        group, split = re.match(r"(\w+?)_(train|test)_detect_all\.txt", f.name).groups()
        assert group in {"dress", "jacket", "pants", "skirt", "top"}
        for line in f.read_text().splitlines():
            assert line_re.match(line), f"{f}: {line!r}"
            path, _, text = line.split("\t")
            assert (tmp_path / path).is_file()
            captions[path] = text
            products[split].add(path.split("/")[3])
    assert products["train"] and products["test"] and not products["train"] & products["test"]
    queries = (tmp_path / "test_queries.txt").read_text().splitlines()
    assert queries
    for q in queries:
        src, tgt = q.split(" ")
        assert src.split("/")[3] in products["test"] and tgt.split("/")[3] in products["test"]
        a, b = captions[src].split(), captions[tgt].split()
        assert len(a) == len(b) and sum(x != y for x, y in zip(a, b, strict=False)) == 1, (a, b)
    from fashion_retrieval.data.fashion200k import load_fashion200k

    ds = load_fashion200k(tmp_path, "test")
    assert len(ds.items) == sum(1 for p in captions if p.split("/")[3] in products["test"])


def test_imagefolder_loads_with_datasets(tmp_path: Path) -> None:
    import datasets

    write_catalog(tmp_path, "imagefolder", **SMALL)
    ds = datasets.load_dataset("imagefolder", data_dir=str(tmp_path))
    assert set(ds) == {"train", "validation", "test"}
    assert sum(len(s) for s in ds.values()) == 40
    row = ds["train"][0]
    assert row["image"].size == (64, 64)
    assert {"caption", "category", "product", "color", "pattern", "sleeve"} <= set(row)
    assert parse_caption(row["caption"])[0] == row["category"]


def test_resume_skip_and_parameter_mismatch(tmp_path: Path) -> None:
    first = write_catalog(tmp_path, "fashioniq", **SMALL)
    assert first["rendered"] == 40
    assert write_catalog(tmp_path, "fashioniq", **SMALL)["skipped"] is True
    marker = tmp_path / ".synthetic.json"
    state = _read(marker)
    marker.write_text(json.dumps({**state, "complete": False}))  # as if interrupted
    victim = sorted((tmp_path / "images").glob("*.jpg"))[3]
    victim.unlink()
    assert write_catalog(tmp_path, "fashioniq", **SMALL)["rendered"] == 1
    with pytest.raises(ValueError, match="other parameters"):
        write_catalog(tmp_path, "fashioniq", **{**SMALL, "seed": 9})
    again = write_catalog(tmp_path, "fashioniq", **{**SMALL, "seed": 9}, overwrite=True)
    assert again["rendered"] == 40


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rc = cli_main(["--format", "fashioniq", "--out", str(tmp_path), "--products", "12",
                   "--image-size", "48", "--workers", "2", "--preset", "hard"])
    assert rc == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "images=36" in out[0]
    with pytest.raises(SystemExit):
        cli_main(["--format", "coco", "--out", str(tmp_path)])


def test_unknown_names_list_valid_ones() -> None:
    with pytest.raises(ValueError, match="valid presets: easy, hard"):
        build_catalog(10, preset="medium")
    with pytest.raises(ValueError, match="fashion200k"):
        write_catalog("/nonexistent", "coco")
    with pytest.raises(ValueError, match="valid categories"):
        build_catalog(10, categories=["hat"])


def test_load_synthetic_default_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FASHION_RETRIEVAL_HOME", str(tmp_path))
    ds = load_synthetic(split="val", products=20, image_size=64, views=2, workers=1)
    assert ds.name == "synthetic" and ds.protocol == "synthetic" and ds.split == "val"
    assert Path(ds.root) == tmp_path / "synthetic" / "easy-20-0-64px"
    assert ds.items and all(it.caption and it.attributes for it in ds.items)
    only = load_synthetic(split="train", products=20, image_size=64, views=2, workers=1,
                          categories=[ds.items[0].category])
    assert {it.category for it in only.items} == {ds.items[0].category}


def test_grid_image() -> None:
    img = make_grid("hard", rows=2, cell=48, products=60)
    assert img.size == (6 * 48, 2 * (48 + 16 + 34))
    assert attribute_values("dress")["length"] == ("mini", "knee-length", "maxi")
