"""Data for ``reproduce --tiny`` when no copy is given: the real annotations with stand-in images.

FashionIQ: the real annotation files (``$FASHIONIQ_ANNOTATIONS``, else ``../shared/data/fashioniq``
beside the repository) are copied and every image of the evaluation split gets a small
stand-in picture, so the evaluation runs the whole published protocol (every query, every
category gallery); only the first ``train_triplets`` training triplets of each category get
their images, so the few training steps read few files (the other training triplets are
skipped and counted as missing images, as in any incomplete copy). Fashion200k: a small
synthetic catalogue in Fashion200k's exact layout (no real annotations of it are shipped).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def fashioniq_annotations() -> Path:
    """The folder of the real FashionIQ annotation files (``captions/``, ``image_splits/``)."""
    root = Path(os.environ.get("FASHIONIQ_ANNOTATIONS", REPO.parent / "shared" / "data" / "fashioniq"))
    if not (root / "captions").is_dir():
        raise ValueError(f"no FashionIQ annotations at {root}: give --data-root, or set FASHIONIQ_ANNOTATIONS "
                         "to a folder holding captions/ and image_splits/")
    return root


def _standin(path: Path, name: str, size: int) -> None:
    """A small picture whose colours come from ``name`` (images differ, and rerun the same)."""
    import io

    from PIL import Image, ImageDraw

    from fashion_retrieval.io_utils import atomic_write_bytes

    digest = hashlib.sha256(name.encode()).digest()
    image = Image.new("RGB", (size, size), tuple(digest[:3]))
    ImageDraw.Draw(image).rectangle((size // 4, size // 4, 3 * size // 4, size - 1), fill=tuple(digest[3:6]))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG")
    atomic_write_bytes(path, buffer.getvalue())


def fashioniq_standins(out: Path, split: str = "val", train_triplets: int = 64, size: int = 32) -> Path:
    """A FashionIQ copy under ``out``: real annotations, stand-in images; returns its root.

    Every image of ``split``'s image lists and of its triplets gets a picture, and those of the
    first ``train_triplets`` training triplets per category. Rerunning writes only what is missing.
    """
    source = fashioniq_annotations()
    for folder in ("captions", "image_splits"):
        shutil.copytree(source / folder, out / folder, dirs_exist_ok=True)
    wanted: set[str] = set()
    for file in sorted((out / "image_splits").glob(f"split.*.{split}.json")):
        wanted.update(json.loads(file.read_text(encoding="utf-8")))
    for file in sorted((out / "captions").glob("cap.*.json")):
        entries = json.loads(file.read_text(encoding="utf-8"))
        if f".{split}." not in file.name:
            entries = entries[:train_triplets] if ".train." in file.name else []
        for e in entries:
            wanted.update(v for k in ("candidate", "target") if isinstance(v := e.get(k), str))
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    for asin in sorted(wanted):
        path = images / f"{asin}.jpg"
        if not path.is_file():
            _standin(path, asin, size)
    return out


def fashion200k_standins(out: Path, products: int = 96) -> Path:
    """A small synthetic catalogue in Fashion200k's layout under ``out`` (labels, images,
    ``test_queries.txt``); returns its root. Rerunning reuses a complete one."""
    from fashion_retrieval.data import DATASETS

    DATASETS.get("synthetic").helper("writers").write_catalog(out, "fashion200k", products=products, seed=0, preset="easy", image_size=64)
    return out


# Per data set: the writer of its stand-in copy, and what that copy is (said in the report).
STANDINS = {
    "fashioniq": (fashioniq_standins, "the real FashionIQ annotations with generated pictures"),
    "fashion200k": (fashion200k_standins, "a small synthetic catalogue in Fashion200k's layout"),
}


def standin_root(dataset: str, out: Path) -> Path:
    """The stand-in copy of ``dataset`` under ``out`` (written when missing)."""
    if dataset not in STANDINS:
        raise ValueError(f"no stand-in data for {dataset!r}; give --data-root")
    return STANDINS[dataset][0](out)


def standin_description(dataset: str) -> str:
    """What the stand-in copy of ``dataset`` is, in words."""
    return STANDINS[dataset][1]
