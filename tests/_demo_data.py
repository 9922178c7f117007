"""Tiny, real test data for the demo and Space tests: a FashionIQ-layout catalogue of drawn
garments (64 px) and a tiny untrained checkpoint (tiny_cnn + LSTM) saved like any other."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COLOURS = {
    "red": (200, 30, 30),
    "blue": (30, 60, 200),
    "green": (30, 160, 60),
    "black": (20, 20, 20),
    "yellow": (230, 210, 40),
    "white": (245, 245, 245),
}
PATTERNS = ("solid", "striped")
CATEGORY = "dress"


def _draw(colour: tuple[int, int, int], pattern: str, size: int = 64) -> Image.Image:
    img = Image.new("RGB", (size, size), (200, 200, 190))
    draw = ImageDraw.Draw(img)
    draw.polygon([(24, 8), (40, 8), (52, 58), (12, 58)], fill=colour)  # a dress outline
    if pattern == "striped":
        for y in range(12, 58, 8):
            draw.line([(10, y), (54, y)], fill=(255 - colour[0], 255 - colour[1], 255 - colour[2]), width=2)
    return img


def write_tiny_fashioniq(root: Path) -> Path:
    """Write 12 dress images (6 colours x 2 patterns) with captions and colour-change triplets."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "image_splits").mkdir(exist_ok=True)
    (root / "captions").mkdir(exist_ok=True)
    meta, ids = {}, []
    for colour, rgb in COLOURS.items():
        for pattern in PATTERNS:
            item_id = f"{colour}_{pattern}"
            _draw(rgb, pattern).save(root / "images" / f"{item_id}.png")
            meta[item_id] = {
                "caption": f"{colour} {pattern} dress",
                "category": CATEGORY,
                "attributes": {"color": colour, "pattern": pattern},
            }
            ids.append(item_id)
    names = list(COLOURS)
    triplets = [
        {
            "candidate": f"{a}_{p}",
            "target": f"{b}_{p}",
            "captions": [f"is {b}", f"is {b} instead of {a}"],
        }
        for p in PATTERNS
        for a, b in zip(names, names[1:] + names[:1], strict=True)
    ]
    (root / "image_meta.json").write_text(json.dumps(meta))
    (root / "image_splits" / f"split.{CATEGORY}.val.json").write_text(json.dumps(ids))
    (root / "captions" / f"cap.{CATEGORY}.val.json").write_text(json.dumps(triplets))
    return root


def tiny_model(compositor: str = "tirg", seed: int = 0):
    """An untrained tiny RetrievalModel whose vocabulary covers the tiny catalogue."""
    import torch

    from fashion_retrieval.models.config import ModelConfig
    from fashion_retrieval.models.retrieval import RetrievalModel

    torch.manual_seed(seed)
    texts = [f"{c} {p} dress is {c} instead of" for c in COLOURS for p in PATTERNS]
    config = ModelConfig(
        image_encoder="tiny_cnn", text_encoder="lstm", compositor=compositor, pretrained=False, embed_dim=32
    )
    return RetrievalModel(config, texts=texts).eval()


def write_tiny_checkpoint(out: Path, compositor: str = "tirg") -> Path:
    """Save a tiny model as a checkpoint folder (loadable by ``hub.load_model``)."""
    from fashion_retrieval.checkpoints import save_checkpoint

    save_checkpoint(tiny_model(compositor), out)
    return out


def odd_images(folder: Path) -> dict[str, Path]:
    """Awkward uploads: grayscale, RGBA, CMYK, 16-bit, not an image, empty, truncated."""
    folder.mkdir(parents=True, exist_ok=True)
    base = _draw(COLOURS["red"], "solid")
    files = {
        "gray": folder / "gray.png",
        "rgba": folder / "rgba.png",
        "cmyk": folder / "cmyk.jpg",
        "i16": folder / "i16.png",
        "text": folder / "notes.png",
        "empty": folder / "empty.jpg",
        "truncated": folder / "truncated.jpg",
    }
    base.convert("L").save(files["gray"])
    base.convert("RGBA").save(files["rgba"])
    base.convert("CMYK").save(files["cmyk"])
    Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)).save(files["i16"])
    files["text"].write_text("this is not a picture")
    files["empty"].write_bytes(b"")
    base.save(folder / "full.jpg")
    files["truncated"].write_bytes((folder / "full.jpg").read_bytes()[:300])
    return files
