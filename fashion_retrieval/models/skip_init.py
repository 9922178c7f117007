"""Building encoders whose weights are loaded right after: no random initialisation first.

Inside :func:`skipped_init`, the offline encoders (``models/bert.py``'s BERT, timm's
EfficientNet-Lite0) are built on the meta device and given uninitialised memory; a
checkpoint's weights then fill every parameter and buffer (the loading is strict). Loading
five default models at a start no longer pays five random initialisations.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch
from torch import nn

_SKIP = False
M = TypeVar("M", bound=nn.Module)


@contextlib.contextmanager
def skipped_init() -> Iterator[None]:
    """Build encoders with uninitialised weights (they are loaded right after)."""
    global _SKIP
    before, _SKIP = _SKIP, True
    try:
        yield
    finally:
        _SKIP = before


def skipping() -> bool:
    """Whether builds skip their initialisation here."""
    return _SKIP


def build(make: Callable[[], M]) -> M:
    """``make()``; inside :func:`skipped_init`, built on the meta device and given empty CPU memory."""
    if not _SKIP:
        return make()
    with torch.device("meta"):
        module = make()
    return module.to_empty(device="cpu")
