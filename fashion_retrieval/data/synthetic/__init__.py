"""The synthetic fashion catalogue: rendered garments with exact ground truth.

``load_synthetic()`` renders a catalogue in the FashionIQ layout (once, cached under
``$FASHION_RETRIEVAL_HOME``) and reads it back with the real FashionIQ loader.
``python -m fashion_retrieval.data.synthetic --format {fashion200k,fashioniq,imagefolder}``
writes it in any of the supported layouts.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from fashion_retrieval.data.records import RetrievalDataset
from fashion_retrieval.paths import synthetic_dir

from .attributes import CATEGORIES, COLORS, PATTERNS, Product, caption_of, parse_caption
from .catalog import PRESETS, Catalog, build_catalog
from .relative import relative_captions
from .render import ViewConfig, render_image
from .writers import WRITERS, write_catalog

DEFAULT_PRODUCTS = 600


def default_root(preset: str, products: int, seed: int, image_size: int = 128) -> Path:
    """Where ``load_synthetic`` keeps a catalogue: <home>/synthetic/<preset>-<products>-<seed>."""
    name = f"{preset}-{products}-{seed}" + ("" if image_size == 128 else f"-{image_size}px")
    return synthetic_dir(name)


def rendered_params(root: str | os.PathLike) -> dict[str, Any] | None:
    """The ``load_synthetic`` keyword arguments a complete FashionIQ-layout catalogue under
    ``root`` was rendered with (so reading it back renders nothing), or None when ``root``
    holds no such catalogue."""
    import json

    from .writers import MARKER

    try:
        stored = json.loads((Path(root) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    params = stored.get("params") if isinstance(stored, dict) else None
    if not stored.get("complete") or not isinstance(params, dict) or params.get("format") != "fashioniq":
        return None
    return {k: params[k] for k in ("preset", "products", "seed", "image_size", "views") if k in params}


def load_synthetic(
    root: str | os.PathLike | None = None,
    split: str = "train",
    preset: str = "easy",
    products: int = DEFAULT_PRODUCTS,
    seed: int = 0,
    categories: list[str] | None = None,
    *,
    image_size: int = 128,
    views: int = 3,
    workers: int | None = None,
    **loader_options: Any,
) -> RetrievalDataset:
    """A split ("train", "val" or "test") of the synthetic catalogue as a ``RetrievalDataset``.

    Renders the FashionIQ layout into ``root`` unless a complete catalogue with the same
    parameters is already there (a different one is replaced), then reads it with
    ``load_fashioniq`` (``loader_options`` go to it, e.g. ``caption_mode``) and sets
    protocol and name to "synthetic". ``categories`` filters what is read, not what is
    rendered. Item captions and attributes come from the catalogue's ``image_meta.json``.
    """
    from fashion_retrieval.data.fashioniq import load_fashioniq

    root = Path(root) if root is not None else default_root(preset, products, seed, image_size)
    if workers is None:
        workers = min(4, os.cpu_count() or 1)
    summary = write_catalog(root, "fashioniq", products, seed, preset, image_size, views,
                            workers, overwrite=True)
    ds = load_fashioniq(root, split, categories, **loader_options)
    meta = {**ds.meta, "synthetic": {"preset": preset, "products": products, "seed": seed,
                                     "image_size": image_size, "views": views,
                                     "images": summary.get("images")}}
    return dataclasses.replace(ds, name="synthetic", protocol="synthetic", meta=meta)


__all__ = [
    "CATEGORIES",
    "COLORS",
    "PATTERNS",
    "PRESETS",
    "WRITERS",
    "Catalog",
    "Product",
    "ViewConfig",
    "build_catalog",
    "caption_of",
    "default_root",
    "load_synthetic",
    "parse_caption",
    "relative_captions",
    "render_image",
    "rendered_params",
    "write_catalog",
]
