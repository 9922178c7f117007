"""The records every data set is read into: gallery items and (source, text, target) triplets."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Item:
    """One catalogue image.

    ``id`` is unique within a data set (Fashion200k: the image path relative to the root;
    FashionIQ: the ASIN). ``path`` is the absolute path of the image file. ``caption`` is
    the image's own description ("" where the data set has none, as in real FashionIQ).
    ``attributes`` holds known ground truth (the synthetic catalogue fills it).
    """

    id: str
    path: str
    caption: str
    category: str
    attributes: dict[str, str] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class Triplet:
    """A composed query: the ``source`` image changed by ``text`` should find ``target``.

    ``source`` and ``target`` are item ids; ``target`` is None where a split has no ground
    truth (FashionIQ test). ``captions`` keeps the raw captions the text was made from.
    ``target_caption`` is the target image's caption (Fashion200k and synthetic count a
    retrieved image as a hit when its caption equals it).
    """

    source: str
    target: str | None
    text: str
    category: str
    captions: tuple[str, ...] = ()
    target_caption: str = ""


@dataclass
class RetrievalDataset:
    """A split of a data set: its gallery, its triplets and what was skipped reading it.

    ``protocol`` names the evaluation protocol that fits it ("fashion200k", "fashioniq" or
    "synthetic"); ``skipped`` counts what could not be read, by reason, so nothing is
    silently dropped.
    """

    name: str
    split: str
    root: str
    items: list[Item]
    triplets: list[Triplet]
    protocol: str
    skipped: Counter = field(default_factory=Counter)
    meta: dict[str, Any] = field(default_factory=dict)

    def item_by_id(self) -> dict[str, Item]:
        """A dict from item id to item."""
        return {it.id: it for it in self.items}

    def categories(self) -> list[str]:
        """Sorted category names present in the gallery."""
        return sorted({it.category for it in self.items})

    def texts(self) -> list[str]:
        """Every query text and caption: what a word vocabulary is built from."""
        return [t.text for t in self.triplets] + [it.caption for it in self.items if it.caption]
