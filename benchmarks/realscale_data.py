"""Stand-in data at the real data sets' sizes, for the ``realscale`` benchmark step.

- FashionIQ: the real annotation files (captions/ and image_splits/ of dress, shirt,
  toptee) with a small generated JPEG for every image they name, except a seeded choice
  of images left out on purpose (real copies always miss some).
- Fashion200k: a label set of the published sizes (172,049 training images, 29,789 test
  images, 33,480 test queries) in the exact release layout, captions built from word
  slots so that TIRG's training pairs and the one-word test queries exist, with a small
  JPEG for every listed image except a seeded few.

The images are tiny (48 x 64 by default) and all different (a random grid of colour
cells each), so embeddings differ; they are encoded here and written straight to disk,
several thousand files a second on one core.
"""

from __future__ import annotations

import io
import json
import os
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

FASHIONIQ_SPLITS = ("train", "val", "test")
# The published Fashion200k sizes (Han et al. 2017; the TIRG split).
F200K_TRAIN_IMAGES = 172_049
F200K_TEST_IMAGES = 29_789
F200K_TEST_QUERIES = 33_480
STANDIN_SIZE = (48, 64)  # (width, height): a portrait thumbnail
_GRID = (4, 3)  # (rows, columns) of colour cells per stand-in image


# --------------------------------------------------------------------------- images


def standin_jpegs(count: int, seed: int = 0, size: tuple[int, int] = STANDIN_SIZE) -> Iterator[bytes]:
    """``count`` distinct JPEG files' bytes: a random grid of colour cells each, ``size`` (w, h)."""
    from PIL import Image

    w, h = size
    rows, cols = _GRID
    if w % cols or h % rows:
        raise ValueError(f"stand-in size {size} must be a multiple of the {cols} x {rows} grid")
    rng = np.random.default_rng(seed)
    for start in range(0, count, 4096):
        cells = rng.integers(0, 256, (min(4096, count - start), rows, cols, 3), dtype=np.uint8)
        for grid in cells:  # (rows, cols, 3) -> (h, w, 3)
            pixels = np.repeat(np.repeat(grid, h // rows, axis=0), w // cols, axis=1)
            buf = io.BytesIO()
            Image.fromarray(pixels).save(buf, format="JPEG", quality=85)
            yield buf.getvalue()


def write_standins(paths: Sequence[Path], seed: int = 0, size: tuple[int, int] = STANDIN_SIZE) -> int:
    """Write one distinct stand-in JPEG to every path (folders created); returns the count."""
    made: set[Path] = set()
    for path, data in zip(paths, standin_jpegs(len(paths), seed, size), strict=True):
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        with open(path, "wb") as f:
            f.write(data)
    return len(paths)


def choose_missing(names: Iterable[str], count: int, seed: int = 0) -> set[str]:
    """A fixed seeded choice of ``count`` names (from the sorted names) to leave out."""
    ordered = sorted(set(names))
    if count > len(ordered):
        raise ValueError(f"cannot leave out {count} of {len(ordered)} images")
    rng = np.random.default_rng([seed, 7])
    return {ordered[i] for i in rng.choice(len(ordered), count, replace=False)}


# --------------------------------------------------------------------------- FashionIQ


def _read(path: Path) -> list:
    return json.loads(path.read_text(encoding="utf-8"))


def fashioniq_files(root: str | os.PathLike) -> list[tuple[str, str]]:
    """``(category, split)`` of every caption file under ``root/captions``, sorted."""
    out = []
    for path in sorted((Path(root) / "captions").glob("cap.*.*.json")):
        _, category, split, _ = path.name.split(".")
        out.append((category, split))
    if not out:
        raise FileNotFoundError(f"no FashionIQ caption files in {Path(root) / 'captions'}")
    return out


def fashioniq_image_ids(root: str | os.PathLike) -> list[str]:
    """Every image id the annotations name (galleries, candidates and targets), sorted."""
    root = Path(root)
    ids: set[str] = set()
    for category, split in fashioniq_files(root):
        ids.update(_read(root / "image_splits" / f"split.{category}.{split}.json"))
        for entry in _read(root / "captions" / f"cap.{category}.{split}.json"):
            ids.add(entry["candidate"])
            if "target" in entry:
                ids.add(entry["target"])
    return sorted(ids)


def fashioniq_expected_counts(root: str | os.PathLike, split: str, missing: set[str]) -> dict[str, int]:
    """What the FashionIQ loader must report for ``split`` when the images in ``missing``
    are absent: gallery ``images``, ``queries`` (annotations whose images all exist) and
    ``missing_images`` (named images absent), from the annotation files alone."""
    root = Path(root)
    images = queries = 0
    named: set[str] = set()
    for category, s in fashioniq_files(root):
        if s != split:
            continue
        ids = _read(root / "image_splits" / f"split.{category}.{split}.json")
        images += sum(i not in missing for i in ids)
        named.update(ids)
        for e in _read(root / "captions" / f"cap.{category}.{split}.json"):
            pair = (e["candidate"], e.get("target"))
            queries += not any(i in missing for i in pair if i)
            named.update(i for i in pair if i)
    return {"images": images, "queries": queries, "missing_images": len(named & missing)}


def slice_fashioniq(src: str | os.PathLike, dst: str | os.PathLike, triplets: int, gallery: int) -> Path:
    """A small FashionIQ root cut from real annotations: per category and split, the first
    ``triplets`` caption entries and a gallery of their images plus the first ``gallery``
    ids of the split file (in the files' own order)."""
    src, dst = Path(src), Path(dst)
    for sub in ("captions", "image_splits"):
        (dst / sub).mkdir(parents=True, exist_ok=True)
    for category, split in fashioniq_files(src):
        entries = _read(src / "captions" / f"cap.{category}.{split}.json")[:triplets]
        named = [i for e in entries for i in (e["candidate"], e.get("target")) if i]
        ids = _read(src / "image_splits" / f"split.{category}.{split}.json")[:gallery]
        kept = list(dict.fromkeys(ids + named))
        (dst / "captions" / f"cap.{category}.{split}.json").write_text(json.dumps(entries))
        (dst / "image_splits" / f"split.{category}.{split}.json").write_text(json.dumps(kept))
    return dst


def write_fashioniq_standins(
    annotations: str | os.PathLike,
    out: str | os.PathLike,
    missing: int = 300,
    seed: int = 0,
    size: tuple[int, int] = STANDIN_SIZE,
) -> dict:
    """A FashionIQ root at ``out``: links to the annotation folders of ``annotations`` and
    ``images/<ASIN>.jpg`` for every named image except ``missing`` left out (seeded).

    Returns ``{"images": written, "missing": sorted ids left out, "named": all ids}``.
    """
    annotations, out = Path(annotations).resolve(), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for sub in ("captions", "image_splits"):
        link = out / sub
        if not link.exists():
            link.symlink_to(annotations / sub, target_is_directory=True)
    named = fashioniq_image_ids(annotations)
    absent = choose_missing(named, missing, seed)
    present = [out / "images" / f"{i}.jpg" for i in named if i not in absent]
    written = write_standins(present, seed, size)
    return {"images": written, "missing": sorted(absent), "named": named}


# --------------------------------------------------------------------------- Fashion200k

# Caption word slots: colour, material, detail, then a garment noun of the category. The
# slots' words are disjoint, so two captions one slot apart give "replace X with Y".
_COLOURS = ("black", "white", "blue", "red", "green", "pink", "grey", "beige", "navy",
            "yellow", "purple", "brown", "orange", "ivory", "teal", "burgundy")
_MATERIALS = ("cotton", "silk", "lace", "denim", "leather", "wool", "linen", "satin",
              "chiffon", "jersey")
_DETAILS = ("fitted", "pleated", "ruffled", "embroidered", "printed", "striped", "floral",
            "belted")
# Fashion200k's five label files: category -> (image folder, garment nouns).
F200K_CATEGORIES = {
    "dress": ("dresses", ("dress", "gown", "sheath", "shift")),
    "jacket": ("jackets", ("jacket", "blazer", "coat", "parka")),
    "pants": ("pants", ("pants", "trousers", "jeans", "leggings")),
    "skirt": ("skirts", ("skirt", "miniskirt", "sarong", "kilt")),
    "top": ("tops", ("top", "blouse", "tee", "tank")),
}
_SLOTS = (_COLOURS, _MATERIALS, _DETAILS)


def f200k_slot_words(test_images: int) -> int:
    """Words used per colour/material/detail slot: about 2 test images per caption (a full
    test set uses 9, 9 and all 8), so that one-word siblings exist at every size."""
    per_slot = (test_images / 2 / (len(F200K_CATEGORIES) * 4)) ** (1 / 3)
    return max(2, min(max(map(len, _SLOTS)), int(per_slot)))


def _f200k_items(
    rng: np.random.Generator, n: int, first_id: int, slot_words: int
) -> list[tuple[str, str, str]]:
    """``n`` images as ``(category, relative path, caption)``: products of 1 to 3 views."""
    cats = list(F200K_CATEGORIES)
    slots = [s[:slot_words] for s in _SLOTS]
    out: list[tuple[str, str, str]] = []
    pid = first_id
    while len(out) < n:
        cat = cats[int(rng.integers(len(cats)))]
        folder, nouns = F200K_CATEGORIES[cat]
        words = [s[int(rng.integers(len(s)))] for s in slots] + [nouns[int(rng.integers(len(nouns)))]]
        caption = " ".join(words)
        for view in range(min(int(rng.integers(1, 4)), n - len(out))):
            out.append((cat, f"women/{folder}/{words[-1]}/{pid}/{pid}_{view}.jpeg", caption))
        pid += 1
    return out


def _f200k_queries(rng: np.random.Generator, items: list[tuple[str, str, str]], n: int) -> list[tuple[str, str]]:
    """``n`` distinct ``(source path, target path)`` pairs whose captions differ in one word."""
    by_caption: dict[str, list[str]] = defaultdict(list)
    for _, path, caption in items:
        by_caption[caption].append(path)
    siblings: dict[tuple, list[str]] = defaultdict(list)  # (slot, other words) -> captions
    for caption in by_caption:
        words = caption.split()
        for i in range(len(words)):
            siblings[(i, tuple(words[:i] + words[i + 1 :]))].append(caption)
    pairs: set[tuple[str, str]] = set()
    out: list[tuple[str, str]] = []
    for _ in range(50 * n):
        if len(out) == n:
            return out
        _, src, caption = items[int(rng.integers(len(items)))]
        words = caption.split()
        i = int(rng.integers(len(words)))
        others = [c for c in siblings[(i, tuple(words[:i] + words[i + 1 :]))] if c != caption]
        if not others:
            continue
        targets = by_caption[others[int(rng.integers(len(others)))]]
        pair = (src, targets[int(rng.integers(len(targets)))])
        if pair not in pairs:
            pairs.add(pair)
            out.append(pair)
    raise ValueError(f"could draw only {len(out)} of {n} distinct one-word test queries")


def write_fashion200k_standins(
    out: str | os.PathLike,
    train: int = F200K_TRAIN_IMAGES,
    test: int = F200K_TEST_IMAGES,
    queries: int = F200K_TEST_QUERIES,
    missing: int = 300,
    seed: int = 0,
    size: tuple[int, int] = STANDIN_SIZE,
) -> dict:
    """A Fashion200k root at ``out``: ``labels/<category>_<split>_detect_all.txt``,
    ``test_queries.txt`` and the image tree, every listed image written except ``missing``
    left out (seeded). Returns the counts and the ids left out."""
    out = Path(out)
    rng = np.random.default_rng([seed, 200])
    words = f200k_slot_words(test)
    splits = {"train": _f200k_items(rng, train, 10_000_000, words),
              "test": _f200k_items(rng, test, 90_000_000, words)}
    (out / "labels").mkdir(parents=True, exist_ok=True)
    for split, items in splits.items():
        lines: dict[str, list[str]] = {c: [] for c in F200K_CATEGORIES}
        for cat, path, caption in items:
            lines[cat].append(f"{path}\t{rng.uniform(0.5, 1.0):.6f}\t{caption}\n")
        for cat, rows in lines.items():
            (out / "labels" / f"{cat}_{split}_detect_all.txt").write_text("".join(rows), encoding="utf-8")
    pairs = _f200k_queries(rng, splits["test"], queries)
    (out / "test_queries.txt").write_text("".join(f"{s} {t}\n" for s, t in pairs), encoding="utf-8")
    paths = [path for items in splits.values() for _, path, _ in items]
    absent = choose_missing(paths, missing, seed)
    written = write_standins([out / p for p in paths if p not in absent], seed, size)
    return {
        "images": written,
        "train_images": len(splits["train"]),
        "test_images": len(splits["test"]),
        "queries": len(pairs),
        "missing": sorted(absent),
        "missing_test": sum(p in absent for _, p, _ in splits["test"]),
        "queries_with_missing": sum(s in absent or t in absent for s, t in pairs),
        "slot_words": words,
    }
