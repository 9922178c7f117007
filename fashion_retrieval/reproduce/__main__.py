"""CLI: ``python -m fashion_retrieval.reproduce RECIPE --data-root DIR --out DIR [--tiny]``."""

from __future__ import annotations

import argparse
import logging
import sys


def build_parser() -> argparse.ArgumentParser:
    """The command's arguments."""
    from fashion_retrieval.reproduce.recipes import load_recipes

    p = argparse.ArgumentParser(prog="python -m fashion_retrieval.reproduce",
                                description="Train a published recipe and run its official evaluation; "
                                            "writes OUT/reproduction.json and OUT/reproduction.md. "
                                            "Run it again to resume where it stopped.")
    p.add_argument("recipe", choices=sorted(load_recipes()))
    p.add_argument("--data-root", default=None, help="the data set's folder (its release layout)")
    p.add_argument("--out", required=True, help="where the runs, the evaluation and the report go")
    p.add_argument("--tiny", action="store_true",
                   help="a tiny random encoder and a few steps, then the full evaluation (CPU, minutes); "
                        "without --data-root it writes stand-in data")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command; 0 on success, 2 with a one-line error on bad input."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from fashion_retrieval.reproduce import reproduce
    from fashion_retrieval.reproduce.report import markdown

    try:
        report = reproduce(args.recipe, args.out, data_root=args.data_root, tiny=args.tiny)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
