"""Streaming: RetrievalDataset -> IterableDataset, local imagefolder streams, shuffling, sharding."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import write_standin_images
from PIL import Image

from fashion_retrieval.data import streaming
from fashion_retrieval.data.records import Item, RetrievalDataset, Triplet
from fashion_retrieval.data.streaming import (
    shard_for_process,
    shuffle,
    stream_dataset,
    to_iterable_dataset,
    with_image_transform,
)
from fashion_retrieval.data.transforms import ImageTransform


def _dataset(tmp_path, n=10, test=False) -> RetrievalDataset:
    ids = [f"p{i}" for i in range(n)]
    paths = write_standin_images(tmp_path / "images", ids, size=8)
    items = [
        Item(i, str(p), f"caption {i}", "dress" if k % 2 else "shirt")
        for k, (i, p) in enumerate(zip(ids, paths, strict=True))
    ]
    triplets = [
        Triplet(
            ids[k],
            None if test else ids[(k + 1) % n],
            f"make it {k}",
            items[k].category,
            (f"make it {k}",),
            f"caption {k}",
        )
        for k in range(n)
    ]
    return RetrievalDataset(
        "toy", "test" if test else "train", str(tmp_path), items, triplets, "synthetic"
    )


def test_triplet_stream_rows_and_images(tmp_path):
    data = _dataset(tmp_path)
    rows = list(to_iterable_dataset(data, num_shards=4))
    assert [r["source_id"] for r in rows] == [f"p{i}" for i in range(10)]
    first = rows[0]
    assert isinstance(first["source"], Image.Image) and isinstance(first["target"], Image.Image)
    assert (
        first["target_id"] == "p1"
        and first["text"] == "make it 0"
        and first["target_caption"] == "caption 0"
    )
    assert first["source"].getpixel((0, 0)) != first["target"].getpixel((0, 0))
    items = list(to_iterable_dataset(data, "items"))
    assert [r["id"] for r in items] == [it.id for it in data.items] and items[3][
        "category"
    ] == "dress"
    with pytest.raises(ValueError, match="triplets, items"):
        to_iterable_dataset(data, "pairs")


def test_test_split_targets_are_none_and_transform(tmp_path):
    data = _dataset(tmp_path, n=3, test=True)
    stream = with_image_transform(to_iterable_dataset(data), ImageTransform(16))
    rows = list(stream)
    assert rows[0]["target"] is None and rows[0]["target_id"] is None
    assert isinstance(rows[0]["source"], torch.Tensor) and rows[0]["source"].shape == (3, 16, 16)
    batch = next(
        iter(
            torch.utils.data.DataLoader(
                with_image_transform(to_iterable_dataset(data, "items"), ImageTransform(8)),
                batch_size=2,
            )
        )
    )
    assert batch["image"].shape == (2, 3, 8, 8) and batch["id"] == ["p0", "p1"]


@pytest.mark.parametrize(
    "num_shards", [4, 3]
)  # 3 shards do not divide over 2 ranks: per-example split
def test_shards_for_two_ranks_are_disjoint_and_cover(tmp_path, num_shards):
    data = _dataset(tmp_path, n=11)
    ds = shuffle(
        to_iterable_dataset(data, num_shards=num_shards, decode=False), seed=7, buffer_size=4
    )
    parts = [[r["source_id"] for r in shard_for_process(ds, rank, 2)] for rank in (0, 1)]
    assert not set(parts[0]) & set(parts[1])
    assert sorted(parts[0] + parts[1]) == sorted(t.source for t in data.triplets)
    assert len(parts[0]) + len(parts[1]) == 11 and parts[0] and parts[1]
    with pytest.raises(ValueError, match="rank"):
        shard_for_process(ds, 2, 2)


def test_shuffle_is_seeded_permutation(tmp_path):
    data = _dataset(tmp_path, n=20)
    base = to_iterable_dataset(data, num_shards=5, decode=False)
    order = lambda ds: [r["source_id"] for r in ds]  # noqa: E731
    a, b, c = order(shuffle(base, 1, 8)), order(shuffle(base, 1, 8)), order(shuffle(base, 2, 8))
    assert a == b and a != c and sorted(a) == sorted(order(base)) and a != order(base)


def _imagefolder(root, split_dirs=("train", "validation")):
    for split in split_dirs:
        ids = [f"{split}_{i}" for i in range(6)]
        write_standin_images(root / split, ids, size=8, ext=".png")
        rows = [
            {
                "file_name": f"{i}.png",
                "image_id": i,
                "caption": f"red dress {i}",
                "category": "dress",
            }
            for i in ids
        ]
        (root / split / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_stream_local_imagefolder(tmp_path):
    root = _imagefolder(tmp_path / "folder")
    train = stream_dataset(root, "train")
    rows = list(train)
    assert sorted(r["image_id"] for r in rows) == [f"train_{i}" for i in range(6)]
    assert isinstance(rows[0]["image"], Image.Image) and rows[0]["caption"].startswith("red dress")
    val = list(stream_dataset(str(root), "val"))  # 'val' finds the 'validation' folder
    assert {r["image_id"] for r in val} == {f"validation_{i}" for i in range(6)}
    parts = [
        {r["image_id"] for r in shard_for_process(stream_dataset(root, "train"), k, 2)}
        for k in (0, 1)
    ]
    assert not parts[0] & parts[1] and len(parts[0] | parts[1]) == 6
    with pytest.raises(ValueError):
        stream_dataset(root, "nosuchsplit")


def test_hub_repo_id_takes_the_same_path(tmp_path, monkeypatch):
    # Only the network is replaced: the repo id resolves to a local folder here.
    import datasets

    root = _imagefolder(tmp_path / "hub_copy", ("train",))
    real = datasets.load_dataset
    calls = []

    def fake_hub(path, **kwargs):
        calls.append((path, kwargs))
        return real(str(root) if path == "someone/fashion-catalogue" else path, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", fake_hub)
    ds = stream_dataset("someone/fashion-catalogue", "train", revision="main")
    assert calls == [
        ("someone/fashion-catalogue", {"split": "train", "streaming": True, "revision": "main"})
    ]
    assert isinstance(ds, datasets.IterableDataset) and len(list(ds)) == 6
    assert streaming.DEFAULT_NUM_SHARDS % 8 == 0
