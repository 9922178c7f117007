"""Write the README's headline table from the comparison in docs/RESULTS.md.

``python scripts/headline.py [--results docs/RESULTS.md] [--readme README.md]`` reads the
table between ``<!-- comparison:start -->`` and ``<!-- comparison:end -->`` (written by
``python -m fashion_retrieval.training.compare ... --readme docs/RESULTS.md``) and puts a few
of its columns between ``<!-- headline:start -->`` and ``<!-- headline:end -->`` in the README.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ("<!-- comparison:start -->", "<!-- comparison:end -->")
TARGET = ("<!-- headline:start -->", "<!-- headline:end -->")
# (headline column, comparison column, columns to its right, part of an "a / b" cell or None)
COLUMNS = (("one gallery R@1", "one gallery R@1", 0, None), ("R@10", "one gallery R@1", 1, None),
           ("control, % of ceiling", "% of ceiling", 0, None),
           ("held-out phrasing R@10", "phrasing R@10 train / held out", 0, 1))


def between(text: str, start: str, end: str, where: str) -> str:
    """The text between one ``start`` and the following ``end`` marker."""
    if text.count(start) != 1 or text.count(end) != 1 or text.index(end) < text.index(start):
        raise ValueError(f"{where}: expected one {start!r} followed by one {end!r}")
    return text.split(start, 1)[1].split(end, 1)[0]


def headline(results_text: str, where: str = "docs/RESULTS.md") -> str:
    """The headline table (model, one-gallery R@1 and R@10, control, held-out phrasing)."""
    rows = [line for line in between(results_text, *SOURCE, where).splitlines() if line.startswith("|")]
    if len(rows) < 3:
        raise ValueError(f"{where}: the comparison block holds no table")
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    picks = []
    for _, column, offset, part in COLUMNS:
        if column not in header:
            raise ValueError(f"{where}: the comparison table has no column {column!r} (has {header})")
        picks.append((header.index(column) + offset, part))
    lines = ["| model | " + " | ".join(c[0] for c in COLUMNS) + " |", "|---|" + "---:|" * len(COLUMNS)]
    for row in rows[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        values = [cells[i] if part is None else cells[i].split("/")[part].strip() for i, part in picks]
        lines.append(f"| {cells[0]} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI: rewrite the README's headline block; 2 with a message on a missing block."""
    from fashion_retrieval.io_utils import replace_marked_block

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", type=Path, default=ROOT / "docs" / "RESULTS.md")
    p.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = p.parse_args(argv)
    try:
        table = headline(args.results.read_text(encoding="utf-8"), str(args.results))
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    replace_marked_block(args.readme, table, *TARGET)
    print(f"wrote the headline table into {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
