"""The streaming input path trains the in-memory recipe, and its workers start under ``spawn``.

- per-sample draws on the stream: CLIP4Cir's random captions, a fresh Fashion200k sibling
  (its image read from its file), each the in-memory path's draw for (seed, step, index),
  with the in-memory path's pixels; a sibling draw the stream cannot serve is a ValueError;
- ``train_augment: false`` is honoured; batches are counted without reading an image, and
  the count holds for every process in every epoch; a resumed run sees the same pixels;
- the stream's callables pickle, and both image paths decode in a ``spawn`` worker with
  shared memory bounded (``devices.image_loader_options``).
"""

from __future__ import annotations

import itertools
import pickle
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from helpers import write_standin_images

from fashion_retrieval.data import streaming
from fashion_retrieval.data.fashion200k import generate_pairs, modification_text
from fashion_retrieval.data.records import Item, RetrievalDataset, Triplet
from fashion_retrieval.data.transforms import ImageTransform
from fashion_retrieval.training.config import TrainConfig
from fashion_retrieval.training.data import (
    ImageBatches,
    StepBatchSampler,
    build_sample_draw,
    join_captions,
    random_caption_forms,
)
from fashion_retrieval.training.stream import stream_batches
from fashion_retrieval.training.tasks import build_examples

SIZE = 8  # pixels of the stand-in images and of the transform
F200K_CAPTIONS = ["red floral dress", "blue floral dress", "green floral dress", "red striped dress",
                  "white slim pants", "black slim pants"]


class Model:
    """Stands in for ``RetrievalModel``: records which transform the stream asks for."""

    def __init__(self) -> None:
        self.asked: list[bool] = []

    def transform(self, train: bool = False) -> ImageTransform:
        self.asked.append(train)
        return ImageTransform(SIZE, train=train)


def _fashioniq(tmp_path: Path, n: int = 8) -> RetrievalDataset:
    """``n`` items and ``n`` triplets with two annotator captions each (joined text)."""
    ids = [f"p{i}" for i in range(n)]
    paths = write_standin_images(tmp_path / "fiq", ids, size=SIZE)
    items = [Item(i, str(p), f"caption {i}", "dress") for i, p in zip(ids, paths, strict=True)]
    triplets = []
    for k in range(n):
        captions = (f"is darker {k}.", f"has short sleeves {k}")
        triplets.append(Triplet(ids[k], ids[(k + 3) % n], join_captions(captions), "dress", captions))
    return RetrievalDataset("fashioniq", "train", str(tmp_path), items, triplets, "fashioniq")


def _fashion200k(tmp_path: Path, with_files: bool = True) -> RetrievalDataset:
    """Two images per caption, sibling captions one word apart; one frozen pair per source."""
    ids = [f"women/dresses/{c.replace(' ', '_')}/{j}.jpeg" for c in F200K_CAPTIONS for j in range(2)]
    paths = write_standin_images(tmp_path / "f200k", ids, size=SIZE) if with_files else [""] * len(ids)
    captions = [c for c in F200K_CAPTIONS for _ in range(2)]
    items = [Item(i, str(p), c, "dress") for i, p, c in zip(ids, paths, captions, strict=True)]
    return RetrievalDataset("fashion200k", "train", str(tmp_path), items, generate_pairs(items, seed=0),
                            "fashion200k")


def _run(ds: RetrievalDataset, num_workers: int = 0, **config) -> SimpleNamespace:
    cfg = TrainConfig(**{"dataset": ds.name, "batch_size": 4, "seed": 7, "streaming": True,
                         "num_workers": num_workers, **config})
    return SimpleNamespace(
        accelerator=SimpleNamespace(process_index=0, num_processes=1, device=torch.device("cpu"),
                                    gather=lambda t: t),
        config=cfg, examples=build_examples(ds, "composed"), train_set=ds, model=Model(),
        draw=build_sample_draw(ds, cfg),
    )


# ----------------------------------------------------------------- per-sample draws
def test_stream_draws_clip4cir_random_captions_per_sample(tmp_path):
    ds = _fashioniq(tmp_path)
    run = _run(ds, train_caption_mode="random", train_augment=False)
    assert run.draw is not None  # was None (logged) on the streaming path
    index = {(e.source, e.target): i for i, e in enumerate(run.examples)}
    texts: dict[str, set[str]] = {}
    for batch in itertools.islice(stream_batches(run, 0), 12):  # 6 epochs of 2 batches
        for src, tgt, text in zip(batch["source_ids"], batch["target_ids"], batch["text"], strict=True):
            i = index[(src, tgt)]
            assert text == run.draw(run.examples[i], batch["step"], i).text  # the in-memory draw
            assert text in random_caption_forms(run.examples[i].captions)
            texts.setdefault(src, set()).add(text)
    assert all(len(t) >= 2 for t in texts.values())  # not one frozen text per example
    assert not any(run.examples[0].text in t for t in texts.values())  # never the joined text


def test_stream_draws_a_fresh_fashion200k_sibling_with_the_in_memory_pixels(tmp_path):
    ds = _fashion200k(tmp_path)
    run = _run(ds)  # train_augment: random crops and flips, replayed from (seed, step, index)
    assert run.draw is not None
    caption = {it.id: it.caption for it in ds.items}
    index = {e.source: i for i, e in enumerate(run.examples)}  # one frozen pair per source
    memory = ImageBatches(run.examples, {it.id: it.path for it in ds.items}, ImageTransform(SIZE, train=True),
                          7, run.draw)
    frozen = {e.source: e.target for e in run.examples}
    moved = 0
    for batch in itertools.islice(stream_batches(run, 0), 9):
        indices = [index[s] for s in batch["source_ids"]]
        expected = memory[(batch["step"], indices)]
        assert batch["target_ids"] == expected["target_ids"] and batch["text"] == expected["text"]
        assert torch.equal(batch["source"], expected["source"]) and torch.equal(batch["target"], expected["target"])
        assert torch.equal(batch["label"], expected["label"])
        for src, tgt, text in zip(batch["source_ids"], batch["target_ids"], batch["text"], strict=True):
            assert text == modification_text(caption[src], caption[tgt])
            moved += tgt != frozen[src]
    assert moved > 0  # not the loader's frozen pairs


def test_a_sibling_draw_without_image_files_is_refused_at_setup(tmp_path):
    ds = _fashion200k(tmp_path, with_files=False)  # a published split loaded with images=False
    cfg = TrainConfig(dataset="fashion200k", streaming=True, batch_size=4)
    with pytest.raises(ValueError, match=r"images: true.*streaming: false.*resample_pairs: false"):
        build_sample_draw(ds, cfg)
    assert build_sample_draw(ds, TrainConfig(dataset="fashion200k", streaming=True, resample_pairs=False)) is None


def test_stream_honours_train_augment(tmp_path):
    run = _run(_fashioniq(tmp_path), train_augment=False)
    batch = next(stream_batches(run, 0))
    assert run.model.asked == [False] and batch["source"].shape == (4, 3, SIZE, SIZE)


# ----------------------------------------------------------------- counting, resuming
@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Path:
    """A published FashionIQ-layout catalogue (train split, two categories)."""
    from fashion_retrieval.data.publish import main
    from fashion_retrieval.data.synthetic.writers import write_catalog

    tmp = tmp_path_factory.mktemp("published")
    write_catalog(tmp / "fiq", "fashioniq", 24, seed=0, image_size=16, views=1, categories=["shirt", "skirt"])
    assert main(["--dataset", "fashioniq", "--root", str(tmp / "fiq"), "--out", str(tmp / "out"),
                 "--splits", "train"]) == 0
    return tmp / "out"


def test_published_stream_counts_without_images_and_resumes_exactly(published, monkeypatch):
    from fashion_retrieval.data import load_retrieval_dataset

    ds = load_retrieval_dataset("published", published, "train", images=False)
    real, calls = streaming.stream_published, []

    def recorded(*args, **kwargs):
        calls.append(kwargs.get("images", True))
        return real(*args, **kwargs)

    monkeypatch.setattr(streaming, "stream_published", recorded)
    run = _run(ds, batch_size=2)
    per_epoch = len(run.examples) // 2
    full = list(itertools.islice(stream_batches(run, 0), per_epoch + 2))
    assert calls[0] is False and calls.count(True) == 1  # the count read no image column
    assert [b["step"] for b in full] == list(range(per_epoch + 2))
    resumed = next(stream_batches(run, per_epoch + 1))  # epoch 1, its second batch
    same = full[per_epoch + 1]
    assert resumed["source_ids"] == same["source_ids"] and resumed["text"] == same["text"]
    assert torch.equal(resumed["source"], same["source"])  # the augmentation replays too


@pytest.mark.parametrize("num_shards", [4, 3])  # whole shards per rank / every other row
def test_every_rank_holds_the_counted_batches_in_every_epoch(tmp_path, num_shards):
    from fashion_retrieval.training.stream import batches_per_epoch, example_lookup

    ds = _fashioniq(tmp_path, n=11)
    lookup = example_lookup(build_examples(ds, "composed"))
    text_only = streaming.to_iterable_dataset(ds, num_shards=num_shards, decode=False).remove_columns(
        ["source", "target"])
    per_epoch = batches_per_epoch(text_only, lookup, 2, world_size=2)
    assert per_epoch == 2  # shards of 2, 3, 3, 3 rows: the two smallest hold 5 rows
    stream = streaming.shuffle(streaming.to_iterable_dataset(ds, num_shards=num_shards, decode=False), 3, 4)
    for epoch in range(6):
        stream.set_epoch(epoch)
        shares = [sum(1 for _ in streaming.shard_for_process(stream, rank, 2)) for rank in (0, 1)]
        assert min(shares) >= per_epoch * 2 and sum(shares) == 11
    with pytest.raises(ValueError, match="under one batch"):
        batches_per_epoch(text_only, lookup, 6, world_size=2)


# ----------------------------------------------------------------- spawn-safe workers
def test_stream_callables_pickle(tmp_path, published):
    from fashion_retrieval.data import load_retrieval_dataset

    data = _fashioniq(tmp_path, n=3)
    mapped = streaming.with_image_transform(streaming.to_iterable_dataset(data), ImageTransform(SIZE))
    row = next(iter(pickle.loads(pickle.dumps(mapped))))
    assert row["source"].shape == (3, SIZE, SIZE)
    shirts = load_retrieval_dataset("published", published, "train", images=False, categories=["shirt"])
    kept = pickle.loads(pickle.dumps(streaming.triplet_stream(shirts, decode=False)))
    assert {r["category"] for r in kept} == {"shirt"}


def test_stream_and_in_memory_loaders_start_spawn_workers(tmp_path):
    data = _fashioniq(tmp_path, n=4)
    mapped = streaming.with_image_transform(streaming.to_iterable_dataset(data, num_shards=1), ImageTransform(SIZE))
    rows = next(iter(torch.utils.data.DataLoader(mapped, batch_size=2, num_workers=1,
                                                 multiprocessing_context="spawn")))
    assert rows["source"].shape == (2, 3, SIZE, SIZE)
    from fashion_retrieval.devices import image_batch_bytes, image_loader_options
    from fashion_retrieval.training.stream import stream_loader

    ds = _fashion200k(tmp_path)
    run = _run(ds, num_workers=1)
    batch = next(iter(stream_loader(run, 0, multiprocessing_context="spawn")))
    assert batch["step"] == 0 and batch["target"].shape == (4, 3, SIZE, SIZE)
    memory = ImageBatches(run.examples, {it.id: it.path for it in ds.items}, ImageTransform(SIZE), 7, run.draw)
    options = image_loader_options("cpu", 1, image_batch_bytes(4, SIZE), multiprocessing_context="spawn")
    loader = torch.utils.data.DataLoader(memory, sampler=StepBatchSampler(len(run.examples), 4, 7),
                                         batch_size=None, **options)
    assert next(iter(loader))["source"].shape == (4, 3, SIZE, SIZE)


def test_shared_memory_bounds_the_prefetch(monkeypatch):
    from fashion_retrieval import devices as data

    mib = 2**20
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(data, "shared_memory_free", lambda: 4096 * mib)
    assert data.image_batch_bytes(128, 288) == 128 * 2 * 3 * 288 * 288 * 4  # CLIP4Cir stage 1: 255 MB
    assert data.image_loader_options("cpu", 4, 100 * mib)["prefetch_factor"] == 2  # 800 of 2048 MiB
    assert data.image_loader_options("cpu", 8, 100 * mib)["prefetch_factor"] == 2  # 1600 of 2048 MiB
    assert data.image_loader_options("cpu", 16, 100 * mib)["prefetch_factor"] == 1
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # four ranks share /dev/shm
    with pytest.raises(ValueError, match=r"num_workers=8.*--shm-size"):
        data.image_loader_options("cpu", 8, 100 * mib)
    assert "prefetch_factor" not in data.image_loader_options("cpu", 0, 100 * mib)  # no workers, no shm
    monkeypatch.setattr(data, "shared_memory_free", lambda: None)  # nothing to measure (macOS)
    assert data.image_loader_options("cpu", 8, 10**12)["prefetch_factor"] == 2
