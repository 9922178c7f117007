"""Batch image embedding: decode + transform in DataLoader workers, then the model, without gradients."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

ImageSource = Any  # str | Path | PIL.Image.Image | bytes | numpy array: whatever load_image takes


class _ImageDataset(Dataset):
    """Decodes and transforms one image per index; returns (index, pixels (3, S, S), ok)."""

    def __init__(self, sources: Sequence[ImageSource], transform, skip_bad: bool) -> None:
        self.sources, self.transform, self.skip_bad = list(sources), transform, skip_bad

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor, bool]:
        from ..data.images import ImageLoadError, load_image

        try:
            return i, self.transform(load_image(self.sources[i])), True
        except ImageLoadError:
            if not self.skip_bad:
                raise
            return i, torch.zeros(3, self.transform.size, self.transform.size), False


def _run(
    model, sources: Sequence[ImageSource], batch_size: int, num_workers: int, target: bool,
    skip_bad: bool, device: str | torch.device | None = None, mixed_precision: str = "no",
) -> tuple[torch.Tensor, list[int]]:
    """Embed ``sources``; returns (embeddings of the readable images (M, D), their indices)."""
    from ..devices import autocast, loader_options, module_device, to_device

    if isinstance(sources, (str, Path)):
        raise TypeError("sources must be a list of images or paths (wrap a single one in a list)")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if device is None:
        device = module_device(model)
    else:
        device = torch.device(device)
        model.to(device)
    data = _ImageDataset(sources, model.transform(train=False), skip_bad)
    loader = DataLoader(data, batch_size=batch_size, shuffle=False, collate_fn=_collate,
                        **loader_options(device, num_workers))
    out, kept = [], []
    was_training = model.training
    model.eval()  # BatchNorm statistics, not batch statistics
    try:
        with torch.inference_mode(), autocast(device, mixed_precision):
            for idx, pixels, ok in loader:
                if not ok.any():
                    continue
                pixels = to_device(pixels[ok], device)  # (b, 3, S, S)
                feats = model.encode_target(pixels) if target else model.image_features(pixels)
                out.append(feats.float().cpu())
                kept.extend(idx[ok].tolist())
    finally:
        model.train(was_training)
    dim = model.config.embed_dim if target else model.feature_dim
    return (torch.cat(out) if out else torch.empty(0, dim)), kept


def _collate(batch: list[tuple[int, torch.Tensor, bool]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stack (index, pixels, ok) triples into (B,), (B, 3, S, S), (B,) tensors."""
    idx, pixels, ok = zip(*batch, strict=True)
    return torch.tensor(idx), torch.stack(pixels), torch.tensor(ok)


def embed_images(
    model, sources: Sequence[ImageSource], *, batch_size: int = 64, num_workers: int = 0,
    target: bool = True, device: str | torch.device | None = None, mixed_precision: str = "no",
) -> torch.Tensor:
    """Embed images: ``(N, D)`` L2-normalised target embeddings, or ``(N, Dimg)`` backbone
    features with ``target=False``, float32 on the CPU. An unreadable image raises
    ``ImageLoadError`` naming it.

    Runs on ``device`` (the model is moved there; default: where the model is) under
    ``mixed_precision`` autocast ("no", "fp16", "bf16"); ``num_workers`` decode, into pinned
    memory when the device is CUDA.
    """
    return _run(model, sources, batch_size, num_workers, target, False, device, mixed_precision)[0]


def embed_images_skipping_bad(
    model, sources: Sequence[ImageSource], *, batch_size: int = 64, num_workers: int = 0,
    target: bool = True, device: str | torch.device | None = None, mixed_precision: str = "no",
) -> tuple[torch.Tensor, list[int]]:
    """Like :func:`embed_images`, but unreadable images are skipped: returns
    (embeddings of the readable ones (M, D), their indices into ``sources``)."""
    return _run(model, sources, batch_size, num_workers, target, True, device, mixed_precision)
