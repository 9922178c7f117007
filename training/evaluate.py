"""Evaluate a checkpoint: ``python training/evaluate.py --checkpoint DIR_OR_REPO --json OUT.json``.

Thin front end: all logic is in ``fashion_retrieval.training.cli`` and ``fashion_retrieval.evaluation``.
"""

import sys

from fashion_retrieval.training.cli import evaluate_main

if __name__ == "__main__":
    sys.exit(evaluate_main())
