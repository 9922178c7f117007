"""FashionIQ, read exactly as released (Wu et al. 2021).

Layout under ``root``::

    captions/cap.<category>.<split>.json         [{"candidate", "target", "captions": [c1, c2]}]
    image_splits/split.<category>.<split>.json   [ASIN, ...]: the split's gallery
    images/<ASIN>.jpg (or .png)
    image_meta.json                              optional {ASIN: {"caption", "attributes", ...}}

Real copies always miss some images (many source links are dead): triplets that need a
missing image are skipped and counted, with one warning, never a crash.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fashion_retrieval.data._skips import SkipLog
from fashion_retrieval.data.records import Item, RetrievalDataset, Triplet

SPLITS = ("train", "val", "test")
IMAGE_EXTENSIONS = (".jpg", ".png", ".jpeg")
_CAPTION_RE = re.compile(r"^cap\.(?P<category>[^.]+)\.(?P<split>[^.]+)\.json$")


CLIP4CIR_STRIP = ".?, "  # the characters CLIP4Cir strips from both ends of each caption


def _join_captions(captions: list[str]) -> list[str]:
    """One query text per annotation: "c1 and c2", the captions as annotated (whitespace
    stripped), as DESIGN's standard protocol states it.

    Neither google/tirg (no FashionIQ loader) nor the FashionIQ starter kit defines a text
    string: the starter kit (``start_kit/data_loader.py``, ``Dataset.__getitem__``) lower-cases
    and tokenizes c1, adds an ``<and>`` token, then c2; this is that join in plain words.
    """
    return [" and ".join(captions)]


def _separate_captions(captions: list[str]) -> list[str]:
    """One query text per caption."""
    return list(captions)


def clip4cir_caption_forms(captions: list[str] | tuple[str, ...]) -> list[str]:
    """CLIP4Cir's FashionIQ texts, in order: "C1 and c2", "C2 and c1", "C1", "C2".

    Each caption is stripped of ".?, " at both ends and the leading one goes through
    ``str.capitalize`` (first letter upper case, the rest lower case), as CLIP4Cir's
    ``generate_randomized_fiq_caption`` (src/utils.py, its four training forms) and
    ``generate_fiq_val_predictions`` (src/validate.py, the first form) do. One caption
    gives the one form "C1".
    """
    caps = [c.strip(CLIP4CIR_STRIP) for c in captions]
    if len(caps) == 1:
        return [caps[0].capitalize()]
    first, second = caps[0], caps[1]
    return [f"{first.capitalize()} and {second}", f"{second.capitalize()} and {first}",
            first.capitalize(), second.capitalize()]


def _clip4cir_captions(captions: list[str]) -> list[str]:
    """One query text per annotation: CLIP4Cir's validation text "C1 and c2" (stripped)."""
    return clip4cir_caption_forms(captions)[:1]


# The one definition of a FashionIQ query text: the loader makes the triplets' texts with
# it (evaluation and the fixed training texts) and training/data.py draws from it.
CAPTION_MODES: dict[str, Callable[[list[str]], list[str]]] = {
    "join": _join_captions,
    "separate": _separate_captions,
    "clip4cir": _clip4cir_captions,
}

# The loader caption mode that evaluates a run trained with each ``train_caption_mode``:
# the text it trained on (``join``), or CLIP4Cir's validation text for its random forms.
TRAIN_CAPTION_LOADER_MODES = {"join": "join", "random": "clip4cir"}


def query_texts(captions: list[str] | tuple[str, ...], caption_mode: str = "join") -> list[str]:
    """The query texts of one annotation's (whitespace-stripped, non-empty) captions under
    ``caption_mode`` (``CAPTION_MODES``); an unknown mode raises a ValueError listing them."""
    if caption_mode not in CAPTION_MODES:
        raise ValueError(
            f"unknown caption_mode {caption_mode!r}; valid: {', '.join(CAPTION_MODES)}"
        )
    return CAPTION_MODES[caption_mode](list(captions))


def loader_caption_mode(train_caption_mode: str) -> str:
    """The loader ``caption_mode`` whose query texts match a run's ``train_caption_mode``."""
    if train_caption_mode not in TRAIN_CAPTION_LOADER_MODES:
        raise ValueError(f"train_caption_mode={train_caption_mode!r} is not valid; "
                         f"choose one of {', '.join(TRAIN_CAPTION_LOADER_MODES)}")
    return TRAIN_CAPTION_LOADER_MODES[train_caption_mode]


def read_json(path: Path) -> Any:
    """Parse a JSON file (UTF-8/16/32); a clear ValueError names the file when it cannot."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"FashionIQ file not found: {path}") from None
    try:
        return json.loads(data)  # bytes: json detects UTF-8/16/32 itself
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{path}: not UTF-8/16/32 text ({exc.reason} at byte {exc.start})"
        ) from None
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None


def read_json_list(path: Path) -> list:
    """A JSON file that must hold a list (ValueError naming the file otherwise)."""
    data = read_json(path)
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list, got a {type(data).__name__}")
    return data


def available_categories(root: str | os.PathLike, split: str) -> list[str]:
    """Sorted categories whose ``captions/cap.<category>.<split>.json`` exists."""
    captions = Path(root) / "captions"
    if not captions.is_dir():
        raise FileNotFoundError(f"FashionIQ captions folder not found: {captions}")
    return sorted(
        m["category"]
        for p in captions.iterdir()
        if (m := _CAPTION_RE.match(p.name)) and m["split"] == split
    )


def _image_index(images_dir: Path) -> dict[str, str]:
    """``{ASIN: image path}`` from one directory listing (``.jpg`` preferred to ``.png``)."""
    found: dict[str, str] = {}
    if not images_dir.is_dir():
        return found
    rank = {ext: i for i, ext in enumerate(IMAGE_EXTENSIONS)}
    best: dict[str, int] = {}
    with os.scandir(images_dir) as entries:
        for entry in entries:
            stem, ext = os.path.splitext(entry.name)
            r = rank.get(ext.lower())
            if r is not None and r < best.get(stem, len(rank)) and entry.is_file():
                best[stem], found[stem] = r, entry.path
    return found


def _read_gallery(path: Path, log: SkipLog) -> list[str]:
    """The ASINs of a split file; bad and repeated entries are logged and skipped."""
    ids, seen = [], set()
    for n, entry in enumerate(read_json_list(path)):
        if not isinstance(entry, str) or not entry.strip():
            log.skip(
                "bad_entry",
                f"{path} entry {n}",
                f"expected a non-empty image id string, got {entry!r}",
            )
        elif entry in seen:
            log.skip("duplicate", f"{path} entry {n}", f"image id {entry!r} listed again")
        else:
            seen.add(entry)
            ids.append(entry)
    return ids


def _parse_annotation(
    entry: Any, where: str, test: bool, log: SkipLog
) -> tuple[str, str | None, list[str]] | None:
    """``(candidate, target, non-empty captions)`` of one annotation, or None (logged).

    An annotation with an empty caption beside a usable one is kept with the usable one: it
    is not skipped, only noted (``log.notes["one_caption_empty"]``).
    """
    if not isinstance(entry, dict):
        log.skip("bad_entry", where, f"expected an object, got {type(entry).__name__}")
        return None
    needed = ("candidate", "captions") if test else ("candidate", "target", "captions")
    missing = [k for k in needed if k not in entry]
    if missing:
        log.skip("bad_entry", where, f"missing key(s) {missing}")
        return None
    candidate, target, captions = (
        entry["candidate"],
        None if test else entry["target"],
        entry["captions"],
    )
    if not isinstance(candidate, str) or not (test or isinstance(target, str)):
        log.skip("bad_entry", where, "candidate and target must be image id strings")
        return None
    if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
        log.skip("bad_entry", where, "captions must be a list of strings")
        return None
    kept = [c.strip() for c in captions if c.strip()]
    if not kept:
        log.skip("no_caption", where, "no non-empty caption left")
        return None
    if len(kept) < len(captions):
        log.note("one_caption_empty", where,
                 f"{len(captions) - len(kept)} empty caption(s); the other caption is used")
    return candidate, target, kept


class _Context:
    """What reading one split needs: the image index, the metadata, the skip log."""

    def __init__(self, root: Path, check_images: bool, log: SkipLog) -> None:
        self.root = root
        self.check_images = check_images
        self.log = log
        self.images = _image_index(root / "images") if check_images else {}
        if check_images and not (root / "images").is_dir():
            warnings.warn(
                f"FashionIQ images folder not found: {root / 'images'}; every image counts as missing",
                stacklevel=4,
            )
        meta_path = root / "image_meta.json"
        self.meta: dict[str, Any] = read_json(meta_path) if meta_path.is_file() else {}
        if not isinstance(self.meta, dict):
            raise ValueError(f"{meta_path}: expected a JSON object {{id: {{...}}}}")
        self.missing: set[str] = set()

    def path_of(self, image_id: str) -> str | None:
        """The image path, or None (remembered as missing) when it is not on disk."""
        if not self.check_images:
            return str(self.root / "images" / f"{image_id}.jpg")
        path = self.images.get(image_id)
        if path is None:
            self.missing.add(image_id)
        return path

    def caption_of(self, image_id: str) -> str:
        """The image's own caption from ``image_meta.json`` ("" without one)."""
        info = self.meta.get(image_id)
        return str(info.get("caption", "")) if isinstance(info, dict) else ""

    def item(self, image_id: str, path: str, category: str) -> Item:
        """An ``Item`` with the metadata's caption and attributes when present."""
        info = self.meta.get(image_id)
        attrs = info.get("attributes", {}) if isinstance(info, dict) else {}
        attrs = {str(k): str(v) for k, v in attrs.items()} if isinstance(attrs, dict) else {}
        return Item(image_id, path, self.caption_of(image_id), category, attrs)


def _load_category(
    ctx: _Context, category: str, split: str, caption_mode: str
) -> tuple[list[Item], list[Triplet]]:
    """Gallery items and triplets of one category."""
    split_path = ctx.root / "image_splits" / f"split.{category}.{split}.json"
    items, in_split = [], set()
    for image_id in _read_gallery(split_path, ctx.log):
        in_split.add(image_id)
        path = ctx.path_of(image_id)
        if path is None:
            ctx.log.add("missing_gallery_image", 1)
        else:
            items.append(ctx.item(image_id, path, category))
    cap_path = ctx.root / "captions" / f"cap.{category}.{split}.json"
    triplets = []
    for n, entry in enumerate(read_json_list(cap_path)):
        where = f"{cap_path} entry {n}"
        parsed = _parse_annotation(entry, where, split == "test", ctx.log)
        if parsed is None:
            continue
        source, target, captions = parsed
        ids = [source] if target is None else [source, target]
        outside = [i for i in ids if i not in in_split]
        if outside:
            ctx.log.skip("not_in_split", where, f"image(s) {outside} not in {split_path.name}")
            continue
        if any(ctx.path_of(i) is None for i in ids):
            ctx.log.add("missing_image", 1)
            continue
        target_caption = ctx.caption_of(target) if target is not None else ""
        for text in query_texts(captions, caption_mode):
            triplets.append(
                Triplet(source, target, text, category, tuple(captions), target_caption)
            )
    return items, triplets


def load_fashioniq(
    root: str | os.PathLike,
    split: str = "val",
    categories: list[str] | None = None,
    caption_mode: str = "join",
    *,
    check_images: bool = True,
) -> RetrievalDataset:
    """Read a FashionIQ split into a ``RetrievalDataset`` (protocol ``fashioniq``).

    ``categories=None`` takes every category with a caption file for ``split``. The
    gallery is each category's whole ``image_splits`` list (an id listed by two categories
    gives one item per category). ``caption_mode="join"`` makes one query "c1 and c2" per
    annotation, ``"clip4cir"`` one query "C1 and c2" stripped of ".?, " (CLIP4Cir's
    validation text), ``"separate"`` one query per caption (``query_texts``). The test
    split has no targets.
    Missing images (``check_images=False`` skips the check) and bad entries are skipped,
    counted in ``dataset.skipped`` and reported in one warning. An annotation with one empty
    caption is kept with the other and counted apart, in ``meta["one_caption_empty"]``.
    """
    if split not in SPLITS:
        raise ValueError(f"FashionIQ split must be one of {SPLITS}, got {split!r}")
    if caption_mode not in CAPTION_MODES:
        raise ValueError(
            f"unknown caption_mode {caption_mode!r}; valid: {', '.join(CAPTION_MODES)}"
        )
    root = Path(root)
    found = available_categories(root, split)
    if categories is None:
        categories = found
        if not categories:
            raise FileNotFoundError(
                f"no FashionIQ caption files 'cap.<category>.{split}.json' in {root / 'captions'}"
            )
    unknown = sorted(set(categories) - set(found))
    if unknown:
        raise FileNotFoundError(
            f"no FashionIQ caption file for {unknown} in {root / 'captions'} (split {split!r}); available: {found}"
        )
    ctx = _Context(root, check_images, SkipLog(f"FashionIQ {split} at {root}"))
    items, triplets = [], []
    for category in categories:
        cat_items, cat_triplets = _load_category(ctx, category, split, caption_mode)
        items += cat_items
        triplets += cat_triplets
    ctx.log.warn_summary()
    meta = {
        "categories": list(categories),
        "caption_mode": caption_mode,
        "missing_images": len(ctx.missing),
        "one_caption_empty": ctx.log.notes["one_caption_empty"],
    }
    return RetrievalDataset(
        name="fashioniq",
        split=split,
        root=str(root),
        items=items,
        triplets=triplets,
        protocol="fashioniq",
        skipped=ctx.log.counts,
        meta=meta,
    )
