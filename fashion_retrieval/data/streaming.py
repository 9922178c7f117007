"""Every data set as a streaming ``datasets.IterableDataset`` with ``Image()`` features.

Two sources, one form:

* ``to_iterable_dataset(dataset)`` streams a loaded ``RetrievalDataset`` (Fashion200k,
  FashionIQ, synthetic) from its image files;
* ``stream_dataset(path_or_repo_id)`` streams a local imagefolder (images plus
  ``metadata.jsonl``) or a Hugging Face Hub dataset repo: both go through
  ``datasets.load_dataset(..., streaming=True)``, the same code path;
* ``stream_published(path_or_repo_id, kind, split)`` streams a data set written by
  ``python -m fashion_retrieval.data.publish`` (a ``--out`` folder or a Hub repo): its
  ``triplets`` and ``gallery`` configs have exactly the rows of ``to_iterable_dataset``,
  with the image bytes inside the parquet shards. ``triplet_stream(dataset)`` picks the
  right one for a loaded ``RetrievalDataset``.

Multi-process training (Accelerate): call ``shard_for_process`` (or
``shard_for_accelerator``) once, so each process reads its own part, and then build the
DataLoader WITHOUT passing it through ``accelerator.prepare``: prepare would shard (or
dispatch) the stream a second time and each process would see only 1/world_size of its
share. Shuffle before sharding, with the same seed on every process, and call
``ds.set_epoch(epoch)`` each epoch for a new order.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from fashion_retrieval.data.records import RetrievalDataset

KINDS = ("triplets", "items")
# The config of a published data set that holds each kind of row.
PUBLISHED_CONFIGS = {"triplets": "triplets", "items": "gallery"}
DEFAULT_NUM_SHARDS = 32  # divisible by 1, 2, 4, 8, 16, 32 processes: whole shards per process
_SPLIT_ALIASES = {"val": "validation", "validation": "val", "dev": "validation"}


def _datasets() -> Any:
    """The ``datasets`` module, imported on first use with a clear message when missing."""
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - datasets is in requirements.txt
        raise ImportError("streaming needs the 'datasets' package: pip install datasets") from exc
    return datasets


def _triplet_rows(dataset: RetrievalDataset, indices: list[int]) -> Iterator[dict[str, Any]]:
    """Rows of the triplets at ``indices``: image paths (decoded by ``Image()``) and texts."""
    paths = {it.id: it.path for it in dataset.items}
    for i in indices:
        t = dataset.triplets[i]
        yield {
            "source": paths[t.source],
            "target": paths[t.target] if t.target is not None else None,
            "text": t.text,
            "source_id": t.source,
            "target_id": t.target,
            "category": t.category,
            "target_caption": t.target_caption,
            "captions": list(t.captions),
        }


def _item_rows(dataset: RetrievalDataset, indices: list[int]) -> Iterator[dict[str, Any]]:
    """Rows of the gallery items at ``indices``."""
    for i in indices:
        it = dataset.items[i]
        yield {
            "image": it.path,
            "id": it.id,
            "caption": it.caption,
            "category": it.category,
            "attributes": json.dumps(it.attributes),  # known ground truth, as JSON (key order kept)
        }


_ROWS: dict[str, Callable[[RetrievalDataset, list[int]], Iterator[dict[str, Any]]]] = {
    "triplets": _triplet_rows,
    "items": _item_rows,
}


def iter_rows(
    dataset: RetrievalDataset, kind: str, indices: list[int] | None = None
) -> Iterator[dict[str, Any]]:
    """The rows of ``dataset``'s triplets or items (all, or those at ``indices``), with
    image paths in the image columns: what ``to_iterable_dataset`` streams and
    ``publish`` writes."""
    if kind not in _ROWS:
        raise ValueError(f"unknown kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    if indices is None:
        indices = list(range(len(dataset.triplets) if kind == "triplets" else len(dataset.items)))
    return _ROWS[kind](dataset, indices)


def _generate(
    dataset: RetrievalDataset, kind: str, shards: list[list[int]]
) -> Iterator[dict[str, Any]]:
    """Generator for ``from_generator``: ``shards`` is the list datasets splits across workers."""
    for indices in shards:
        yield from _ROWS[kind](dataset, indices)


def row_features(kind: str, decode: bool = True) -> Any:
    """The ``datasets.Features`` of a triplet or an item row (also the published schema)."""
    if kind not in _ROWS:
        raise ValueError(f"unknown kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    ds = _datasets()
    text = ds.Value("string")
    if kind == "triplets":
        return ds.Features(
            {
                "source": ds.Image(decode=decode),
                "target": ds.Image(decode=decode),
                "text": text,
                "source_id": text,
                "target_id": text,
                "category": text,
                "target_caption": text,
                "captions": ds.List(text),
            }
        )
    return ds.Features(
        {
            "image": ds.Image(decode=decode),
            "id": text,
            "caption": text,
            "category": text,
            "attributes": text,
        }
    )


def image_columns(features: Any) -> list[str]:
    """The names of the ``Image()`` columns of ``features``."""
    image_type = _datasets().Image
    return [name for name, f in (features or {}).items() if isinstance(f, image_type)]


def to_iterable_dataset(
    dataset: RetrievalDataset,
    kind: str = "triplets",
    *,
    num_shards: int = DEFAULT_NUM_SHARDS,
    decode: bool = True,
) -> Any:
    """Stream ``dataset``'s triplets or gallery items as a ``datasets.IterableDataset``.

    Triplet rows: ``source``/``target`` (``Image()``; target None on test splits),
    ``text``, ``source_id``, ``target_id``, ``category``, ``target_caption``, ``captions``
    (the raw captions the text was made from). Item rows: ``image``, ``id``, ``caption``,
    ``category``, ``attributes`` (JSON of the known attributes). Rows are split into ``num_shards``
    contiguous shards so that DataLoader workers and ``shard_for_process`` divide whole
    shards. ``decode=False`` yields ``{"path", "bytes"}`` dicts instead of PIL images.
    """
    features = row_features(kind, decode)
    n = len(dataset.triplets) if kind == "triplets" else len(dataset.items)
    n_shards = max(1, min(int(num_shards), n))
    bounds = [n * s // n_shards for s in range(n_shards + 1)]
    shards = [list(range(bounds[s], bounds[s + 1])) for s in range(n_shards)]
    return _datasets().IterableDataset.from_generator(
        _generate,
        features=features,
        gen_kwargs={"dataset": dataset, "kind": kind, "shards": shards},
    )


def stream_dataset(
    path_or_repo_id: str | os.PathLike,
    split: str = "train",
    *,
    data_dir: str | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
    **load_kwargs: Any,
) -> Any:
    """Stream a split of a local data folder or a Hub dataset repo (``datasets`` streaming).

    A local imagefolder (images with ``metadata.jsonl``, optionally in ``train/``,
    ``validation/``, ``test/`` folders) and a Hub repo id take the same path:
    ``datasets.load_dataset(path_or_repo_id, split=split, streaming=True, ...)``. ``val``
    and ``validation`` are tried for each other when the named split does not exist.
    Extra keyword arguments go to ``load_dataset``.
    """
    ds = _datasets()
    source = os.fspath(path_or_repo_id)
    kwargs = {"data_dir": data_dir, "revision": revision, "token": token, **load_kwargs}
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    try:
        return ds.load_dataset(source, split=split, streaming=True, **kwargs)
    except ValueError as exc:
        alias = _SPLIT_ALIASES.get(split)
        if alias is None or "split" not in str(exc).lower():
            raise
        try:
            return ds.load_dataset(source, split=alias, streaming=True, **kwargs)
        except ValueError:
            raise exc from None


def stream_published(
    path_or_repo_id: str | os.PathLike,
    kind: str,
    split: str,
    *,
    images: bool = True,
    decode: bool = True,
    revision: str | None = None,
    token: str | bool | None = None,
) -> Any:
    """Stream the ``kind`` rows ("triplets" or "items") of a published data set's ``split``.

    ``path_or_repo_id`` is a folder written by ``fashion_retrieval.data.publish --out`` or
    a Hub dataset repo id; both go through ``stream_dataset`` (the ``triplets`` or
    ``gallery`` config of the dataset card). ``images=False`` reads only the text columns
    (parquet column selection: no image bytes are read); ``decode=False`` yields image
    columns as ``{"bytes", "path"}`` dicts.
    """
    if kind not in PUBLISHED_CONFIGS:
        raise ValueError(f"unknown kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    features = row_features(kind, decode)
    pictures = image_columns(features)
    columns = None if images else [c for c in features if c not in pictures]
    ds = stream_dataset(
        path_or_repo_id, split, name=PUBLISHED_CONFIGS[kind], revision=revision, token=token,
        columns=columns,
    )
    if images and not decode:
        for column in pictures:
            ds = ds.cast_column(column, features[column])
    return ds


class InCategories:
    """A picklable row filter: keeps the rows whose ``category`` is one of ``categories``."""

    def __init__(self, categories: Sequence[str]) -> None:
        self.categories = frozenset(categories)

    def __call__(self, row: dict[str, Any]) -> bool:
        """Whether ``row`` is kept."""
        return row["category"] in self.categories


def triplet_stream(dataset: RetrievalDataset, *, decode: bool = True, images: bool = True) -> Any:
    """The triplets of a loaded split as a stream: from the parquet shards of a published
    data set (``dataset.meta["published"]``), else from the image files.

    Both yield the same rows, so training reads either through one path. A published set
    loaded with ``categories`` streams only the triplets of those categories. ``images=False``
    drops the image columns (a published set then reads no image bytes at all): what
    counting the rows needs. The stream has the same shards either way.
    """
    published = dataset.meta.get("published")
    if not published:
        ds = to_iterable_dataset(dataset, "triplets", decode=decode)
        return ds if images else ds.remove_columns(["source", "target"])
    ds = stream_published(
        published["source"], "triplets", dataset.split, images=images, decode=decode,
        revision=published.get("revision"),
    )
    kept = published.get("categories")
    if kept:
        ds = ds.filter(InCategories(kept))  # a class, not a lambda: spawned workers unpickle it
    return ds


def shuffle(ds: Any, seed: int, buffer_size: int = 1000) -> Any:
    """Shuffle a stream: shard order by ``seed``, then examples within a ``buffer_size`` buffer.

    Use the same ``seed`` on every process (before ``shard_for_process``) and call
    ``set_epoch`` on the result each epoch for a new order.
    """
    if buffer_size < 1:
        raise ValueError(f"buffer_size must be at least 1, got {buffer_size}")
    import inspect

    options = {}
    if "max_buffer_input_shards" in inspect.signature(ds.shuffle).parameters:
        # One input shard at a time. Recent ``datasets`` otherwise reads several shards in
        # threads and, for parquet (a published data set), sleeps 5 s after every pass to
        # work around apache/arrow#45214: seconds per epoch, and per count of the stream.
        options["max_buffer_input_shards"] = 1
    return ds.shuffle(seed=seed, buffer_size=buffer_size, **options)


def shard_for_process(ds: Any, rank: int, world_size: int) -> Any:
    """The part of stream ``ds`` that process ``rank`` of ``world_size`` reads.

    Uses ``datasets.distributed.split_dataset_by_node``: whole shards per process when the
    shard count divides evenly, else every ``world_size``-th example. Parts are disjoint
    and together cover the stream. Shard exactly once: do not also pass the DataLoader
    through ``accelerator.prepare``.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    from datasets.distributed import split_dataset_by_node

    return split_dataset_by_node(ds, rank=rank, world_size=world_size)


def shard_for_accelerator(ds: Any, accelerator: Any) -> Any:
    """``shard_for_process`` with the rank and world size of an ``accelerate.Accelerator``."""
    return shard_for_process(ds, accelerator.process_index, accelerator.num_processes)


class ImageColumns:
    """A picklable row map: the image ``columns`` through ``load_image`` then ``transform``.

    A None image (test-split targets) stays None; an undecoded ``Image()`` value (a
    ``{"bytes", "path"}`` dict) is read from its bytes, else its path.
    """

    def __init__(self, transform: Callable[[Any], Any], columns: Sequence[str]) -> None:
        self.transform, self.columns = transform, list(columns)

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        """``row`` with its image columns as tensors ``(3, size, size)``."""
        from fashion_retrieval.data.images import load_image

        for c in self.columns:
            value = row[c]
            if value is None:
                continue
            if isinstance(value, dict):  # an undecoded Image(): {"path", "bytes"}
                value = value.get("bytes") or value.get("path")
            row[c] = self.transform(load_image(value))  # (3, size, size)
        return row


def with_image_transform(
    ds: Any, transform: Callable[[Any], Any], columns: Sequence[str] | None = None
) -> Any:
    """Map the image columns of stream ``ds`` through ``load_image`` then ``transform``.

    ``columns`` defaults to the ``Image()`` columns of ``ds``'s features. A None image
    (test-split targets) stays None. The result yields tensors, ready for a DataLoader,
    and pickles (an ``ImageColumns`` map, no closure) for ``spawn`` and ``forkserver``
    workers when ``transform`` does.
    """
    if columns is None:
        columns = image_columns(ds.features)
    if not columns:
        raise ValueError("no image columns to transform: pass columns=[...]")
    return ds.map(ImageColumns(transform, columns), features=None)
