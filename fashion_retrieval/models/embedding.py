"""Batch image embedding: decode + transform in DataLoader workers, then the model, without gradients."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from fashion_retrieval.data.records import Item, Triplet

ImageSource = Any  # str | Path | PIL.Image.Image | bytes | numpy array: whatever load_image takes


class _ImageDataset(Dataset):
    """Decodes, resizes and crops one image per index; returns (index, uint8 pixels (3, S, S), ok).
    Scaling and normalisation follow per batch (``ImageTransform.normalise``): the same values,
    without one small tensor operation per image."""

    def __init__(self, sources: Sequence[ImageSource], transform, skip_bad: bool) -> None:
        self.sources, self.transform, self.skip_bad = list(sources), transform, skip_bad

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor, bool]:
        from ..data.images import ImageLoadError, load_image

        try:
            return i, self.transform.pixels(load_image(self.sources[i])), True
        except ImageLoadError:
            if not self.skip_bad:
                raise
            return i, torch.zeros(3, self.transform.size, self.transform.size, dtype=torch.uint8), False


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
    transform = model.transform(train=False)
    data = _ImageDataset(sources, transform, skip_bad)
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
                pixels = to_device(transform.normalise(pixels[ok]), device)  # (b, 3, S, S) float
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


def aligned_features(
    features: torch.Tensor | Mapping[str, Any], items: Sequence[Item]
) -> torch.Tensor:
    """Precomputed backbone features as an ``(N, Dimg)`` tensor aligned with ``items``."""
    if isinstance(features, Mapping):
        missing = [it.id for it in items if it.id not in features]
        if missing:
            raise ValueError(
                f"precomputed features miss {len(missing)} gallery items, e.g. {missing[:3]}"
            )
        return torch.stack([torch.as_tensor(features[it.id]) for it in items]).float()
    feats = torch.as_tensor(features).float()
    if feats.ndim != 2 or feats.shape[0] != len(items):
        raise ValueError(
            f"precomputed features must be ({len(items)}, Dimg) aligned with the items, "
            f"got shape {tuple(feats.shape)}"
        )
    return feats


class ModelEmbeddings:
    """An ``EmbeddingSource`` (``fashion_retrieval.evaluation.embeddings``) over a ``RetrievalModel`` and a list of gallery items.

    Backbone features (``model.image_features``) of every item are computed once (or taken
    from ``features``: ``{item_id: row}`` or an ``(N, Dimg)`` tensor aligned with ``items``)
    and reused for the target embeddings and for the source images of the queries.

    Everything runs on ``device`` (the model is moved there; default: where the model is)
    under ``mixed_precision`` autocast ("no", "fp16", "bf16"); ``num_workers`` DataLoader
    workers decode the gallery. Embeddings come back float32 on the CPU.
    """

    def __init__(
        self,
        model: Any,
        items: Sequence[Item],
        *,
        batch_size: int = 64,
        num_workers: int = 0,
        features: torch.Tensor | Mapping[str, Any] | None = None,
        device: str | torch.device | None = None,
        mixed_precision: str = "no",
    ) -> None:
        from fashion_retrieval.devices import check_precision, module_device

        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        check_precision(mixed_precision)
        self.model = model
        if device is None:
            self.device = module_device(model)
        else:
            self.device = torch.device(device)
            model.to(self.device)
        self.mixed_precision = mixed_precision
        self.items = list(items)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self._row = {it.id: i for i, it in enumerate(self.items)}
        self._features = None if features is None else aligned_features(features, self.items)
        self._targets: torch.Tensor | None = None

    def backbone_features(self) -> torch.Tensor:
        """``(N, Dimg)`` backbone features of every item, computed on first use."""
        if self._features is None:
            paths = [it.path for it in self.items]
            self._features = embed_images(
                self.model,
                paths,
                batch_size=self.batch_size,
                num_workers=self.num_workers,
                target=False,
                device=self.device,
                mixed_precision=self.mixed_precision,
            ).float()
        return self._features

    def _batched(self, fn: Any, n: int) -> torch.Tensor:
        """Concatenate ``fn(start, stop)`` over batches, on CPU, in inference mode and autocast."""
        from fashion_retrieval.devices import autocast

        was_training = self.model.training
        self.model.eval()
        out = []
        try:
            with torch.inference_mode(), autocast(self.device, self.mixed_precision):
                for start in range(0, n, self.batch_size):
                    out.append(fn(start, min(start + self.batch_size, n)).float().cpu())
        finally:
            self.model.train(was_training)
        if not out:
            raise ValueError("nothing to embed")
        return torch.cat(out)

    def _feats(self, rows: Sequence[int] | slice) -> torch.Tensor:
        """Backbone features of the given rows, on the device."""
        from fashion_retrieval.devices import to_device

        return to_device(self.backbone_features()[rows], self.device)

    def item_embeddings(self) -> torch.Tensor:
        """``(N, D)`` target embeddings of every item (computed once)."""
        if self._targets is None:
            self._targets = self._batched(
                lambda a, b: self.model.encode_target(image_features=self._feats(slice(a, b))),
                len(self.items),
            )
        return self._targets

    def query_embeddings(self, triplets: Sequence[Triplet]) -> torch.Tensor:
        """``(Q, D)`` composed queries; every source must be one of the items."""
        missing = [t.source for t in triplets if t.source not in self._row]
        if missing:
            raise ValueError(f"query sources not among the gallery items: {missing[:3]}")
        rows = [self._row[t.source] for t in triplets]
        texts = [t.text for t in triplets]
        return self._batched(
            lambda a, b: self.model.encode_query(
                image_features=self._feats(rows[a:b]), texts=texts[a:b]
            ),
            len(triplets),
        )

    def text_embeddings(self, texts: Sequence[str]) -> torch.Tensor:
        """``(T, D)`` text-only queries."""
        texts = list(texts)
        return self._batched(lambda a, b: self.model.encode_query(texts=texts[a:b]), len(texts))

    def image_query_embeddings(self) -> torch.Tensor:
        """``(N, D)`` image-only queries of every item."""
        return self._batched(
            lambda a, b: self.model.encode_query(image_features=self._feats(slice(a, b))),
            len(self.items),
        )
