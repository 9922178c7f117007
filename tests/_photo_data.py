"""Generated photo folders for the photo-catalogue tests: small coloured shapes, nested
folders, JPEG/PNG/WebP, every picture different."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def draw_photo(path: Path, i: int, size: int = 48) -> Path:
    """A small picture that differs per ``i``: a coloured shape on a coloured ground."""
    rng = np.random.default_rng(i)
    ground, ink = (tuple(int(c) for c in rng.integers(0, 256, 3)) for _ in range(2))
    img = Image.new("RGB", (size, size), ground)
    d = ImageDraw.Draw(img)
    a, b = int(rng.integers(2, size // 3)), int(rng.integers(size // 2, size - 2))
    (d.ellipse if i % 2 else d.rectangle)([a, a, b, b], fill=ink)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def write_folder(root: Path, n: int, start: int = 0, size: int = 48) -> list[Path]:
    """``n`` photos spread over the top and two nested folders, in three formats."""
    out = []
    for i in range(start, start + n):
        sub = ("", "tops/", "dresses/long/")[i % 3]
        ext = (".jpg", ".png", ".webp")[i % 3]
        out.append(draw_photo(root / f"{sub}p{i:03d}{ext}", i, size))
    return out
