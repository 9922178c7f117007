"""Summarise a data set on disk as one JSON object.

    python -m fashion_retrieval.data.inspect --dataset fashioniq --root DIR --split val

prints ``{"images", "queries", "missing_images", "categories": {cat: {"images", "queries"}},
"skipped"}`` plus the data set's name, split and protocol.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence
from typing import Any

from fashion_retrieval.data import DATASETS, load_retrieval_dataset
from fashion_retrieval.data.records import RetrievalDataset


def summarize(dataset: RetrievalDataset) -> dict[str, Any]:
    """The counts of a loaded data set: the JSON object ``inspect`` prints (images, queries,
    missing images, and images and queries per category), shown in README.md."""
    images = Counter(it.category for it in dataset.items)
    queries = Counter(t.category for t in dataset.triplets)
    missing = dataset.meta.get("missing_images", dataset.skipped.get("missing_image", 0))
    return {
        "dataset": dataset.name,
        "split": dataset.split,
        "protocol": dataset.protocol,
        "images": len(dataset.items),
        "queries": len(dataset.triplets),
        "missing_images": int(missing),
        "categories": {
            cat: {"images": images.get(cat, 0), "queries": queries.get(cat, 0)}
            for cat in sorted(set(images) | set(queries) | set(dataset.meta.get("categories", [])))
        },
        "skipped": dict(sorted(dataset.skipped.items())),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: load the data set and print its summary as JSON on stdout."""
    parser = argparse.ArgumentParser(
        prog="python -m fashion_retrieval.data.inspect", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--dataset", required=True, choices=DATASETS.names())
    parser.add_argument("--root", required=True, help="data set folder")
    parser.add_argument(
        "--split", required=True, help="train, val or test (Fashion200k: train or test)"
    )
    parser.add_argument("--categories", nargs="+", default=None, help="only these categories")
    parser.add_argument(
        "--no-check-images", action="store_true", help="do not check that image files exist"
    )
    args = parser.parse_args(argv)
    options: dict[str, Any] = {}
    if args.categories:
        options["categories"] = args.categories
    if args.no_check_images:
        options["check_images"] = False
    try:
        dataset = load_retrieval_dataset(args.dataset, args.root, args.split, **options)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summarize(dataset), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
