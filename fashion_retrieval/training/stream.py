"""The streaming input path: a ``datasets`` IterableDataset, shuffled, sharded once per process.

The stream is the train split's triplets: read from the parquet shards of a published data set
(``--dataset published --data-root FOLDER_OR_REPO_ID``, a ``--out`` folder or a Hub repo, the
same code) or made from the image files of any other data set; the rows are the same.

The same recipe as the in-memory path (``training/data.py``): each row stands for one
composed example of ``run.examples`` (found by source, target and text), the main process
groups rows into micro-batches, so every example has its (micro-step, index), and the run's
``SampleDraw`` redraws it exactly as the in-memory path would (random captions, a fresh
Fashion200k sibling). Workers then decode the batch from the rows' own images (the drawn
sibling from its file) under the in-memory path's per-batch RNG and ``train_augment``
transform, so a resumed run sees the same pixels. The rows are read in the main process
(no image is decoded there); everything handed to workers is picklable (``spawn``,
``forkserver``) and the batches in flight are bounded (``image_loader_options``).

The stream is not passed through ``accelerator.prepare`` (that would shard it again). Every
process takes the same number of batches per epoch: the fewest whole batches any process's
share can hold in any epoch, counted once from a stream without image columns. Resuming
skips the consumed batches by reading past their rows without decoding them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import torch

from fashion_retrieval.devices import image_batch_bytes, image_loader_options
from fashion_retrieval.training.data import Example, ImageBatches

RowKey = tuple[str, str, str]  # (source id, target id, text): which example a stream row is


def _row_key(row: dict[str, Any]) -> RowKey:
    return row["source_id"], row["target_id"], row["text"]


def example_lookup(examples: list[Example]) -> dict[RowKey, int]:
    """The index in ``examples`` of each (source, target, text); the first of equal ones."""
    lookup: dict[RowKey, int] = {}
    for i, e in enumerate(examples):
        if e.source is not None and e.text is not None:
            lookup.setdefault((e.source, e.target, e.text), i)
    return lookup


def image_ref(value: Any) -> Any:
    """What ``load_image`` reads for an undecoded ``Image()`` value: its bytes, else its path."""
    if isinstance(value, dict):
        return value.get("bytes") or value.get("path")
    return value


def batches_per_epoch(rows: Any, lookup: dict[RowKey, int], batch_size: int, world_size: int) -> int:
    """The whole batches that every process's share of stream ``rows`` holds, in every epoch.

    ``rows`` is the stream without image columns (``triplet_stream(images=False)``): counting
    reads no image. Counted per shard: when the shards divide among the processes, each
    process gets whole shards, reshuffled every epoch, so the bound is the smallest
    ``n_shards / world_size`` shards; otherwise each takes every ``world_size``-th row, and
    the rows of no example (skipped after the split) may all fall in one share.
    Every process computes the same number; no collective is needed.
    """
    n = rows.n_shards
    read = [[_row_key(r) in lookup for r in rows.shard(num_shards=n, index=i)] for i in range(n)]
    kept = [sum(shard) for shard in read]
    if n % world_size == 0:
        share = sum(sorted(kept)[: n // world_size])
    else:
        total = sum(len(shard) for shard in read)
        share = total // world_size - (total - sum(kept))
    if share < batch_size:
        raise ValueError(f"a process's share of the stream ({share} of {sum(kept)} triplets) "
                         f"is under one batch of {batch_size}")
    return share // batch_size


class StreamKeys:
    """``(micro_step, example indices, {item id: image})`` for this process's batches, from
    ``start_step`` on, forever: the sampler of a ``StreamedImageBatches`` loader.

    Iterated in the main process: reads the rows of ``stream`` (shuffled and sharded,
    images undecoded) epoch after epoch (``set_epoch``), ``per_epoch`` whole batches each.
    """

    def __init__(self, stream: Any, lookup: dict[RowKey, int], batch_size: int, per_epoch: int,
                 start_step: int = 0) -> None:
        self.stream, self.lookup, self.batch_size = stream, lookup, batch_size
        self.per_epoch, self.start_step = per_epoch, start_step

    def _epoch(self, epoch: int) -> Iterator[list[dict[str, Any]]]:
        """The rows of epoch ``epoch``, ``batch_size`` at a time (rows of no example skipped)."""
        self.stream.set_epoch(epoch)
        rows = (r for r in self.stream if _row_key(r) in self.lookup)
        while len(batch := list(itertools.islice(rows, self.batch_size))) == self.batch_size:
            yield batch

    def __iter__(self) -> Iterator[tuple[int, list[int], dict[str, Any]]]:
        epoch, skip = divmod(self.start_step, self.per_epoch)
        step = self.start_step
        while True:
            for rows in itertools.islice(self._epoch(epoch), skip, self.per_epoch):
                images = {r["source_id"]: image_ref(r["source"]) for r in rows}
                images.update({r["target_id"]: image_ref(r["target"]) for r in rows})
                yield step, [self.lookup[_row_key(r)] for r in rows], images
                step += 1
            epoch, skip = epoch + 1, 0


class StreamedImageBatches(ImageBatches):
    """``ImageBatches`` whose keys also carry the streamed rows' images.

    A key is ``(micro_step, indices, {item id: bytes or path})``; an image the draw asks
    for that the rows do not bring (a fresh sibling target) is read from its item's file.
    Batches carry no ``index``: they were read from the stream, not looked up.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._images: dict[str, Any] = {}

    def __getitem__(self, key: tuple[int, list[int], dict[str, Any]]) -> dict[str, Any]:
        step, indices, self._images = key
        try:
            batch = super().__getitem__((step, indices))
        finally:
            self._images = {}
        return {**batch, "index": []}

    def _pixels(self, ids: list[str]) -> torch.Tensor:
        from fashion_retrieval.data.images import load_image

        return torch.stack([self.transform(load_image(self._image(i))) for i in ids])  # (B, 3, H, W)

    def _image(self, item_id: str) -> Any:
        ref = self._images.get(item_id) or self.paths.get(item_id)
        if not ref:
            raise ValueError(f"item {item_id!r}: its image is neither in the streamed rows nor a local file")
        return ref


def stream_loader(run: Any, start_micro_step: int, multiprocessing_context: str | None = None) -> Any:
    """The DataLoader of this process's streamed batches from ``start_micro_step`` on."""
    from fashion_retrieval.data.streaming import shard_for_process, shuffle, triplet_stream

    acc, cfg = run.accelerator, run.config
    if cfg.task != "composed":
        raise ValueError(f"streaming reads triplets: it supports task 'composed', not {cfg.task!r}")
    if any(t.target is None for t in run.train_set.triplets):
        raise ValueError("streaming training needs a split whose triplets all have targets")
    lookup = example_lookup(run.examples)
    rank, world = acc.process_index, acc.num_processes
    per_epoch = batches_per_epoch(triplet_stream(run.train_set, images=False), lookup, cfg.batch_size, world)
    # A published data set streams its parquet shards (images inside), any other the files.
    stream = shard_for_process(shuffle(triplet_stream(run.train_set, decode=False), seed=cfg.seed), rank, world)
    transform = run.model.transform(train=cfg.train_augment)
    decode = StreamedImageBatches(run.examples, {it.id: it.path for it in run.train_set.items}, transform,
                                  cfg.seed, getattr(run, "draw", None))
    options = image_loader_options(acc.device, cfg.num_workers, image_batch_bytes(cfg.batch_size, transform.size),
                                   multiprocessing_context=multiprocessing_context)
    keys = StreamKeys(stream, lookup, cfg.batch_size, per_epoch, start_micro_step)
    # Its own generator: the loader's base seed is not drawn from the global RNG (dropout's),
    # so a resumed run draws what the whole one did.
    return torch.utils.data.DataLoader(decode, sampler=keys, batch_size=None,
                                       generator=torch.Generator().manual_seed(run.config.seed), **options)


def stream_batches(run: Any, start_micro_step: int) -> Iterator[dict[str, Any]]:
    """This process's streamed batches of composed triplets from ``start_micro_step`` on."""
    yield from stream_loader(run, start_micro_step)
