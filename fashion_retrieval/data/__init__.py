"""Data sets as ``RetrievalDataset`` records: Fashion200k, FashionIQ and the synthetic catalogue.

``load_retrieval_dataset("fashioniq", root, "val")`` reads any registered data set by name;
``"published"`` reads one written by ``python -m fashion_retrieval.data.publish`` (a folder or
a Hub dataset repo id as ``root``).
Loaders are imported inside their factories, so importing this package stays cheap.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fashion_retrieval.data.records import Item, RetrievalDataset, Triplet
from fashion_retrieval.registry import Registry


@dataclass(frozen=True)
class DatasetEntry:
    """One registered data set: its loader and the facts the rest of the library asks about.

    ``loader(root, split, **options)`` reads a split. ``eval_split`` is the split evaluation
    and serving use unless told otherwise (None: the published card's evaluation split);
    ``train_split`` the split training reads. ``options`` are every keyword option the
    loader accepts (``dataset_options`` outside them are an error). ``settings`` are the
    ``TrainConfig`` settings it takes where ``dataset_options`` name none (the synthetic
    catalogue: the run's ``seed``). ``carries``: what its items carry (``attributes``,
    ``categories``; None: known once loaded); ``helpers``: the package of its own tools
    (attributes, phrasing, generated pairs), reached through ``helper``. ``protocol`` is the
    evaluation protocol of its splits (None: the card's). ``sample_draw`` is how composed
    training redraws an example per sample: ``"siblings"`` (a fresh sibling target and its
    "replace X with Y" text, as TIRG on Fashion200k), ``"captions"`` (two annotator captions
    per triplet, which ``train_caption_mode: random`` reorders), None: known only once
    loaded (a published data set takes the original's).
    """

    name: str
    loader: Callable[..., RetrievalDataset]
    eval_split: str | None
    train_split: str
    options: tuple[str, ...]
    settings: tuple[str, ...] = ()
    protocol: str | None = None
    sample_draw: str | None = None
    carries: tuple[str, ...] | None = ()
    helpers: str | None = None

    def helper(self, name: str = "") -> Any:
        """The module ``name`` of this data set's own tools (``""``: their package)."""
        if self.helpers is None:
            raise ValueError(f"data set {self.name!r} has no tools of its own (asked for {name or 'its package'!r})")
        return importlib.import_module(f"{self.helpers}.{name}" if name else self.helpers)

    def require(self, option: str, *needs: str) -> None:
        """ValueError unless its items carry one of ``needs`` (unknown: the loaded data decides) and,
        for generated examples, it has the tools to make them."""
        if self.carries is not None and not set(needs) & set(self.carries):
            raise ValueError(f"{option} needs items that carry {' or '.join(needs)}; data set {self.name!r} "
                             f"items carry {', '.join(self.carries) or 'neither'}")
        if option.startswith("generated_") and self.helpers is None:
            raise ValueError(f"{option} needs a data set that generates examples; {self.name!r} does not")

    def check_options(self, options: Mapping[str, Any]) -> None:
        """ValueError naming any key of ``options`` this data set's loader does not take."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise ValueError(
                f"data set {self.name!r} takes no option {', '.join(map(repr, unknown))}; "
                f"its options: {', '.join(self.options)}"
            )

    def pick_settings(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """The entries of ``settings`` this data set takes (``self.settings``), None ones left out."""
        return {k: v for k, v in settings.items() if k in self.settings and v is not None}


DATASETS: Registry[DatasetEntry] = Registry("dataset")


def _fashion200k(root: str | os.PathLike, split: str = "train", **options: Any) -> RetrievalDataset:
    """Fashion200k label files and image tree (see ``fashion200k.load_fashion200k``)."""
    from fashion_retrieval.data.fashion200k import load_fashion200k

    return load_fashion200k(root, split, **options)


def _fashioniq(root: str | os.PathLike, split: str = "val", **options: Any) -> RetrievalDataset:
    """FashionIQ captions, image splits and images (see ``fashioniq.load_fashioniq``)."""
    from fashion_retrieval.data.fashioniq import load_fashioniq

    return load_fashioniq(root, split, **options)


def _published(
    root: str | os.PathLike | None, split: str | None = None, **options: Any
) -> RetrievalDataset:
    """A data set written by ``python -m fashion_retrieval.data.publish``: ``root`` is its
    ``--out`` folder or Hub dataset repo id, streamed (see ``published.load_published``);
    the original data set's protocol comes from the dataset card."""
    from fashion_retrieval.data.published import load_published

    return load_published(root, split, **options)


def _synthetic(
    root: str | os.PathLike | None, split: str = "train", **options: Any
) -> RetrievalDataset:
    """The rendered synthetic catalogue (see ``synthetic.load_synthetic``)."""
    from fashion_retrieval.data.synthetic import load_synthetic

    return load_synthetic(root=root, split=split, **options)


# Options are the loaders' keyword parameters (tests/test_registries.py checks them
# against the signatures); synthetic also passes FashionIQ's on to ``load_fashioniq``.
DATASETS.add("fashion200k", DatasetEntry(
    "fashion200k", _fashion200k, eval_split="test", train_split="train",
    options=("categories", "check_images", "seed", "caption_cleanup"),
    protocol="fashion200k", sample_draw="siblings", carries=("categories",),
))
DATASETS.add("fashioniq", DatasetEntry(
    "fashioniq", _fashioniq, eval_split="val", train_split="train",
    options=("categories", "caption_mode", "check_images"),
    protocol="fashioniq", sample_draw="captions", carries=("categories",),
))
DATASETS.add("published", DatasetEntry(  # a published synthetic catalogue keeps its attributes
    "published", _published, eval_split=None, train_split="train",
    options=("categories", "images", "cache_dir", "revision", "token"),
    carries=None, helpers="fashion_retrieval.data.synthetic",
))
DATASETS.add("synthetic", DatasetEntry(
    "synthetic", _synthetic, eval_split="val", train_split="train",
    options=("preset", "products", "seed", "categories", "image_size", "views", "workers",
             "caption_mode", "check_images"),
    settings=("seed",), protocol="synthetic", sample_draw="captions", carries=("attributes", "categories"),
    helpers="fashion_retrieval.data.synthetic",
))


def dataset_entry(name: str) -> DatasetEntry:
    """The registered entry of data set ``name``; an unknown name raises a ValueError listing the valid ones."""
    return DATASETS.get(name)


def default_split(name: str) -> str | None:
    """The split to evaluate or serve data set ``name`` on when none is given: ``test`` for
    Fashion200k, ``val`` for FashionIQ and the synthetic catalogue, None for a published
    data set (its card names the evaluation split; pass None on to the loader)."""
    return DATASETS.get(name).eval_split


def load_retrieval_dataset(
    name: str, root: str | os.PathLike | None, split: str, **options: Any
) -> RetrievalDataset:
    """Load split ``split`` of the data set registered as ``name`` from ``root``.

    ``options`` go to the loader (e.g. ``categories=["dress"]``, ``caption_mode``,
    ``check_images``). An unknown name raises a ValueError listing the valid ones.
    """
    return DATASETS.get(name).loader(root, split, **options)


__all__ = [
    "DATASETS", "DatasetEntry", "Item", "RetrievalDataset", "Triplet", "dataset_entry", "default_split",
    "load_retrieval_dataset",
]
