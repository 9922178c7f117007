"""Training on Accelerate: ``TrainConfig`` and ``train(config) -> Path``.

``train`` is imported lazily so that importing the config does not pull in Accelerate.
"""

from __future__ import annotations

from typing import Any

from fashion_retrieval.training.config import TrainConfig

__all__ = ["TrainConfig", "train"]


def __getattr__(name: str) -> Any:
    if name == "train":
        from fashion_retrieval.training.trainer import train

        return train
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
