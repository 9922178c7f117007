"""CLI: ``python -m fashion_retrieval.data.synthetic --format ... --out DIR``."""

from __future__ import annotations

import argparse
import os
import sys
import time

from .attributes import CATEGORIES
from .catalog import PRESETS
from .writers import WRITERS, write_catalog


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    p = argparse.ArgumentParser(
        prog="python -m fashion_retrieval.data.synthetic",
        description="Render a synthetic fashion catalogue in a real data set's on-disk layout.",
    )
    p.add_argument("--format", required=True, choices=WRITERS.names())
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--products", type=int, default=600, help="number of products (default 600)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--preset", choices=list(PRESETS), default="easy")
    p.add_argument("--image-size", type=int, default=128, help="image side in pixels")
    p.add_argument("--views", type=int, default=3, help="images per product")
    p.add_argument("--workers", type=int, default=None,
                   help="rendering processes (default: the CPU count, at most 8)")
    p.add_argument("--categories", nargs="+", choices=list(CATEGORIES), default=None)
    p.add_argument("--overwrite", action="store_true",
                   help="replace a catalogue made with other parameters in --out")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; prints a one-line summary."""
    args = build_parser().parse_args(argv)
    workers = args.workers if args.workers is not None else min(8, os.cpu_count() or 1)
    start = time.perf_counter()
    try:
        summary = write_catalog(args.out, args.format, args.products, args.seed, args.preset,
                                args.image_size, args.views, workers, args.categories,
                                args.overwrite)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    rate = summary.get("rendered", 0) / seconds if seconds > 0 else 0.0
    counts = ", ".join(f"{k}={v}" for k, v in summary.items())
    print(f"wrote {args.out}: {counts} in {seconds:.1f}s ({rate:.0f} images/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
