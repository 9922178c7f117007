"""A picture of the catalogue for the README: pairs with their captions, one row each.

``python -m fashion_retrieval.data.synthetic.grid --preset easy --out docs/images/synthetic_grid_easy.png``

Each row: two views of a source product, two views of its target, then up to two other
products of the same family (siblings in ``easy``, near-duplicate distractors in
``hard``); above the row, the relative captions; under each image, its caption.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from .catalog import Catalog, Pair, build_catalog, caption
from .render import render_image

HEADER = 16
LABEL = 34


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _pick_pairs(catalog: Catalog, rows: int) -> list[Pair]:
    """Up to ``rows`` train pairs, one per category first, then more."""
    pairs, seen = [], set()
    by_id = {p.id: p for p in catalog.products()}
    for pair in catalog.splits["train"].pairs:
        cat = by_id[pair.source].category
        if cat not in seen:
            seen.add(cat)
            pairs.append(pair)
    rest = [p for p in catalog.splits["train"].pairs if p not in pairs]
    return (pairs + rest)[:rows]


def make_grid(preset: str = "easy", rows: int = 7, cell: int = 112, seed: int = 0,
              products: int = 400) -> Image.Image:
    """The grid image for ``preset``."""
    catalog = build_catalog(products, seed, preset, views=2)
    by_id = {p.id: p for p in catalog.products()}
    cols = 6
    small, big = _font(9), _font(11)
    row_h = HEADER + cell + LABEL
    grid = Image.new("RGB", (cols * cell, rows * row_h), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for r, pair in enumerate(_pick_pairs(catalog, rows)):
        src, tgt = by_id[pair.source], by_id[pair.target]
        family = [p for p in catalog.splits["train"].products if p.style is src.style
                  and p.id not in (src.id, tgt.id)][:2]
        cells = [(src, 0), (src, 1), (tgt, 0), (tgt, 1)] + [(p, 0) for p in family]
        y = r * row_h
        text = f'"{pair.captions[0]}" and "{pair.captions[1]}"'
        draw.text((4, y + 2), f"query text: {text}"[:120], fill=(20, 20, 20), font=big)
        for c, (product, view) in enumerate(cells):
            img = render_image(product, view, cell, catalog.preset.view, seed)
            grid.paste(img, (c * cell, y + HEADER))
            role = "source" if product is src else "target" if product is tgt else "other"
            lines = textwrap.wrap(f"{role}: {caption(product)}", width=cell // 5)[:3]
            for i, line in enumerate(lines):
                draw.text((c * cell + 2, y + HEADER + cell + 1 + i * 11), line,
                          fill=(60, 60, 60), font=small)
    return grid


def main(argv: list[str] | None = None) -> int:
    """CLI: write the grid PNG."""
    p = argparse.ArgumentParser(prog="python -m fashion_retrieval.data.synthetic.grid",
                                description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="easy")
    p.add_argument("--out", required=True)
    p.add_argument("--rows", type=int, default=7)
    p.add_argument("--cell", type=int, default=112, help="image size in pixels")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        grid = make_grid(args.preset, args.rows, args.cell, args.seed)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # a 256-colour palette keeps the README picture small (well under 500 KB)
    grid.quantize(256, dither=Image.Dither.NONE).save(out, optimize=True)
    print(f"wrote {out} ({grid.width}x{grid.height})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
