"""A worker that trains models of the embedded default in a process of its own.

``python -m fashion_retrieval.serving.train_worker ROOT SPEC_JSON THREADS``, started by
``serving.default`` to train models side by side: it reads one model per line on stdin
(``["name", "compositor", "task"]``), trains it with ``THREADS`` torch CPU threads on the
features the build cached in ``ROOT`` first, and answers one JSON line on stdout
(``{"model": name, "seconds": s}``); everything else it prints goes to stderr.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3 or not args[2].isdigit():
        raise SystemExit("usage: python -m fashion_retrieval.serving.train_worker ROOT SPEC_JSON THREADS "
                         f"(got {len(args)} arguments)")
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # training's own prints go to stderr

    from fashion_retrieval.serving.default import DefaultSpec, _train_one

    root, spec, threads = Path(args[0]), DefaultSpec.from_overrides(args[1]), int(args[2])
    for line in sys.stdin:
        name, compositor, task = json.loads(line)
        seconds = _train_one(root, spec, (name, compositor, task), threads)
        answers.write(json.dumps({"model": name, "seconds": seconds}) + "\n")
        answers.flush()


if __name__ == "__main__":
    main()
