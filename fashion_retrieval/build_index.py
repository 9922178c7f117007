"""Index a catalogue for a checkpoint, split across processes, ahead of serving it.

    accelerate launch [--num_processes N] -m fashion_retrieval.build_index \\
        --checkpoint CK --gallery DIR [--dataset D] [--split S]

(or ``python -m fashion_retrieval.build_index ...`` in one process). ``python app.py
--checkpoint CK --gallery DIR`` then reuses the index without embedding anything. Prints one
JSON summary line; bad input exits 2 with a message. See docs/INDEXING.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from fashion_retrieval.data import DATASETS
from fashion_retrieval.serving.catalogue import PHOTOS


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    p = argparse.ArgumentParser(
        prog="accelerate launch -m fashion_retrieval.build_index",
        description="Embed and index a catalogue across processes; the app reuses the index.",
    )
    p.add_argument("--checkpoint", required=True, help="a checkpoint folder or Hub repo id")
    p.add_argument("--gallery", required=True,
                   help="a data set root, a published data set (folder or Hub repo id) or any photo folder")
    p.add_argument("--dataset", default=None, choices=[*DATASETS.names(), PHOTOS],
                   help="layout of --gallery (default: detected)")
    p.add_argument("--split", default=None, help="split of --gallery (default: the evaluation split)")
    p.add_argument("--home", default=None, help="cache folder (default: $FASHION_RETRIEVAL_HOME)")
    p.add_argument("--chunk-size", type=int, default=512, help="images per resumable chunk (default 512)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader decoding workers per process")
    p.add_argument("--stop-after-chunks", type=int, default=None, metavar="N",
                   help="stop each process after embedding N chunks, without merging (rehearse a kill)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command: 0 when indexed, 3 when stopped early, 2 on bad input."""
    from fashion_retrieval.serving.indexing import build_index

    args = build_parser().parse_args(argv)
    try:
        summary = build_index(
            args.checkpoint, args.gallery, dataset=args.dataset, split=args.split, home=args.home,
            chunk_size=args.chunk_size, batch_size=args.batch_size, num_workers=args.num_workers,
            stop_after_chunks=args.stop_after_chunks,
        )
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if summary["status"] != "worker":
        print(json.dumps(summary))
    return 3 if summary["status"] == "stopped" else 0


if __name__ == "__main__":
    sys.exit(main())
