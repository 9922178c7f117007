"""The catalogue a service searches: a data set split, a published Hub dataset, a plain
folder of photos, or the embedded default, with its ground truth when it has one.

``open_catalogue`` is the one way both UIs, the Space and the benchmarks name a gallery.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from fashion_retrieval.data.records import Item, RetrievalDataset
from fashion_retrieval.paths import gallery_key

PHOTOS = "photos"  # the name of a plain photo folder as a gallery source
Log = Callable[[str], None]


@dataclass
class Catalogue:
    """The gallery items and, where known, the data set whose triplets say which hits are right.

    ``name`` is the data set's name (``PHOTOS`` for a photo folder), ``protocol`` its
    evaluation protocol (decides the hit rule; None for photos), ``source`` where it was read
    from, ``unreadable`` the files that were skipped (relative path, reason).
    """

    items: list[Item]
    name: str
    source: str
    split: str | None = None
    protocol: str | None = None
    dataset: RetrievalDataset | None = None
    unreadable: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.items:
            raise ValueError(f"the gallery {self.describe()} holds no image")

    @classmethod
    def from_dataset(cls, dataset: RetrievalDataset, source: str | None = None) -> Catalogue:
        """A catalogue of a loaded data set split (its triplets are the ground truth)."""
        return cls(
            items=list(dataset.items),
            name=dataset.name,
            source=source or str(dataset.root),
            split=dataset.split,
            protocol=dataset.protocol,
            dataset=dataset,
        )

    @property
    def key(self) -> str:
        """A stable folder name for this gallery (where each model keeps its index of it)."""
        return gallery_key(f"{self.name}:{self.source}:{self.split or ''}")

    @property
    def triplets(self) -> list[Any]:
        """The ground-truth queries (none for a photo folder)."""
        return list(self.dataset.triplets) if self.dataset is not None else []

    @cached_property
    def by_id(self) -> dict[str, Item]:
        """Items by id."""
        return {it.id: it for it in self.items}

    def describe(self) -> str:
        """One line for logs and pages."""
        split = f" ({self.split} split)" if self.split else ""
        return f"{self.name} at {self.source}{split}"

    def folders(self) -> list[str]:
        """The folders holding the images (a web server must be allowed to serve them)."""
        dirs = {os.path.dirname(os.path.abspath(it.path)) for it in self.items}
        common = os.path.commonpath(sorted(dirs)) if dirs else None
        return [common] if common and common != os.sep else sorted(dirs)


def detect_layout(folder: str | Path) -> str:
    """Which data set a folder holds: ``synthetic`` (a rendered catalogue), ``fashioniq``
    (captions/ + image_splits/),
    ``fashion200k`` (labels/), ``published`` (a dataset card written by the publish command),
    else ``photos`` (any folder of pictures)."""
    root = Path(folder)
    if (root / "captions").is_dir() and (root / "image_splits").is_dir():
        from fashion_retrieval.data import dataset_entry

        rendered = dataset_entry("synthetic").helper().rendered_params(root)
        return "synthetic" if rendered is not None else "fashioniq"
    if (root / "labels").is_dir():
        return "fashion200k"
    card = root / "README.md"
    if card.is_file():
        from fashion_retrieval.data.published import CARD_KEY

        head = card.read_text(encoding="utf-8", errors="replace")[:20000]
        if head.startswith("---") and f"{CARD_KEY}:" in head:
            return "published"
    return PHOTOS


def open_catalogue(
    gallery: str | os.PathLike,
    *,
    dataset: str | None = None,
    split: str | None = None,
    log: Log = print,
) -> Catalogue:
    """The catalogue ``gallery`` names (the embedded default's is ``serving.default``'s).

    - a folder: ``dataset`` names its layout (any name of ``DATASETS``, or ``"photos"``);
      without it the layout is detected (:func:`detect_layout`);
    - a Hub dataset repo id, with ``dataset="published"``.

    ``split`` None takes the data set's own evaluation split. A missing folder or a folder
    without any usable image raises ``FileNotFoundError``/``ValueError`` naming it.
    """
    if gallery is None or not str(gallery).strip():
        raise ValueError("no gallery given: name a data folder, a photo folder or a Hub dataset")
    source = str(gallery)
    folder = Path(source).expanduser()
    if not folder.is_dir() and dataset is None:  # a Hub repo id needs its data set named
        raise FileNotFoundError(f"gallery folder {folder} does not exist or is not a folder")
    name = dataset or detect_layout(folder)
    if name == PHOTOS:
        from fashion_retrieval.serving.photos import scan_cache_path, scan_photo_folder

        scan = scan_photo_folder(folder, cache=scan_cache_path(folder))  # unchanged: not decoded
        if scan.unreadable:
            log(f"[catalogue] skipped {len(scan.unreadable)} unreadable file(s) in {folder}: "
                + "; ".join(f"{p} ({why})" for p, why in scan.unreadable[:10])
                + (" ..." if len(scan.unreadable) > 10 else ""))
        return Catalogue(scan.items, PHOTOS, str(folder.resolve()), unreadable=list(scan.unreadable))
    from fashion_retrieval.data import dataset_entry, default_split, load_retrieval_dataset

    entry = dataset_entry(name)  # an unknown name lists the valid ones
    root = str(folder.resolve()) if folder.is_dir() else source  # else a Hub repo id
    options: dict[str, Any] = {}
    if entry.settings:  # a rendered catalogue is read back as it is; serving never renders one
        params = entry.helper().rendered_params(folder) if folder.is_dir() else None
        if params is None:
            raise FileNotFoundError(
                f"gallery folder {folder} does not exist or holds no rendered {name} catalogue"
            )
        options = {k: v for k, v in params.items() if k in entry.options}
    data = load_retrieval_dataset(name, root, split or default_split(name), **options)
    return Catalogue.from_dataset(data, source=root)
