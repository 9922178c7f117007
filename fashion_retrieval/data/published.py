"""Reading a published data set (``python -m fashion_retrieval.data.publish``) back.

A published data set is a Hub dataset: a ``triplets`` and a ``gallery`` config (parquet
shards, image bytes inside ``Image()`` columns) and a dataset card whose YAML front matter
holds, under ``fashion_retrieval``, what the original data set was (name, evaluation
protocol, evaluation split) and each split's counts, categories and what was missing.

``load_published(source, split)`` streams a split from a ``--out`` folder or a Hub repo id
(one code path: ``datasets`` with ``streaming=True``) into a ``RetrievalDataset`` whose
items, triplets, protocol and skip counts are those of the original split. Gallery images
are written once to a local cache (``$FASHION_RETRIEVAL_HOME/published/...``) with their
original bytes, so that evaluation, the feature cache and both apps read them like any
other image file, and recalls equal those on the original folders.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from fashion_retrieval.data.records import Item, RetrievalDataset, Triplet

CARD_KEY = "fashion_retrieval"
FORMAT_VERSION = 1
REPO_ID_PATTERN = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")  # owner/name
_SPLIT_ALIASES = {"val": "validation", "validation": "val"}


@dataclass
class SplitSummary:
    """What one published split holds and what the original copy was missing."""

    gallery: int
    triplets: int
    categories: list[str]
    missing_images: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    shards: dict[str, int] = field(default_factory=dict)  # {"gallery": n, "triplets": n}
    options: dict[str, Any] = field(default_factory=dict)  # the loader's settings (caption_mode...)


@dataclass
class PublishedCard:
    """The ``fashion_retrieval`` block of a published data set's card (YAML/JSON round trip)."""

    dataset: str  # the original data set: "fashioniq" or "fashion200k"
    protocol: str  # its evaluation protocol (``EVAL_PROTOCOLS`` name)
    eval_split: str  # the split its standard protocol ranks
    splits: dict[str, SplitSummary]
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (what the card's YAML holds)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str = "card") -> PublishedCard:
        """Build from the card's block; a ValueError names what is wrong."""
        if not isinstance(data, dict):
            raise ValueError(f"{where}: '{CARD_KEY}' must be a mapping, got {type(data).__name__}")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(
                f"{where}: published format version {version!r} is not supported "
                f"(this code reads version {FORMAT_VERSION}); publish the data set again"
            )
        try:
            splits = {str(k): SplitSummary(**v) for k, v in dict(data["splits"]).items()}
            return cls(str(data["dataset"]), str(data["protocol"]), str(data["eval_split"]), splits)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{where}: malformed '{CARD_KEY}' block ({err})") from None

    def resolve_split(self, split: str | None) -> str:
        """``split`` as the card names it; None or "" is the evaluation split."""
        if not split:
            return self.eval_split
        for name in (split, _SPLIT_ALIASES.get(split)):
            if name in self.splits:
                return name
        raise ValueError(
            f"the published {self.dataset} data set has no split {split!r}; "
            f"its splits: {', '.join(self.splits)}"
        )


def _is_local(source: str) -> bool:
    """Whether ``source`` names a local path rather than a Hub repo id."""
    return Path(source).expanduser().exists() or not REPO_ID_PATTERN.match(source)


def _card_file(source: str, revision: str | None, token: str | bool | None) -> Path:
    """The dataset card (README.md) of a published folder, or downloaded from the Hub."""
    if _is_local(source):
        folder = Path(source).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"published data set folder {source!r} does not exist")
        card = folder / "README.md"
        if not card.is_file():
            raise FileNotFoundError(
                f"{folder} has no README.md: not a published data set (write one with "
                "`python -m fashion_retrieval.data.publish --dataset ... --root ... --out ...`)"
            )
        return card
    from huggingface_hub import hf_hub_download

    try:
        return Path(
            hf_hub_download(source, "README.md", repo_type="dataset", revision=revision, token=token)
        )
    except Exception as exc:  # noqa: BLE001 - network, auth, missing repo: one clear message
        raise FileNotFoundError(
            f"{source!r} is not a folder here, and its dataset card could not be read from the "
            f"Hugging Face Hub as a dataset repo: {type(exc).__name__}: {exc}"
        ) from None


def front_matter(text: str, where: str = "README.md") -> dict[str, Any]:
    """The YAML front matter (between the leading ``---`` lines) of a card, as a dict."""
    import yaml

    lines = text.lstrip("\ufeff").splitlines()
    if not lines or lines[0].strip() != "---":
        raise ValueError(f"{where}: the dataset card has no YAML front matter")
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
    except StopIteration:
        raise ValueError(f"{where}: the card's YAML front matter is not closed by '---'") from None
    try:
        data = yaml.safe_load("\n".join(lines[1:end])) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{where}: invalid YAML front matter: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{where}: the YAML front matter is not a mapping")
    return data


def read_card(
    source: str | os.PathLike, *, revision: str | None = None, token: str | bool | None = None
) -> PublishedCard:
    """The ``PublishedCard`` of a published folder or Hub dataset repo."""
    source = os.fspath(source)
    path = _card_file(source, revision, token)
    meta = front_matter(path.read_text(encoding="utf-8"), str(path))
    if CARD_KEY not in meta:
        raise ValueError(
            f"{source}: the dataset card has no '{CARD_KEY}' block: it was not written by "
            "`python -m fashion_retrieval.data.publish`"
        )
    return PublishedCard.from_dict(meta[CARD_KEY], where=str(source))


def published_cache_dir(source: str, revision: str | None = None) -> Path:
    """Where a published set's gallery images are written: one folder per source and revision."""
    from fashion_retrieval.paths import published_dir

    if _is_local(source):
        resolved = str(Path(source).expanduser().resolve())
        digest = hashlib.sha1(resolved.encode()).hexdigest()[:12]
        slug = f"local-{Path(resolved).name}-{digest}"
    else:
        slug = "hub-" + source.replace("/", "--") + f"-{revision or 'main'}"
    return published_dir(re.sub(r"[^\w.-]+", "_", slug))


def _relative_name(path: str | None, item_id: str) -> PurePosixPath:
    """A safe relative file name: the original relative path, else one made from the id."""
    if path:
        rel = PurePosixPath(path.replace("\\", "/"))
        if not rel.is_absolute() and ".." not in rel.parts and rel.parts:
            return rel
    return PurePosixPath("by_id") / re.sub(r"[^\w.-]+", "_", item_id)


def materialise(image: dict[str, Any] | None, item_id: str, cache: Path) -> str:
    """Write an undecoded ``Image()`` value's bytes under ``cache`` (once); returns the file.

    A file already holding the same bytes is left alone (its mtime, which the feature
    cache keys on, stays); a different one is replaced atomically.
    """
    data = (image or {}).get("bytes")
    if data is None:
        raise ValueError(f"published gallery item {item_id!r} holds no image bytes")
    target = cache / _relative_name((image or {}).get("path"), item_id)
    if target.is_file() and target.stat().st_size == len(data) and target.read_bytes() == data:
        return str(target)
    from fashion_retrieval.io_utils import atomic_write_bytes

    return str(atomic_write_bytes(target, data))


def _items(rows: Iterator[dict[str, Any]], cache: Path | None) -> Iterator[Item]:
    """Items from gallery rows; images written under ``cache`` (None: no images, path "")."""
    for row in rows:
        path = "" if cache is None else materialise(row.get("image"), row["id"], cache)
        attributes = json.loads(row.get("attributes") or "{}")
        yield Item(row["id"], path, row["caption"] or "", row["category"], attributes)


def _triplets(rows: Iterator[dict[str, Any]]) -> Iterator[Triplet]:
    """Triplets from triplet rows (read without their image columns)."""
    for row in rows:
        yield Triplet(
            row["source_id"], row["target_id"], row["text"], row["category"],
            tuple(row.get("captions") or ()), row.get("target_caption") or "",
        )


def _check_categories(categories: list[str] | None, available: list[str], dataset: str) -> list[str] | None:
    """``categories`` after checking that the split has them (None: all)."""
    if not categories:
        return None
    unknown = sorted(set(categories) - set(available))
    if unknown:
        raise ValueError(f"unknown {dataset} categories {unknown}; the published split has {available}")
    return list(categories)


def load_published(
    source: str | os.PathLike | None,
    split: str | None = None,
    *,
    categories: list[str] | None = None,
    images: bool = True,
    cache_dir: str | os.PathLike | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
) -> RetrievalDataset:
    """Stream split ``split`` (None: the card's evaluation split) of a published data set.

    ``source`` is a ``publish --out`` folder or a Hub dataset repo id. The result has the
    original data set's name, protocol, items, triplets and skip counts; ``meta["published"]``
    records the source (training streams its triplets from there). ``images=False`` reads
    no image bytes and leaves item paths empty (enough to build a vocabulary and labels
    when training streams the images). ``categories`` keeps only those categories.
    """
    from fashion_retrieval.data.streaming import stream_published

    if source is None or not os.fspath(source):
        raise ValueError("a published data set needs a source: --data-root FOLDER_OR_HUB_REPO_ID")
    source = os.fspath(source)
    card = read_card(source, revision=revision, token=token)
    split = card.resolve_split(split)
    summary = card.splits[split]
    keep = _check_categories(categories, summary.categories, card.dataset)
    cache = (Path(cache_dir) if cache_dir else published_cache_dir(source, revision)) if images else None
    opts = {"revision": revision, "token": token}
    rows = stream_published(source, "items", split, images=images, decode=False, **opts)
    items = list(_items(iter(rows), cache))
    triplets = list(_triplets(iter(stream_published(source, "triplets", split, images=False, **opts))))
    if (len(items), len(triplets)) != (summary.gallery, summary.triplets):
        raise ValueError(
            f"{source} split {split!r}: read {len(items)} gallery rows and {len(triplets)} triplets "
            f"but the card says {summary.gallery} and {summary.triplets}: the copy is incomplete "
            "or changed after publishing"
        )
    if keep is not None:
        items = [it for it in items if it.category in keep]
        triplets = [t for t in triplets if t.category in keep]
    meta = {
        **summary.options,
        "categories": keep or list(summary.categories),
        "missing_images": summary.missing_images,
        "published": {"source": source, "revision": revision, "categories": keep, "images": images},
    }
    return RetrievalDataset(
        name=card.dataset, split=split, root=source, items=items, triplets=triplets,
        protocol=card.protocol, skipped=Counter(summary.skipped), meta=meta,
    )
