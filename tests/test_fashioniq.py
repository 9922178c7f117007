"""The FashionIQ loader on the real annotation files (stand-in images) and on bad input."""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path

import pytest
from helpers import link_fashioniq_annotations, write_standin_images

from fashion_retrieval.data import load_retrieval_dataset
from fashion_retrieval.data.fashioniq import load_fashioniq

# (triplets, gallery images) per category and split: the README table of the release.
COUNTS = {
    ("dress", "train"): (5985, 11452),
    ("dress", "val"): (2017, 3817),
    ("dress", "test"): (2024, 3818),
    ("shirt", "train"): (5988, 19036),
    ("shirt", "val"): (2038, 6346),
    ("shirt", "test"): (2038, 6346),
    ("toptee", "train"): (6027, 16121),
    ("toptee", "val"): (1961, 5373),
    ("toptee", "test"): (2056, 5374),
}


@pytest.mark.parametrize("category, split", sorted(COUNTS))
def test_real_annotation_counts_without_image_check(fashioniq_annotations, category, split):
    ds = load_fashioniq(fashioniq_annotations, split, [category], check_images=False)
    assert (len(ds.triplets), len(ds.items)) == COUNTS[category, split]
    assert ds.protocol == "fashioniq" and ds.split == split
    assert {it.category for it in ds.items} == {category}
    assert all((t.target is None) == (split == "test") for t in ds.triplets)
    assert " and " in ds.triplets[0].text or len(ds.triplets[0].captions) == 1
    assert ds.items[0].path.endswith(f"images/{ds.items[0].id}.jpg")


@pytest.fixture
def val_root(fashioniq_annotations, tmp_path) -> Path:
    """A FashionIQ root: the real annotations plus a hard-linked stand-in image per val id."""
    root = link_fashioniq_annotations(fashioniq_annotations, tmp_path / "fiq")
    ids = set()
    for cat in ("dress", "shirt", "toptee"):
        ids.update(json.loads((root / "image_splits" / f"split.{cat}.val.json").read_text()))
    ids = sorted(ids)
    # Most as .jpg, a few as .png: both are found.
    write_standin_images(root / "images", ids[:-50], size=8, ext=".jpg", link=True)
    write_standin_images(root / "images", ids[-50:], size=8, ext=".png", link=True)
    return root


def test_val_counts_with_standin_images(val_root, recwarn):
    ds = load_fashioniq(val_root, "val")
    # Nothing is missing or skipped: the release's three annotations with one empty caption
    # are kept (with the other caption) and counted apart, not reported as skipped.
    reports = [str(w.message) for w in recwarn if "skipped records" in str(w.message)]
    assert reports == [] and ds.meta["one_caption_empty"] == 3
    assert ds.meta["categories"] == ["dress", "shirt", "toptee"]
    for cat in ("dress", "shirt", "toptee"):
        assert sum(t.category == cat for t in ds.triplets) == COUNTS[cat, "val"][0]
        assert sum(it.category == cat for it in ds.items) == COUNTS[cat, "val"][1]
    assert ds.skipped == {}
    assert any(it.path.endswith(".png") for it in ds.items)
    assert all(os.path.isfile(it.path) for it in ds.items[:100])


def test_missing_images_are_skipped_and_counted_exactly(val_root, recwarn):
    caps = json.loads((val_root / "captions" / "cap.dress.val.json").read_text())
    gone = {caps[i]["candidate"] for i in range(0, 40, 3)} | {caps[5]["target"]}
    for image_id in gone:
        (val_root / "images" / f"{image_id}.jpg").unlink(missing_ok=True)
        (val_root / "images" / f"{image_id}.png").unlink(missing_ok=True)
    hit = sum(1 for c in caps if c["candidate"] in gone or c["target"] in gone)
    ds = load_fashioniq(val_root, "val", ["dress"])
    assert ds.skipped["missing_image"] == hit
    assert ds.skipped["missing_gallery_image"] == len(gone)
    assert len(ds.triplets) == 2017 - hit and len(ds.items) == 3817 - len(gone)
    assert ds.meta["missing_images"] == len(gone)
    summaries = [w for w in recwarn if "skipped records" in str(w.message)]
    assert len(summaries) == 1 and f"missing_image={hit}" in str(summaries[0].message)
    fast = load_fashioniq(val_root, "val", ["dress"], check_images=False)
    assert len(fast.triplets) == 2017 and fast.skipped["missing_image"] == 0


def test_separate_mode_and_registry(fashioniq_annotations):
    sep = load_fashioniq(fashioniq_annotations, "val", ["shirt"], "separate", check_images=False)
    assert len(sep.triplets) == 2 * 2038 - 1  # one empty caption in the release
    assert all(" and " not in t.text or t.text in t.captions for t in sep.triplets)
    joined = load_retrieval_dataset(
        "fashioniq", fashioniq_annotations, "val", categories=["shirt"], check_images=False
    )
    first = joined.triplets[0]
    assert first.text == " and ".join(first.captions)
    with pytest.raises(ValueError, match="caption_mode"):
        load_fashioniq(fashioniq_annotations, "val", caption_mode="both")
    with pytest.raises(ValueError, match="split"):
        load_fashioniq(fashioniq_annotations, "dev")
    with pytest.raises(FileNotFoundError, match="skirt"):
        load_fashioniq(fashioniq_annotations, "val", ["skirt"])


def _write_layout(root: Path, caps, split_ids, category="dress", split="val") -> Path:
    (root / "captions").mkdir(parents=True, exist_ok=True)
    (root / "image_splits").mkdir(parents=True, exist_ok=True)
    for path, obj in (
        (root / "captions" / f"cap.{category}.{split}.json", caps),
        (root / "image_splits" / f"split.{category}.{split}.json", split_ids),
    ):
        path.write_bytes(obj if isinstance(obj, bytes) else json.dumps(obj).encode())
    return root


def test_bad_entries_are_logged_with_entry_and_counted(tmp_path, caplog):
    caps = [
        {"candidate": "a", "target": "b", "captions": ["is red", "longer"]},
        {"candidate": "a", "captions": ["no target"]},
        "not an object",
        {"candidate": "b", "target": "a", "captions": ["", "  "]},
        {"candidate": "a", "target": "zz", "captions": ["outside the split"]},
        {"candidate": "b", "target": "c", "captions": ["", "is blue"]},
    ]
    root = _write_layout(tmp_path, caps, ["a", "b", "c", "b", 7])
    write_standin_images(root / "images", ["a", "b", "c"], size=8, ext=".jpg")
    (root / "image_meta.json").write_text(
        json.dumps({"b": {"caption": "red dress", "attributes": {"color": "red"}}})
    )
    with (
        caplog.at_level(logging.WARNING, logger="fashion_retrieval.data"),
        pytest.warns(UserWarning, match="skipped"),
    ):
        ds = load_fashioniq(root, "val")
    assert [(t.source, t.target, t.text) for t in ds.triplets] == [
        ("a", "b", "is red and longer"),
        ("b", "c", "is blue"),
    ]
    assert ds.triplets[0].target_caption == "red dress"
    assert ds.skipped == {
        "bad_entry": 3,
        "duplicate": 1,
        "no_caption": 1,
        "not_in_split": 1,
    }
    assert ds.meta["one_caption_empty"] == 1  # ("b", "c"): kept with "is blue", not skipped
    assert [it.id for it in ds.items] == ["a", "b", "c"]
    assert (
        ds.item_by_id()["b"].attributes == {"color": "red"}
        and ds.item_by_id()["b"].caption == "red dress"
    )
    text = caplog.text
    assert "cap.dress.val.json entry 1" in text and "missing key" in text
    assert "split.dress.val.json entry 4" in text


@pytest.mark.parametrize(
    "caps, match",
    [
        ({"candidate": "a"}, "expected a JSON list"),
        (b'[{"candidate": \n', "invalid JSON at line 2"),
        ('["caf\u00e9"]'.encode("latin-1"), "not UTF-8"),
    ],
)
def test_unreadable_json_raises_naming_the_file(tmp_path, caps, match):
    root = _write_layout(tmp_path, caps, ["a"])
    with pytest.raises(ValueError, match=match) as info:
        load_fashioniq(root, "val", check_images=False)
    assert "cap.dress.val.json" in str(info.value)


def test_missing_folders_raise(tmp_path):
    with pytest.raises(FileNotFoundError, match="captions"):
        load_fashioniq(tmp_path, "val")
    root = _write_layout(tmp_path, [], ["a"], split="train")
    with pytest.raises(FileNotFoundError, match="cap.<category>.val.json"):
        load_fashioniq(root, "val")
    (root / "image_splits" / "split.dress.train.json").unlink()
    with pytest.raises(FileNotFoundError, match="split.dress.train.json"):
        load_fashioniq(root, "train")


def test_inspect_cli_prints_counts(val_root, capsys):
    import subprocess
    import sys

    from fashion_retrieval.data.inspect import main

    for image_id in json.loads((val_root / "image_splits" / "split.dress.val.json").read_text())[
        :5
    ]:
        (val_root / "images" / f"{image_id}.jpg").unlink(missing_ok=True)
        (val_root / "images" / f"{image_id}.png").unlink(missing_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["--dataset", "fashioniq", "--root", str(val_root), "--split", "val"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["images"] == 3817 + 6346 + 5373 - 5 and out["missing_images"] == 5
    assert out["categories"]["shirt"] == {"images": 6346, "queries": 2038}
    assert out["categories"]["dress"]["images"] == 3812
    assert out["queries"] == sum(c["queries"] for c in out["categories"].values())
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fashion_retrieval.data.inspect",
            "--dataset",
            "fashioniq",
            "--root",
            str(val_root),
            "--split",
            "test",
            "--categories",
            "toptee",
            "--no-check-images",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert json.loads(proc.stdout)["categories"] == {"toptee": {"images": 5374, "queries": 2056}}
    assert main(["--dataset", "fashion200k", "--root", str(val_root), "--split", "train"]) == 2
    assert "labels folder not found" in capsys.readouterr().err


def test_registry_names():
    from fashion_retrieval.data import DATASETS

    assert {"fashion200k", "fashioniq", "synthetic"} <= set(DATASETS.names())
    with pytest.raises(ValueError, match="fashion200k, fashioniq"):
        load_retrieval_dataset("imagenet", "/nowhere", "val")
