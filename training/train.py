"""Train a retrieval model: ``accelerate launch training/train.py --config training/configs/NAME.yaml [--key value ...]``.

Thin front end: all logic is in ``fashion_retrieval.training``.
"""

import sys

from fashion_retrieval.training.cli import train_main

if __name__ == "__main__":
    sys.exit(train_main())
