"""Data sets as ``RetrievalDataset`` records: Fashion200k, FashionIQ and the synthetic catalogue.

``load_retrieval_dataset("fashioniq", root, "val")`` reads any registered data set by name;
``"published"`` reads one written by ``python -m fashion_retrieval.data.publish`` (a folder or
a Hub dataset repo id as ``root``).
Loaders are imported inside their factories, so importing this package stays cheap.
"""

from __future__ import annotations

import os
from typing import Any

from fashion_retrieval.data.records import Item, RetrievalDataset, Triplet
from fashion_retrieval.registry import Registry

DATASETS: Registry[RetrievalDataset] = Registry("dataset")


@DATASETS.register("fashion200k")
def _fashion200k(root: str | os.PathLike, split: str = "train", **options: Any) -> RetrievalDataset:
    """Fashion200k label files and image tree (see ``fashion200k.load_fashion200k``)."""
    from fashion_retrieval.data.fashion200k import load_fashion200k

    return load_fashion200k(root, split, **options)


@DATASETS.register("fashioniq")
def _fashioniq(root: str | os.PathLike, split: str = "val", **options: Any) -> RetrievalDataset:
    """FashionIQ captions, image splits and images (see ``fashioniq.load_fashioniq``)."""
    from fashion_retrieval.data.fashioniq import load_fashioniq

    return load_fashioniq(root, split, **options)


@DATASETS.register("published")
def _published(
    root: str | os.PathLike | None, split: str | None = None, **options: Any
) -> RetrievalDataset:
    """A data set written by ``python -m fashion_retrieval.data.publish``: ``root`` is its
    ``--out`` folder or Hub dataset repo id, streamed (see ``published.load_published``);
    the original data set's protocol comes from the dataset card."""
    from fashion_retrieval.data.published import load_published

    return load_published(root, split, **options)


@DATASETS.register("synthetic")
def _synthetic(
    root: str | os.PathLike | None, split: str = "train", **options: Any
) -> RetrievalDataset:
    """The rendered synthetic catalogue (see ``synthetic.load_synthetic``)."""
    from fashion_retrieval.data.synthetic import load_synthetic

    return load_synthetic(root=root, split=split, **options)


def load_retrieval_dataset(
    name: str, root: str | os.PathLike | None, split: str, **options: Any
) -> RetrievalDataset:
    """Load split ``split`` of the data set registered as ``name`` from ``root``.

    ``options`` go to the loader (e.g. ``categories=["dress"]``, ``caption_mode``,
    ``check_images``). An unknown name raises a ValueError listing the valid ones.
    """
    return DATASETS.get(name)(root, split, **options)


__all__ = ["DATASETS", "Item", "RetrievalDataset", "Triplet", "load_retrieval_dataset"]
