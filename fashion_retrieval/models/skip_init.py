"""Building encoders whose weights are loaded right after: no random initialisation first.

Inside :func:`skipped_init`, the offline encoders (``models/bert.py``'s BERT and
``models/lite0.py``'s EfficientNet-Lite0) are built with ``torch.nn.init`` turned off: their
tensors are allocated, not drawn; a checkpoint's weights then fill every parameter and
buffer (the loading is strict). Loading five default models at a start no longer pays five
random initialisations (nor, as building on the meta device would, an import of torch's
compiler for the initialisers' reference kernels).
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


# The initialisers of torch.nn.init that modules call in their reset_parameters.
_INITIALISERS = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_",
                 "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_",
                 "sparse_")


def _left_as_is(tensor: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    return tensor


def build(make: Callable[[], M]) -> M:
    """``make()``; inside :func:`skipped_init`, with ``torch.nn.init``'s initialisers turned off
    while it runs (the tensors keep whatever memory they were given)."""
    if not _SKIP:
        return make()
    saved = {name: getattr(nn.init, name) for name in _INITIALISERS if hasattr(nn.init, name)}
    try:
        for name in saved:
            setattr(nn.init, name, _left_as_is)
        return make()
    finally:
        for name, function in saved.items():
            setattr(nn.init, name, function)
