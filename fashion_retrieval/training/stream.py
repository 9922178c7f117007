"""The streaming input path: a ``datasets`` IterableDataset, shuffled, sharded once per process.

The stream is the train split's triplets: read from the parquet shards of a published data set
(``--dataset published --data-root FOLDER_OR_REPO_ID``, a ``--out`` folder or a Hub repo, the
same code) or made from the image files of any other data set; the rows are the same.

The stream is not passed through ``accelerator.prepare`` (that would shard it again). Every
process takes the same number of batches per epoch (the smallest share, agreed with an
all-reduce) so that DDP steps stay in lockstep. Resuming skips the consumed batches by
reading past them: the order is exact, augmentation draws are not replayed.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import torch

from fashion_retrieval.devices import loader_options


def _collate(rows: list[dict[str, Any]], rows_of: dict[str, int]) -> dict[str, Any]:
    """Rows of ``with_image_transform`` -> the trainer's dict batch."""
    return {
        "source": torch.stack([r["source"] for r in rows]),  # (B, 3, H, W)
        "target": torch.stack([r["target"] for r in rows]),  # (B, 3, H, W)
        "text": [r["text"] for r in rows],
        "label": torch.tensor([rows_of[r["target_id"]] for r in rows], dtype=torch.long),
        "source_ids": [r["source_id"] for r in rows],
        "target_ids": [r["target_id"] for r in rows],
        "index": [],
    }


def _batches_per_epoch(ds: Any, batch_size: int, accelerator: Any) -> int:
    """The smallest number of whole batches any process's share holds."""
    count = sum(1 for _ in ds.select_columns(["target_id"]))
    mine = torch.tensor(count // batch_size, device=accelerator.device)
    agreed = int(accelerator.gather(mine.reshape(1)).min().item())
    if agreed < 1:
        raise ValueError(f"a process's share of the stream ({count} triplets) is under one batch of {batch_size}")
    return agreed


def stream_batches(run: Any, start_micro_step: int) -> Iterator[dict[str, Any]]:
    """This process's streamed batches of composed triplets from ``start_micro_step`` on."""
    from fashion_retrieval.data.streaming import (
        shard_for_process,
        shuffle,
        triplet_stream,
        with_image_transform,
    )

    acc, cfg = run.accelerator, run.config
    if cfg.task != "composed":
        raise ValueError(f"streaming reads triplets: it supports task 'composed', not {cfg.task!r}")
    labelled = [t for t in run.train_set.triplets if t.target is not None]
    if len(labelled) != len(run.train_set.triplets):
        raise ValueError("streaming training needs a split whose triplets all have targets")
    # A published data set streams its parquet shards (images inside), any other the files.
    ds = triplet_stream(run.train_set, decode=False)
    ds = shard_for_process(shuffle(ds, seed=cfg.seed), acc.process_index, acc.num_processes)
    per_epoch = _batches_per_epoch(ds, cfg.batch_size, acc)
    ds = with_image_transform(ds, run.model.transform(train=True), columns=["source", "target"])
    rows_of = {it.id: i for i, it in enumerate(run.train_set.items)}
    epoch, skip = divmod(start_micro_step, per_epoch)
    step = start_micro_step
    while True:
        ds.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(
            ds, batch_size=cfg.batch_size, drop_last=True, collate_fn=lambda rows: _collate(rows, rows_of),
            **loader_options(acc.device, cfg.num_workers),  # workers; pinned memory on CUDA
        )
        for batch in itertools.islice(loader, skip, per_epoch):
            yield {**batch, "step": step}
            step += 1
        epoch, skip = epoch + 1, 0
