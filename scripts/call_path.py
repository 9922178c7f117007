"""Count the project functions a request passes through, by tracing a real run.

    python scripts/call_path.py train [--root DIR] [--depth N]   # training/train.py -> first optimiser step
    python scripts/call_path.py query [--root DIR] [--depth N]   # the demo's search -> its ranked hits

``train`` runs ``training/configs/tirg.yaml`` for one step on a 60-product synthetic
catalogue in a fresh ``$FASHION_RETRIEVAL_HOME`` (rendered, features computed); ``query``
runs one composed query (catalogue picture + words) through the demo's
``DemoBackend.search`` over the tests' tiny FashionIQ catalogue with an untrained TIRG. Every
first call of a function defined under ``fashion_retrieval/`` or ``training/`` is printed as a
call tree (down to ``--depth``), then the counts: distinct functions, those that call other
project functions (what a reader must open to follow the path), files, and the deepest call.
``--root`` points at another checkout (a ``git worktree`` of an older commit) to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

SKIPPED = {"<genexpr>", "<listcomp>", "<dictcomp>", "<setcomp>", "<lambda>", "<module>"}


class Tracer:
    """A ``sys.setprofile`` hook recording (depth, file, function) at each project call."""

    def __init__(self, root: Path, stop: Any = None) -> None:
        self.root, self.stop = root, stop
        self.packages = (str(root / "fashion_retrieval"), str(root / "training"))
        self.calls: list[tuple[int, str, str]] = []
        self.stack: list[int] = []
        self.stopped = False

    def __call__(self, frame: Any, event: str, arg: Any) -> None:
        if self.stopped:
            return
        code = frame.f_code
        if event == "call":
            if self.stop is not None and self.stop(code):
                self.stopped = True
            elif code.co_filename.startswith(self.packages) and code.co_name not in SKIPPED:
                where = os.path.relpath(code.co_filename, self.root)
                self.calls.append((len(self.stack), where, getattr(code, "co_qualname", code.co_name)))
                self.stack.append(id(frame))
        elif event == "return" and self.stack and self.stack[-1] == id(frame):
            self.stack.pop()

    def run(self, fn: Any, *args: Any) -> Any:
        sys.setprofile(self)
        try:
            return fn(*args)
        finally:
            sys.setprofile(None)


def optimiser_step(code: Any) -> bool:
    """The first optimiser step: Accelerate's wrapped ``optimizer.step``."""
    return code.co_name == "step" and "accelerate" in code.co_filename and "optimizer" in code.co_filename


def trace_train(root: Path) -> Tracer:
    from fashion_retrieval.training.cli import train_main

    scratch = Path(tempfile.mkdtemp())  # a fresh home: the catalogue renders, the features are computed
    os.environ["FASHION_RETRIEVAL_HOME"] = str(scratch / "home")
    out = scratch / "run"
    argv = ["--config", "training/configs/tirg.yaml", "--max_steps", "1", "--eval_split", "", "--output_dir", str(out)]
    if (root / "fashion_retrieval" / "hub.py").exists():  # before issue 23: catalogue options in every config
        argv += ["--products", "60"]
    else:
        argv += ["--dataset_options", json.dumps({"preset": "hard", "products": 60})]
    tracer = Tracer(root, stop=optimiser_step)
    try:
        tracer.run(train_main, argv)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return tracer


def trace_query(root: Path) -> Tracer:
    sys.path.insert(0, str(root / "tests"))
    from _demo_data import tiny_model, write_tiny_fashioniq

    from fashion_retrieval.data.fashioniq import load_fashioniq
    from fashion_retrieval.demo.handlers import DemoBackend

    if (root / "fashion_retrieval" / "retriever.py").exists():  # before issue 23
        from fashion_retrieval.retriever import Retriever
    else:
        from fashion_retrieval.search.retriever import Retriever
    tracer = Tracer(root)
    with tempfile.TemporaryDirectory() as scratch:
        catalogue = load_fashioniq(write_tiny_fashioniq(Path(scratch)), "val")
        backend = DemoBackend({"tirg": Retriever(tiny_model("tirg", seed=0), catalogue.items)}, catalogue, max_k=10)
        picture = str(catalogue.items[0].path)
        backend.search("tirg", picture, "is red with long sleeves", 5)  # lazy imports done before tracing
        tracer.run(backend.search, "tirg", picture, "is blue", 5)
    return tracer


def report(tracer: Tracer, depth: int) -> dict[str, int]:
    """Print the call tree (first visits) and return the counts."""
    seen: set[tuple[str, str]] = set()
    callers: set[tuple[str, str]] = set()
    for (d, f, q), nxt in zip(tracer.calls, [*tracer.calls[1:], None], strict=True):
        if nxt is not None and nxt[0] > d:
            callers.add((f, q))
        if (f, q) not in seen:
            seen.add((f, q))
            if d <= depth:
                print("  " * d + f"{q}  [{f}]")
    counts = {
        "functions": len(seen), "calling_others": len(callers), "files": len({f for f, _ in seen}),
        "max_depth": max(d for d, _, _ in tracer.calls),
    }
    print(json.dumps(counts))
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", choices=("train", "query"))
    parser.add_argument("--root", default=str(Path(__file__).resolve().parents[1]))
    parser.add_argument("--depth", type=int, default=99, help="print the tree down to this depth")
    args = parser.parse_args(argv)
    root = Path(args.root).resolve()
    sys.path.insert(0, str(root))
    os.chdir(root)
    report(trace_train(root) if args.path == "train" else trace_query(root), args.depth)
    return 0


if __name__ == "__main__":
    sys.exit(main())
