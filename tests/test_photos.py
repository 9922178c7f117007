"""A plain folder of photos as a catalogue, and the gallery store that updates it incrementally.

Scanning (nested folders, mixed formats, unreadable files listed once, stable ids); a
changed folder embeds only its new files; a damaged store means a full build; the stored
backbone features equal a fresh backbone pass; given features skip the backbone.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from _demo_data import tiny_model
from _photo_data import draw_photo, write_folder

from fashion_retrieval.search.gallery_store import STORE_ARRAYS, STORE_META, stored_stamps
from fashion_retrieval.search.retriever import Retriever
from fashion_retrieval.serving import photos
from fashion_retrieval.serving.photos import scan_photo_folder


def _ids(scan) -> list[str]:
    return [it.id for it in scan.items]


def test_scan_nested_mixed_formats_lists_unreadable_once(tmp_path) -> None:
    root = tmp_path / "shop"
    draw_photo(root / "a.jpg", 1)
    draw_photo(root / "tops" / "B.PNG", 2)
    draw_photo(root / "tops" / "sub" / "c.webp", 3)
    draw_photo(root / "dresses" / "d.JPEG", 4)
    draw_photo(root / ".hidden" / "x.jpg", 5)  # hidden folder: skipped
    draw_photo(root / ".thumb.jpg", 6)  # hidden file: skipped
    draw_photo(root / "index" / "e.jpg", 7)  # an index folder the project wrote: skipped
    (root / "index" / "index.faiss").write_bytes(b"x")
    (root / "notes.txt").write_text("not a photo, not listed")
    (root / "tops" / "broken.jpg").write_text("this is not a picture")
    (root / "empty.png").write_bytes(b"")
    good = (root / "a.jpg").read_bytes()
    (root / "dresses" / "cut.jpg").write_bytes(good[: len(good) // 2])
    lines: list[str] = []
    scan = scan_photo_folder(root, log=lines.append)
    assert _ids(scan) == ["a.jpg", "dresses/d.JPEG", "tops/B.PNG", "tops/sub/c.webp"]
    assert [it.category for it in scan.items] == ["photos", "dresses", "tops", "tops"]
    assert all(it.caption == "" and Path(it.path).is_absolute() for it in scan.items)
    assert all(Path(it.path) == (root / it.id).resolve() for it in scan.items)
    assert [p for p, _ in scan.unreadable] == ["dresses/cut.jpg", "empty.png", "tops/broken.jpg"]
    reasons = dict(scan.unreadable)
    assert "truncated" in reasons["dresses/cut.jpg"].lower() and "empty" in reasons["empty.png"]
    assert "not an image" in reasons["tops/broken.jpg"]
    assert len(lines) == 1 and all(p in lines[0] for p, _ in scan.unreadable)
    again = scan_photo_folder(str(root))  # ids and order are stable across scans
    assert again.items == scan.items and again.unreadable == scan.unreadable


def test_scan_errors_name_the_folder(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        scan_photo_folder(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=f"{empty}.* holds no photo"):
        scan_photo_folder(empty)
    (empty / "readme.txt").write_text("hello")
    with pytest.raises(ValueError, match="holds no photo"):
        scan_photo_folder(empty)
    (empty / "bad.png").write_text("hello")
    with pytest.raises(ValueError, match="holds no readable photo.*bad.png"):
        scan_photo_folder(empty)


def _counting_backbone(model, monkeypatch) -> list[int]:
    """Count the images that go through ``model.image_features`` (one entry per call)."""
    calls: list[int] = []
    real = model.image_features

    def spy(pixels):
        calls.append(len(pixels))
        return real(pixels)

    monkeypatch.setattr(model, "image_features", spy)
    return calls


def _all_hits(retriever: Retriever, queries: list[str]) -> list[list[tuple[str, float]]]:
    return [[(h.id, h.score) for h in retriever.search(image=q, k=len(retriever))] for q in queries]


def _same_hits(a, b) -> None:
    assert [[i for i, _ in row] for row in a] == [[i for i, _ in row] for row in b]
    assert np.allclose([[s for _, s in row] for row in a], [[s for _, s in row] for row in b], atol=1e-5)


def test_changed_folder_embeds_only_new_files(tmp_path, monkeypatch) -> None:
    root, index_dir = tmp_path / "shop", tmp_path / "idx"
    files = write_folder(root, 9)
    model = tiny_model("image_only")
    calls = _counting_backbone(model, monkeypatch)
    first = Retriever(model, scan_photo_folder(root).items, index_dir=index_dir, batch_size=4)
    assert sum(calls) == 9 and (index_dir / STORE_META).is_file()
    calls.clear()
    same = Retriever(model, scan_photo_folder(root).items, index_dir=index_dir)
    assert sum(calls) == 0 and same.index.ids == first.index.ids
    # The shop adds two photos and removes one.
    write_folder(root, 2, start=50)
    files[4].unlink()
    removed = files[4].relative_to(root).as_posix()
    scan = scan_photo_folder(root, known=stored_stamps(index_dir))
    assert len(scan.items) == 10 and removed not in _ids(scan)
    calls.clear()
    updated = Retriever(model, scan.items, index_dir=index_dir, batch_size=4)
    assert sum(calls) == 2  # only the two new photos went through the backbone
    assert updated.index.ids == _ids(scan)
    queries = [it.path for it in scan.items[:3]] + [str(files[4].with_suffix(".q.png"))]
    draw_photo(Path(queries[-1]), 4)  # the removed photo's picture as a query
    full = Retriever(tiny_model("image_only"), scan.items)  # a fresh full build
    got = _all_hits(updated, queries)
    _same_hits(got, _all_hits(full, queries))
    assert all(removed not in [i for i, _ in row] for row in got)
    calls.clear()  # the update was saved: the next start embeds nothing
    assert Retriever(model, scan.items, index_dir=index_dir).index.ids == _ids(scan)
    assert sum(calls) == 0


def test_changed_index_settings_rebuild_from_stored_rows(tmp_path, monkeypatch) -> None:
    root, index_dir = tmp_path / "shop", tmp_path / "idx"
    items = scan_photo_folder(write_folder(root, 12)[0].parent).items
    model = tiny_model("image_only")
    calls = _counting_backbone(model, monkeypatch)
    flat = Retriever(model, items, index_dir=index_dir, index_kind="flat")
    calls.clear()
    hnsw = Retriever(model, items, index_dir=index_dir, index_kind="hnsw")
    assert sum(calls) == 0 and hnsw.index.kind == "hnsw"
    queries = [it.path for it in items[:4]]
    _same_hits(_all_hits(hnsw, queries), _all_hits(flat, queries))


@pytest.mark.parametrize("damage", ["arrays", "meta", "missing"])
def test_damaged_store_means_a_full_build(tmp_path, monkeypatch, damage: str) -> None:
    root, index_dir = tmp_path / "shop", tmp_path / "idx"
    write_folder(root, 7)
    items = scan_photo_folder(root).items
    model = tiny_model("image_only")
    calls = _counting_backbone(model, monkeypatch)
    before = _all_hits(Retriever(model, items, index_dir=index_dir), [items[0].path])
    if damage == "arrays":
        data = (index_dir / STORE_ARRAYS).read_bytes()
        (index_dir / STORE_ARRAYS).write_bytes(data[: len(data) // 2])
    elif damage == "meta":
        (index_dir / STORE_META).write_text('{"version": 1, "ids": [')
    else:
        (index_dir / STORE_ARRAYS).unlink()
    calls.clear()
    again = Retriever(model, items, index_dir=index_dir)
    assert sum(calls) == 7  # everything embedded again
    _same_hits(_all_hits(again, [items[0].path]), before)
    calls.clear()
    Retriever(model, items, index_dir=index_dir)  # and saved whole again
    assert sum(calls) == 0


def test_stored_features_equal_a_fresh_backbone_pass(tmp_path) -> None:
    from fashion_retrieval.data.images import load_image

    root = tmp_path / "shop"
    write_folder(root, 6)
    items = scan_photo_folder(root).items
    model = tiny_model("tirg")
    saved = Retriever(model, items, index_dir=tmp_path / "idx")
    reopened = Retriever(model, items, index_dir=tmp_path / "idx")  # read from disk
    ids = [items[4].id, items[1].id]
    tf = model.transform(train=False)
    with torch.no_grad():
        fresh = model.image_features(torch.stack([tf(load_image(items[4].path)), tf(load_image(items[1].path))]))
    for r in (saved, reopened, Retriever(model, items)):  # in memory without a folder too
        got = r.stored_features(ids)
        assert got.dtype == torch.float32 and got.shape == (2, model.feature_dim)
        assert torch.allclose(got, fresh, rtol=2e-3, atol=2e-3)  # stored as float16
    with pytest.raises(KeyError, match="gone.jpg"):
        saved.stored_features([ids[0], "gone.jpg"])


def test_given_features_skip_the_backbone(tmp_path, monkeypatch) -> None:
    root = tmp_path / "shop"
    write_folder(root, 8)
    items = scan_photo_folder(root).items
    model = tiny_model("concat")
    full = Retriever(model, items)
    feats = full.stored_features([it.id for it in items]).double().float()
    calls = _counting_backbone(model, monkeypatch)
    given = Retriever(model, items, features=feats, index_dir=tmp_path / "idx")
    by_id = Retriever(model, items, features={it.id: f for it, f in zip(items, feats, strict=True)})
    assert sum(calls) == 0
    assert torch.equal(given.stored_features([items[3].id]), full.stored_features([items[3].id]))
    queries = [it.path for it in items[:3]]
    for r in (given, by_id):
        got = [[h.id for h in row] for row in r.search_batch(queries, ["red dress"] * 3, k=8)]
        want = [[h.id for h in row] for row in full.search_batch(queries, ["red dress"] * 3, k=8)]
        assert got == want
    with pytest.raises(ValueError, match=r"\(8, Dimg\)"):
        Retriever(model, items, features=feats[:5])


def test_known_stamps_skip_the_decode_check(tmp_path, monkeypatch) -> None:
    root = tmp_path / "shop"
    files = write_folder(root, 5)
    Retriever(tiny_model("image_only"), scan_photo_folder(root).items, index_dir=tmp_path / "idx")
    checked: list[str] = []
    real = photos.check_photo
    monkeypatch.setattr(photos, "check_photo", lambda p: checked.append(Path(p).name) or real(p))
    scan = scan_photo_folder(root, known=stored_stamps(tmp_path / "idx"))
    assert len(scan.items) == 5 and checked == []
    os.utime(files[2], ns=(1, 1))  # changed on disk: checked again
    scan_photo_folder(root, known=stored_stamps(tmp_path / "idx"))
    assert checked == [files[2].name]


def test_scan_cache_records_readable_photos(tmp_path, monkeypatch) -> None:
    root, cache = tmp_path / "shop", tmp_path / "cache" / "scan.json"
    files = write_folder(root, 4)
    (root / "bad.jpg").write_text("no picture")
    first = scan_photo_folder(root, cache=cache)
    checked: list[str] = []
    real = photos.check_photo
    monkeypatch.setattr(photos, "check_photo", lambda p: checked.append(Path(p).name) or real(p))
    again = scan_photo_folder(root, cache=cache)
    assert again.items == first.items and again.unreadable == first.unreadable
    assert checked == ["bad.jpg"]  # unreadable files are checked (and listed) every time
    files[1].write_bytes(b"")  # broken since: its stamp changed, so it is checked again
    third = scan_photo_folder(root, cache=cache)
    assert checked[1:] == ["bad.jpg", files[1].name]
    assert [p for p, _ in third.unreadable] == ["bad.jpg", files[1].relative_to(root).as_posix()]
    cache.write_text("{not json")  # a damaged cache only costs the decode checks
    assert scan_photo_folder(root, cache=cache).items == third.items


def test_an_index_saved_without_a_store_is_reused(tmp_path, monkeypatch) -> None:
    root, index_dir = tmp_path / "shop", tmp_path / "idx"
    write_folder(root, 6)
    items = scan_photo_folder(root).items
    model = tiny_model("image_only")
    full = Retriever(model, items, index_dir=index_dir)
    feats = full.stored_features([it.id for it in items])
    for name in (STORE_ARRAYS, STORE_META):  # as an older version (or a caller) saved it
        (index_dir / name).unlink()
    calls = _counting_backbone(model, monkeypatch)
    legacy = Retriever(model, items, index_dir=index_dir)
    assert sum(calls) == 0 and legacy.index.ids == full.index.ids
    with pytest.raises(KeyError, match="ready index without features"):
        legacy.stored_features([items[0].id])
    given = Retriever(model, items, index_dir=index_dir, features=feats)  # rows written now
    assert sum(calls) == 0 and (index_dir / STORE_META).is_file()
    assert torch.equal(Retriever(model, items, index_dir=index_dir).stored_features([items[2].id]),
                       given.stored_features([items[2].id]))
    assert sum(calls) == 0


def test_scan_cache_path_lives_under_the_home(tmp_path) -> None:
    from fashion_retrieval.serving.photos import scan_cache_path

    a = scan_cache_path(tmp_path / "shop", home=tmp_path / "home")
    assert a.parent == tmp_path / "home" / "photo_scans" and a.suffix == ".json"
    assert a == scan_cache_path(str(tmp_path / "shop") + "/", home=tmp_path / "home")
    assert a != scan_cache_path(tmp_path / "other", home=tmp_path / "home")


def test_open_catalogue_reads_a_photo_folder_and_decodes_it_once(tmp_path, monkeypatch) -> None:
    from fashion_retrieval.serving.catalogue import PHOTOS, open_catalogue

    root = tmp_path / "shop"
    write_folder(root, 6)
    (root / "bad.webp").write_bytes(b"RIFF....WEBP")
    lines: list[str] = []
    first = open_catalogue(root, log=lines.append)  # the layout is detected: a photo folder
    assert first.name == PHOTOS and first.items == scan_photo_folder(root).items
    assert [p for p, _ in first.unreadable] == ["bad.webp"] and len(lines) == 1
    checked: list[str] = []
    real = photos.check_photo
    monkeypatch.setattr(photos, "check_photo", lambda p: checked.append(Path(p).name) or real(p))
    again = open_catalogue(root, log=lines.append)
    assert again.items == first.items and checked == ["bad.webp"]
