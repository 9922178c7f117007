"""Where the heavy loops run: the device, mixed-precision autocast and DataLoader options.

Every loop that pushes images or features through a model (feature caching, training,
evaluation, the Retriever's gallery and queries) takes a device and a precision and uses
these helpers, so that a GPU is used end to end with the same code that runs on a laptop.
Nothing here runs at import time.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

# Mixed-precision names, as in TrainConfig.mixed_precision and Accelerate.
PRECISIONS: dict[str, torch.dtype | None] = {"no": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The device to run on: ``None`` or ``"auto"`` picks ``cuda`` when available, else ``cpu``.

    A device named explicitly that this machine lacks (``cuda`` without a GPU, ``cuda:3``
    with two GPUs, ``mps`` off a Mac) raises a ``ValueError`` that says so.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device {device!r} is not a valid torch device (e.g. cpu, cuda, cuda:1): {err}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            built = f"CUDA {torch.version.cuda}" if torch.version.cuda else "no CUDA"
            raise ValueError(
                f"device {device!r} is not available: no CUDA GPU is visible to torch "
                f"{torch.__version__} (built with {built}); use --device cpu"
            )
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"device {device!r} is not available: this machine has {count} CUDA GPU(s)")
    elif dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(f"device {device!r} is not available: Apple MPS is not available here; use --device cpu")
    elif dev.type not in ("cpu", "cuda", "mps"):
        try:
            torch.empty(0, device=dev)
        except (RuntimeError, AssertionError) as err:
            raise ValueError(f"device {device!r} is not available: {err}") from None
    return dev


def check_precision(mixed_precision: str) -> torch.dtype | None:
    """The autocast dtype of a precision name (``None`` for "no"); other names raise ``ValueError``."""
    if mixed_precision not in PRECISIONS:
        raise ValueError(f"mixed_precision={mixed_precision!r} is not valid; choose one of {', '.join(PRECISIONS)}")
    return PRECISIONS[mixed_precision]


def autocast(device: str | torch.device, mixed_precision: str = "no") -> contextlib.AbstractContextManager:
    """``torch.autocast`` on ``device`` for "fp16"/"bf16"; a no-op context for "no".

    On the CPU it autocasts only when asked (the precision is not "no"), as Accelerate does.
    """
    dtype = check_precision(mixed_precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def loader_options(device: str | torch.device, num_workers: int = 0) -> dict[str, Any]:
    """DataLoader keyword arguments for batches bound for ``device``.

    ``num_workers`` decode in parallel; ``pin_memory`` exactly when the device is CUDA, so
    that host-to-GPU copies can be asynchronous (``non_blocking``).
    """
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    return {"num_workers": num_workers, "pin_memory": torch.device(device).type == "cuda"}


def to_device(x: Any, device: str | torch.device) -> Any:
    """A tensor, or the tensors of a dict batch, moved to ``device`` (other values as they are).

    The copy is asynchronous on CUDA (from pinned memory it overlaps with compute).
    """
    device = torch.device(device)
    non_blocking = device.type == "cuda"
    if isinstance(x, torch.Tensor):
        return x.to(device, non_blocking=non_blocking)
    if isinstance(x, dict):
        return {k: v.to(device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) else v for k, v in x.items()}
    return x


def module_device(module: torch.nn.Module) -> torch.device:
    """The device of a module: its ``device`` attribute, else its first parameter's (CPU if none)."""
    dev = getattr(module, "device", None)
    if isinstance(dev, torch.device):
        return dev
    for p in module.parameters():
        return p.device
    return torch.device("cpu")

