"""Load chosen checkpoints (local folders or Hub repo ids) over a chosen gallery for the demo."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fashion_retrieval.data.records import RetrievalDataset
from fashion_retrieval.demo.default import (
    DefaultSpec,
    DemoBundle,
    Log,
    default_dir,
    fashion_home,
    synthetic_catalogue,
)


def model_name_for(checkpoint: str) -> str:
    """A short display name: the folder name (``final`` is skipped) or the repo name."""
    path = Path(checkpoint)
    if path.exists():
        parts = [p for p in path.resolve().parts if p not in ("final", "")]
        return parts[-1] if parts else str(path)
    return checkpoint.rstrip("/").split("/")[-1]


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}-{seen[n]}")
    return out


def index_dir_for(checkpoint: str, home: str | Path | None = None) -> Path:
    """Where a checkpoint's gallery index lives: beside a writable local checkpoint,
    else under ``<home>/indexes/<slug>`` (Hub checkpoints, read-only folders)."""
    path = Path(checkpoint)
    if path.is_dir() and os.access(path, os.W_OK):
        return path / "index"
    slug = re.sub(r"[^A-Za-z0-9._-]+", "--", checkpoint.strip("/"))
    return fashion_home(home) / "indexes" / slug


def load_gallery(
    gallery: str | None, *, dataset: str = "fashioniq", split: str = "val", home: str | Path | None = None
) -> RetrievalDataset:
    """The gallery: a FashionIQ/Fashion200k root, or (None) the embedded synthetic catalogue."""
    if gallery is None:
        spec = DefaultSpec()
        return synthetic_catalogue(default_dir(home), spec, spec.gallery_split)
    if dataset != "published" and not Path(gallery).is_dir():  # published: a folder or Hub repo id
        raise FileNotFoundError(f"gallery folder {gallery!r} does not exist")
    from fashion_retrieval.data import load_retrieval_dataset

    return load_retrieval_dataset(dataset, gallery, split)


def load_checkpoints(
    checkpoints: Sequence[str],
    *,
    gallery: str | None = None,
    dataset: str = "fashioniq",
    split: str = "val",
    home: str | Path | None = None,
    log: Log = print,
    device: str | None = None,
) -> DemoBundle:
    """Retrievers for ``checkpoints`` (local folders or Hub repo ids) over one gallery, each
    model on ``device`` (default: ``cuda`` when available, else ``cpu``)."""
    if not checkpoints:
        raise ValueError("give at least one checkpoint (a local folder or a Hub repo id)")
    from fashion_retrieval.devices import resolve_device
    from fashion_retrieval.hub import load_model
    from fashion_retrieval.retriever import Retriever

    dev = resolve_device(device)

    data = load_gallery(gallery, dataset=dataset, split=split, home=home)
    log(f"[demo] gallery: {data.name} {data.split}, {len(data.items)} images; models on {dev}")
    models: dict[str, Any] = {}
    for name, ckpt in zip(_unique([model_name_for(c) for c in checkpoints]), checkpoints, strict=True):
        log(f"[demo] loading {ckpt} as {name!r}")
        model = load_model(ckpt)
        model.eval()
        models[name] = Retriever(model, data.items, index_dir=index_dir_for(ckpt, home), device=dev)
    return DemoBundle(models, data, fashion_home(home))
