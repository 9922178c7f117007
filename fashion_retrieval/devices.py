"""Where the heavy loops run: the device, mixed-precision autocast and DataLoader options
(for image batches, bounded by the shared memory their workers hand them back through).

Every loop that pushes images or features through a model (feature caching, training,
evaluation, the Retriever's gallery and queries) takes a device and a precision and uses
these helpers, so that a GPU is used end to end with the same code that runs on a laptop.
Nothing here runs at import time.
"""

from __future__ import annotations

import contextlib
import os
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


SHM_FRACTION = 0.5  # of /dev/shm's free space that the loaders of one machine may fill


def shared_memory_free(path: str = "/dev/shm") -> int | None:
    """Free bytes of the shared-memory file system that DataLoader workers hand tensors
    back through (None where there is none to measure, e.g. macOS)."""
    try:
        st = os.statvfs(path)
    except (OSError, AttributeError):
        return None
    return st.f_bavail * st.f_frsize


def image_loader_options(
    device: str | torch.device, num_workers: int, batch_bytes: int, *,
    prefetch_factor: int = 2, multiprocessing_context: str | None = None,
) -> dict[str, Any]:
    """DataLoader keyword arguments for workers that decode whole image batches of ``batch_bytes``.

    ``loader_options`` plus a bounded ``prefetch_factor``. Each worker hands its decoded
    batch back through shared memory (/dev/shm on Linux) and up to ``num_workers x
    prefetch_factor`` batches wait there: CLIP4Cir's stage 1 (128 pairs at 288 px, float32:
    255 MB a batch) with 8 workers and torch's default prefetch of 2 holds 4 GB, more than a
    container's /dev/shm (64 MB by default in Docker), and a worker then dies with a bus error.
    The batch stays whole in the worker (one RNG per batch makes the augmentation replay
    exactly on resume, and the main process only trains); instead the prefetch is lowered
    until the batches in flight fit in ``SHM_FRACTION`` of the free space, shared by the
    ``LOCAL_WORLD_SIZE`` training processes of the machine. When not even one batch per
    worker fits, a ValueError says what would. ``num_workers=0`` decodes in the main process
    and uses no shared memory. Workers may be started by ``fork``, ``spawn`` or
    ``forkserver`` (``multiprocessing_context``; None: the platform's default): what is
    handed to them (``ImageBatches``, ``ImageTransform``, ``SampleDraw``) is picklable. The
    in-memory image path's ``ImageBatches`` are the same batches and fit the same options.
    """
    options = loader_options(device, num_workers)
    if num_workers == 0:
        return options
    free = shared_memory_free()
    if free is not None:
        processes = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
        budget = int(free * SHM_FRACTION) // processes
        fits = budget // (num_workers * max(1, batch_bytes))
        if fits < 1:
            raise ValueError(
                f"num_workers={num_workers} DataLoader workers each hand back decoded batches of "
                f"{batch_bytes / 2**20:.0f} MiB through shared memory, but /dev/shm has {free / 2**20:.0f} MiB "
                f"free ({processes} training process(es) here share {SHM_FRACTION:.0%} of it): lower num_workers "
                "or batch_size, set num_workers: 0 (decoding in the main process uses no shared memory), "
                "or give the machine more shared memory (e.g. docker run --shm-size=8g)"
            )
        prefetch_factor = min(prefetch_factor, fits)
    return {**options, "prefetch_factor": prefetch_factor, "multiprocessing_context": multiprocessing_context}


def image_batch_bytes(batch_size: int, image_size: int, images_per_example: int = 2) -> int:
    """Bytes of one decoded batch: ``batch_size`` examples of float32 ``(3, size, size)`` images."""
    return batch_size * images_per_example * 3 * image_size * image_size * 4
