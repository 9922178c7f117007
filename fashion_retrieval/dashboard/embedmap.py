"""Data for the embedding map: gallery embeddings projected to 2-D, with item metadata."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..data.records import Item
from .projection import project

BASE_COLUMNS = ("id", "caption", "category")


def color_options(items: Sequence[Item]) -> list[str]:
    """What a map can be coloured by: "category", then every attribute some item has."""
    attrs = sorted({name for it in items for name in it.attributes})
    return ["category", *[a for a in attrs if a not in BASE_COLUMNS]]


def embedding_frame(items: Sequence[Item], coords: np.ndarray) -> pd.DataFrame:
    """One row per gallery item: x, y, id, caption, category and one column per attribute."""
    coords = np.asarray(coords)
    if coords.shape != (len(items), 2):
        raise ValueError(
            f"coords must have shape ({len(items)}, 2) for {len(items)} items, got {coords.shape}"
        )
    attr_names = color_options(items)[1:]
    rows = []
    for (x, y), it in zip(coords, items, strict=True):  # coords: (N, 2)
        row = {
            "x": float(x),
            "y": float(y),
            "id": it.id,
            "caption": it.caption,
            "category": it.category,
        }
        row.update({a: str(it.attributes.get(a, "(none)")) for a in attr_names})
        rows.append(row)
    return pd.DataFrame(rows, columns=["x", "y", *BASE_COLUMNS, *attr_names])


def subsample(n: int, max_points: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most ``max_points`` of ``n`` rows, the same for every model."""
    if n <= max_points:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=max_points, replace=False))


def project_gallery(
    items: Sequence[Item], embeddings: np.ndarray, method: str = "pca", seed: int = 0
) -> pd.DataFrame:
    """Project ``(N, D)`` gallery embeddings with ``method`` and attach the item metadata."""
    emb = np.asarray(embeddings, dtype=np.float32)  # (N, D)
    if emb.ndim != 2 or emb.shape[0] != len(items):
        raise ValueError(f"embeddings of shape {emb.shape} do not match {len(items)} gallery items")
    return embedding_frame(items, project(emb, method=method, seed=seed))
