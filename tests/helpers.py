"""Small helpers shared by tests: tiny stand-in images and data layouts."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image


def solid_image(
    size: int = 32, color: tuple[int, int, int] = (200, 30, 30), mode: str = "RGB"
) -> Image.Image:
    """A ``size`` x ``size`` image of one colour, in ``mode``."""
    return Image.new("RGB", (size, size), color).convert(mode)


def write_standin_images(
    root: str | os.PathLike,
    ids: Iterable[str],
    size: int = 32,
    ext: str = ".png",
    link: bool = False,
) -> list[Path]:
    """Write a small image for every id under ``root`` (ids may contain sub-folders).

    Each image gets a colour derived from its position, so images differ. With
    ``link=True`` one image is written and hard-linked to every name: thousands of
    files in well under a second (they all look the same).
    """
    root = Path(root)
    paths, first = [], None
    for i, image_id in enumerate(ids):
        path = root / f"{image_id}{ext}" if not Path(image_id).suffix else root / image_id
        path.parent.mkdir(parents=True, exist_ok=True)
        if link and first is not None:
            os.link(first, path)
        else:
            rng = np.random.default_rng(i)
            color = tuple(int(c) for c in rng.integers(0, 256, size=3))
            Image.new("RGB", (size, size), color).save(path)
            first = path
        paths.append(path)
    return paths


def link_fashioniq_annotations(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Make ``dst`` a FashionIQ root whose captions/ and image_splits/ point at ``src``'s."""
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("captions", "image_splits"):
        (dst / name).symlink_to(Path(src) / name, target_is_directory=True)
    return dst
