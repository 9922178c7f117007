"""``python -m fashion_retrieval.data.publish``: a FashionIQ or Fashion200k copy as a Hub dataset.

    python -m fashion_retrieval.data.publish --dataset {fashioniq,fashion200k} --root DIR \\
        (--repo-id USER/NAME | --out DIR)

Every split the copy holds is read with the project's own loader (so missing images are
skipped and counted exactly as training and evaluation skip them) and written as parquet
shards in two configs: ``triplets`` (the rows of ``streaming.to_iterable_dataset``: source
and target images, text, ids, category, captions) and ``gallery`` (image, id, caption,
category, attributes). Image columns are ``Image()`` holding the original file bytes, never
re-encoded, so recalls on the published copy equal those on the folders. The dataset card
(README.md) declares the configs for ``datasets.load_dataset(..., streaming=True)`` and,
under ``fashion_retrieval``, the original protocol, the evaluation split, and each split's
counts, categories and what was missing. ``--repo-id`` uploads with ``huggingface_hub``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fashion_retrieval.data.published import (
    CARD_KEY,
    REPO_ID_PATTERN,
    PublishedCard,
    SplitSummary,
    front_matter,
)
from fashion_retrieval.data.records import RetrievalDataset

PUBLISH_SPLITS = {"fashioniq": ("train", "val", "test"), "fashion200k": ("train", "test")}
EVAL_SPLITS = {"fashioniq": "val", "fashion200k": "test"}
CONFIGS = {"triplets": "triplets", "items": "gallery"}  # kind of row -> config name
ROW_GROUP = 100  # rows per parquet row group: a streamed row group of images stays small
SHARD_MULTIPLE = 8  # several shards come in multiples of 8: whole shards per 1, 2, 4, 8 processes
PROTOCOL_NOTES = {
    "fashioniq": (
        "FashionIQ (Wu et al. 2021): the val split; each query (the two captions joined as "
        '"c1 and c2") is ranked against the whole gallery of its category; a hit is the '
        "target image; R@10 and R@50 per category and their average."
    ),
    "fashion200k": (
        "Fashion200k as in TIRG (Vo et al. 2019): the test split's queries "
        "(`test_queries.txt`, text `replace X with Y`) ranked against the whole test gallery, "
        "the query image excluded; a hit is an image whose caption equals the target caption; "
        "R@1, R@10, R@50."
    ),
}


@dataclass
class PublishConfig:
    """What to publish and where (the command line's options)."""

    dataset: str
    root: str
    out: str | None = None
    repo_id: str | None = None
    private: bool = False
    splits: list[str] | None = None  # None: every split the copy holds
    max_shard_mb: float = 256.0
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.dataset not in PUBLISH_SPLITS:
            raise ValueError(f"--dataset {self.dataset!r}: choose one of {', '.join(PUBLISH_SPLITS)}")
        if not self.out and not self.repo_id:
            raise ValueError("give --out DIR, --repo-id USER/NAME, or both")
        if self.repo_id and not REPO_ID_PATTERN.match(self.repo_id):
            raise ValueError(f"--repo-id {self.repo_id!r} is not a Hub repo id of the form USER/NAME")
        valid = PUBLISH_SPLITS[self.dataset]
        unknown = sorted(set(self.splits or ()) - set(valid))
        if unknown:
            raise ValueError(f"{self.dataset} has no split(s) {unknown}; valid: {', '.join(valid)}")
        if not self.max_shard_mb > 0:
            raise ValueError(f"--max-shard-mb must be > 0, got {self.max_shard_mb}")

    def to_dict(self) -> dict[str, Any]:
        """A plain dict of the fields."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PublishConfig:
        """Build from a dict (unknown keys are a TypeError naming them)."""
        return cls(**data)


def load_splits(config: PublishConfig) -> dict[str, RetrievalDataset]:
    """Each split of the copy at ``config.root``, read with the project's loader."""
    from fashion_retrieval.data import load_retrieval_dataset

    root = Path(config.root).expanduser()
    if not root.is_dir():
        raise ValueError(f"--root {config.root}: folder does not exist")
    loaded, problems = {}, []
    for split in config.splits or PUBLISH_SPLITS[config.dataset]:
        try:
            loaded[split] = load_retrieval_dataset(config.dataset, root, split)
        except FileNotFoundError as err:
            if config.splits:  # asked for explicitly
                raise ValueError(f"--root {root}: split {split!r}: {err}") from None
            problems.append(f"{split}: {err}")
    if not loaded:
        raise ValueError(
            f"--root {root} holds no {config.dataset} split (is --dataset right?): " + "; ".join(problems)
        )
    if not any(ds.items for ds in loaded.values()):
        missing = sum(int(ds.meta.get("missing_images", 0)) for ds in loaded.values())
        raise ValueError(
            f"--root {root}: none of the listed images was found ({missing} missing); "
            "nothing to publish (are the images in the layout the data set uses?)"
        )
    return loaded


def _relative(path: str, root: Path) -> str:
    """``path`` relative to ``root`` in POSIX form (the file name when it lies outside)."""
    rel = os.path.relpath(path, root)
    return Path(path).name if rel.startswith("..") else Path(rel).as_posix()


def _embed(row: dict[str, Any], pictures: list[str], root: Path, skipped: Counter, kind: str) -> dict | None:
    """The row with each image path replaced by ``{"bytes", "path"}``; None when one is unreadable."""
    for column in pictures:
        path = row[column]
        if path is None:
            continue
        try:
            data = Path(path).read_bytes()
        except OSError:
            skipped["unreadable_gallery_image" if kind == "items" else "unreadable_image"] += 1
            return None
        row[column] = {"bytes": data, "path": _relative(path, root)}
    return row


def shard_count(total_bytes: int, max_shard_bytes: int) -> int:
    """Number of parquet shards: one, or a multiple of ``SHARD_MULTIPLE`` under the size cap."""
    n = max(1, math.ceil(total_bytes / max_shard_bytes))
    return n if n == 1 else math.ceil(n / SHARD_MULTIPLE) * SHARD_MULTIPLE


def _image_bytes(row: dict[str, Any], pictures: list[str]) -> int:
    """The bytes the row's image files will take (0 for a file that cannot be read)."""
    total = 0
    for column in pictures:
        try:
            total += os.path.getsize(row[column]) if row[column] else 0
        except OSError:
            pass
    return total


def write_split(
    dataset: RetrievalDataset, kind: str, out: Path, max_shard_bytes: int, skipped: Counter
) -> tuple[int, int]:
    """Write the ``kind`` rows of one split as parquet shards; returns (rows written, shards)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from fashion_retrieval.data.streaming import image_columns, iter_rows, row_features

    features = row_features(kind)
    schema, pictures = features.arrow_schema, image_columns(features)
    rows = list(iter_rows(dataset, kind))
    n = min(max(1, len(rows)), shard_count(sum(_image_bytes(r, pictures) for r in rows), max_shard_bytes))
    folder = out / CONFIGS[kind]
    folder.mkdir(parents=True, exist_ok=True)
    root, written = Path(dataset.root), 0
    for s in range(n):
        part = rows[len(rows) * s // n : len(rows) * (s + 1) // n]
        path = folder / f"{dataset.split}-{s:05d}-of-{n:05d}.parquet"
        with pq.ParquetWriter(str(path), schema) as writer:
            for start in range(0, len(part), ROW_GROUP):
                batch = [_embed(dict(r), pictures, root, skipped, kind) for r in part[start : start + ROW_GROUP]]
                batch = [r for r in batch if r is not None]
                if batch:
                    writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                    written += len(batch)
    return written, n


def _options(meta: dict[str, Any]) -> dict[str, Any]:
    """The loader settings worth keeping in the card (plain values only)."""
    plain = (str, int, float, bool)
    return {k: v for k, v in meta.items() if k not in ("categories", "missing_images") and isinstance(v, plain)}


def _prepare_out(out: Path, overwrite: bool) -> None:
    """Refuse a folder holding other files; clear a previous publish when ``overwrite``."""
    if not out.exists() or not any(out.iterdir()):
        out.mkdir(parents=True, exist_ok=True)
        return
    card = out / "README.md"
    previous = card.is_file() and CARD_KEY in front_matter(card.read_text(encoding="utf-8"), str(card))
    if not previous:
        raise ValueError(f"--out {out} is not empty and is not a published data set; choose an empty folder")
    if not overwrite:
        raise ValueError(f"--out {out} already holds a published data set; pass --overwrite to replace it")
    for name in CONFIGS.values():
        shutil.rmtree(out / name, ignore_errors=True)
    card.unlink()


def write_published(config: PublishConfig, loaded: dict[str, RetrievalDataset], out: Path) -> PublishedCard:
    """Write the shards of every loaded split and, last, the dataset card; returns the card."""
    _prepare_out(out, config.overwrite)
    max_bytes = max(1, int(config.max_shard_mb * 1024 * 1024))
    splits = {}
    for split, ds in loaded.items():
        skipped = Counter(ds.skipped)
        gallery, gallery_shards = write_split(ds, "items", out, max_bytes, skipped)
        triplets, triplet_shards = write_split(ds, "triplets", out, max_bytes, skipped)
        splits[split] = SplitSummary(
            gallery=gallery,
            triplets=triplets,
            categories=list(ds.meta.get("categories") or ds.categories()),
            missing_images=int(ds.meta.get("missing_images", skipped.get("missing_image", 0))),
            skipped={k: int(v) for k, v in sorted(skipped.items())},
            shards={"gallery": gallery_shards, "triplets": triplet_shards},
            options=_options(ds.meta),
        )
    eval_split = EVAL_SPLITS[config.dataset]
    card = PublishedCard(config.dataset, config.dataset, eval_split if eval_split in splits else next(iter(splits)), splits)
    (out / "README.md").write_text(card_text(card, config), encoding="utf-8")
    return card


def card_text(card: PublishedCard, config: PublishConfig) -> str:
    """The dataset card: YAML front matter (configs, ``fashion_retrieval`` block) and a body."""
    import yaml

    configs = [
        {"config_name": name, "data_files": [{"split": s, "path": f"{name}/{s}-*.parquet"} for s in card.splits]}
        for name in ("triplets", "gallery")
    ]
    header = {
        "configs": configs,
        "pretty_name": f"{card.dataset} (composed image retrieval)",
        "tags": ["fashion", "composed-image-retrieval", "image-retrieval"],
        CARD_KEY: card.to_dict(),
    }
    where = config.repo_id or "path/to/this/folder"
    rows = [
        f"| {s} | {v.gallery} | {v.triplets} | {', '.join(v.categories)} | {v.missing_images} |"
        for s, v in card.splits.items()
    ]
    missing = [
        f"- **{s}**: {v.missing_images} image(s) missing from the copy; skipped: "
        + ", ".join(f"{k}={n}" for k, n in v.skipped.items())
        for s, v in card.splits.items() if v.skipped or v.missing_images
    ]
    body = f"""# {card.dataset}, published for composed image retrieval

Written by `python -m fashion_retrieval.data.publish --dataset {card.dataset}` from a local copy.
Images are the original files' bytes (`Image()` columns, not re-encoded).

## Configs

- `triplets`: one row per query: `source`, `target` (images; `target` is empty where a split
  has no ground truth), `text`, `source_id`, `target_id`, `category`, `target_caption`, `captions`.
- `gallery`: one row per catalogue image: `image`, `id`, `caption`, `category`, `attributes` (JSON).

## Splits

| split | gallery images | triplets | categories | missing images |
|---|---|---|---|---|
{chr(10).join(rows)}

## What was missing

{chr(10).join(missing) if missing else "Nothing: every listed image was found."}

## Evaluation protocol: `{card.protocol}` on the `{card.eval_split}` split

{PROTOCOL_NOTES.get(card.protocol, card.protocol)}

## Use

```python
from datasets import load_dataset
triplets = load_dataset("{where}", "triplets", split="train", streaming=True)
```

```
accelerate launch training/train.py --dataset published --data-root {where} --streaming true
python training/evaluate.py --checkpoint RUN/final --dataset published --data-root {where} --split {card.eval_split} --json eval.json
python app.py --checkpoint RUN/final --dataset published --gallery {where}
```

The images and annotations stay under the terms of the original {card.dataset} release.
"""
    return "---\n" + yaml.safe_dump(header, sort_keys=False) + "---\n\n" + body


def upload(folder: str | Path, repo_id: str, *, api: Any = None, private: bool = False) -> str:
    """Upload a published folder to the Hub dataset repo ``repo_id`` (created if needed)."""
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    api.create_repo(repo_id=repo_id, repo_type="dataset", private=private, exist_ok=True)
    info = api.upload_folder(
        folder_path=str(folder), repo_id=repo_id, repo_type="dataset",
        commit_message="Publish with fashion_retrieval.data.publish",
    )
    return str(getattr(info, "commit_url", info))


def publish(config: PublishConfig, *, api: Any = None) -> dict[str, Any]:
    """Read the copy, write the published folder (``out`` or a temporary one), upload it if
    ``repo_id`` is set; returns a summary (folder, repo, url, per-split counts)."""
    loaded = load_splits(config)
    url = None
    if config.out:
        card = write_published(config, loaded, Path(config.out).expanduser())
        if config.repo_id:
            url = upload(config.out, config.repo_id, api=api, private=config.private)
    else:
        with tempfile.TemporaryDirectory(prefix="fashion_publish_") as tmp:
            card = write_published(config, loaded, Path(tmp))
            url = upload(tmp, config.repo_id, api=api, private=config.private)
    counts = {s: {"gallery": v.gallery, "triplets": v.triplets, "missing_images": v.missing_images}
              for s, v in card.splits.items()}
    return {"dataset": config.dataset, "out": config.out, "repo_id": config.repo_id, "url": url,
            "protocol": card.protocol, "splits": counts}


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    p = argparse.ArgumentParser(
        prog="python -m fashion_retrieval.data.publish",
        description="Write a FashionIQ or Fashion200k copy as a Hub dataset (parquet, Image() columns).",
    )
    p.add_argument("--dataset", required=True, choices=list(PUBLISH_SPLITS))
    p.add_argument("--root", required=True, help="the local copy, in the data set's released layout")
    p.add_argument("--out", default=None, help="write the dataset folder here")
    p.add_argument("--repo-id", default=None, help="upload to this Hub dataset repo (USER/NAME)")
    p.add_argument("--private", action="store_true", help="create the Hub repo private")
    p.add_argument("--splits", default=None, help="comma-separated (default: every split the copy holds)")
    p.add_argument("--max-shard-mb", type=float, default=256.0, help="parquet shard size cap (default 256)")
    p.add_argument("--overwrite", action="store_true", help="replace a previous publish in --out")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; prints one JSON summary line; errors exit 2 with a message."""
    args = build_parser().parse_args(argv)
    try:
        config = PublishConfig(
            args.dataset, args.root, args.out, args.repo_id, args.private,
            [s.strip() for s in args.splits.split(",") if s.strip()] if args.splits else None,
            args.max_shard_mb, args.overwrite,
        )
        summary = publish(config)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
