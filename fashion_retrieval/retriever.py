"""The Retriever: a model, a gallery and its index behind ``search(image, text, k)``.

The one search path that the demo, the dashboard, evaluation helpers and benchmarks use.
Queries may be composed (image + text), image-only or text-only for every model.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fashion_retrieval.data.records import Item
from fashion_retrieval.index import GalleryIndex, combine_fingerprints
from fashion_retrieval.whitening import (
    POSTPROCESS_MODES,
    WHITENING_FILE,
    PCAWhitening,
    fit_postprocess,
)

NO_QUERY = "give an image, a text, or both"


@dataclass(frozen=True)
class Hit:
    """One search result: the gallery item, its similarity score and its 1-based rank."""

    id: str
    score: float
    caption: str
    path: str
    category: str
    rank: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def model_fingerprint(model: torch.nn.Module) -> str:
    """A hash of the model's config and every weight (names, dtypes, shapes, bytes)."""
    h = hashlib.sha256()
    config = getattr(model, "config", None)
    to_dict = getattr(config, "to_dict", None)
    h.update(
        json.dumps(
            to_dict() if callable(to_dict) else repr(config), sort_keys=True, default=str
        ).encode()
    )
    for name, t in sorted(model.state_dict().items()):
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def gallery_fingerprint(items: Sequence[Item]) -> str:
    """A hash of the gallery's ids, paths and file sizes and modification times."""
    h = hashlib.sha256()
    for it in items:
        try:
            st = os.stat(it.path)
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            stamp = "missing"
        h.update(f"{it.id}\0{it.path}\0{stamp}\n".encode())
    return h.hexdigest()


def _clean_text(text: Any, where: str) -> str | None:
    """A stripped query text, or None for a missing or blank one."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise TypeError(f"{where}: the text must be a string, got {type(text).__name__}")
    return text.strip() or None


def _check_k(k: Any, size: int) -> int:
    """``k`` as an int in 1..size (larger values are clipped to the gallery size)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"k must be a whole number, got {k!r}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return min(int(k), size)


class Retriever:
    """Search a gallery of items with a ``RetrievalModel`` by image, text or both.

    The gallery is embedded with ``model.encode_target`` in batches and indexed with
    :class:`GalleryIndex` (``index_kind`` "auto", "flat", "ivf" or "hnsw"). With
    ``index_dir`` the index is saved there and reused while the fingerprint of model and
    gallery matches. Searches are thread-safe (one lock around the model and the index).

    ``postprocess`` ("none", "pca", "whiten", or a fitted :class:`PCAWhitening`) transforms
    gallery and query embeddings before indexing and search; a mode name is fitted on the
    gallery embeddings (``postprocess_dim`` components) and saved beside the index.

    The model is moved to ``device`` (default: left where it is), where the gallery is
    embedded (``num_workers`` DataLoader workers decoding) and queries are encoded, under
    ``mixed_precision`` autocast ("no", "fp16", "bf16").
    """

    def __init__(
        self,
        model: torch.nn.Module,
        items: Sequence[Item],
        *,
        index: GalleryIndex | None = None,
        index_dir: str | os.PathLike | None = None,
        index_kind: str = "auto",
        index_params: dict[str, Any] | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        postprocess: str | PCAWhitening = "none",
        postprocess_dim: int | None = None,
        device: str | torch.device | None = None,
        mixed_precision: str = "no",
    ) -> None:
        from fashion_retrieval.devices import check_precision, module_device, resolve_device

        if not items:
            raise ValueError("the gallery is empty: give at least one item")
        check_precision(mixed_precision)
        self.device = module_device(model) if device is None else resolve_device(device)
        self.mixed_precision = mixed_precision
        self.model = model.to(self.device).eval()
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.index_kind = index_kind
        self.index_params = dict(index_params or {})
        self.index_dir = Path(index_dir) if index_dir is not None else None
        self._items: dict[str, Item] = {}
        self._add_to_catalogue(items)
        self._lock = threading.RLock()
        self._transform = model.transform(train=False)
        self._model_fp = model_fingerprint(model)
        self._init_postprocess(postprocess, postprocess_dim, index)
        if index is not None:
            unknown = [i for i in index.ids if i not in self._items]
            if unknown or len(index) != len(self._items):
                raise ValueError(
                    f"the given index holds {len(index)} ids, the gallery {len(self._items)} "
                    f"items (ids not in the gallery: {unknown[:3]})"
                )
            self.index = index
        elif self.index_dir is not None:
            self.index = GalleryIndex.load_or_build(
                self.index_dir, self.fingerprint(), lambda: self._build(list(self._items.values()))
            )
            self._load_postprocessor()
        else:
            self.index = self._build(list(self._items.values()))

    # ------------------------------------------------------------------ post-processing

    def _init_postprocess(
        self, postprocess: str | PCAWhitening, dim: int | None, index: GalleryIndex | None
    ) -> None:
        """Keep a fitted post-processor, or the mode to fit on the gallery when indexing."""
        self.postprocessor: PCAWhitening | None = None
        self._post_mode, self._post_dim = "none", dim
        if isinstance(postprocess, PCAWhitening):
            self.postprocessor = postprocess
            if index is not None and index.dim != postprocess.output_dim:
                raise ValueError(
                    f"the index has dimension {index.dim}, the post-processor outputs "
                    f"{postprocess.output_dim}"
                )
            return
        POSTPROCESS_MODES.get(postprocess)  # an unknown mode lists the valid ones
        if postprocess != "none" and index is not None:
            raise ValueError(
                f"postprocess={postprocess!r} is fitted while indexing; with a prebuilt "
                "index pass the fitted PCAWhitening instead"
            )
        self._post_mode = postprocess

    def _post_settings(self) -> list[Any]:
        """What of the post-processing the fingerprint keys on (nothing when there is none)."""
        if self.postprocessor is not None and self._post_mode == "none":  # given ready-made
            h = hashlib.sha256()
            for t in (self.postprocessor.mean, self.postprocessor.projection):
                if t is not None:
                    h.update(t.contiguous().numpy().tobytes())
            return [self.postprocessor.mode, h.hexdigest()]
        return [] if self._post_mode == "none" else [self._post_mode, self._post_dim]

    def _precision_settings(self) -> list[str]:
        """The autocast precision, when there is one (an index built under it differs)."""
        return [] if self.mixed_precision == "no" else [f"mixed_precision={self.mixed_precision}"]

    def _load_postprocessor(self) -> None:
        """After reusing a saved index, read the post-processor saved beside it (or rebuild)."""
        if self._post_mode == "none" or self.postprocessor is not None:
            return
        try:
            self.postprocessor = PCAWhitening.load(self.index_dir)
        except ValueError:  # missing or corrupt: fit and index again
            self.index = self._build(list(self._items.values()))
            self.index.fingerprint = self.fingerprint()
            self.index.save(self.index_dir)

    def _postprocess(self, emb: torch.Tensor) -> torch.Tensor:
        """``(N, D) -> (N, d)`` through the post-processor, if any."""
        return emb if self.postprocessor is None else self.postprocessor.transform(emb)

    # ------------------------------------------------------------------ gallery

    def _add_to_catalogue(self, items: Iterable[Item]) -> list[Item]:
        """Register new items by id; repeated or already present ids are an error."""
        new = list(items)
        ids = [it.id for it in new]
        repeated = {i for i, c in Counter(ids).items() if c > 1}
        clash = sorted(repeated | {i for i in ids if i in self._items})
        if clash:
            raise ValueError(f"gallery ids must be unique; repeated: {clash[:5]}")
        self._items.update((it.id, it) for it in new)
        return new

    def fingerprint(self) -> str:
        """Fingerprint of model weights + gallery + index settings (what a saved index keys on)."""
        settings = json.dumps(
            [self.index_kind, self.index_params, *self._post_settings(), *self._precision_settings()],
            sort_keys=True,
        )
        return combine_fingerprints(
            self._model_fp, gallery_fingerprint(list(self._items.values())), settings
        )

    def embed_items(self, items: Sequence[Item]) -> torch.Tensor:
        """``(N, D)`` target embeddings of ``items`` (backbone once, heads in batches)."""
        from fashion_retrieval.evaluation.embeddings import ModelEmbeddings

        source = ModelEmbeddings(
            self.model, items, batch_size=self.batch_size, num_workers=self.num_workers,
            device=self.device, mixed_precision=self.mixed_precision,
        )
        with self._lock:
            return source.item_embeddings()

    def _build(self, items: list[Item]) -> GalleryIndex:
        """Embed ``items`` and index them."""
        emb = self.embed_items(items)  # (N, D)
        if self._post_mode != "none":  # fitted on this gallery, saved before the index
            self.postprocessor = fit_postprocess(self._post_mode, emb, dim=self._post_dim)
            if self.index_dir is not None:
                self.postprocessor.save(self.index_dir / WHITENING_FILE)
        emb = self._postprocess(emb)  # (N, d)
        return GalleryIndex.build(
            emb.numpy(), [it.id for it in items], self.index_kind, **self.index_params
        )

    def add_items(self, items: Sequence[Item]) -> None:
        """Embed new items and append them to the index (re-saved when ``index_dir`` is set)."""
        with self._lock:
            new = self._add_to_catalogue(items)
            try:
                emb = self._postprocess(self.embed_items(new))  # (M, d)
                self.index.add(emb.numpy(), [it.id for it in new])
            except BaseException:
                for it in new:
                    del self._items[it.id]
                raise
            if self.index_dir is not None:
                self.index.fingerprint = self.fingerprint()
                self.index.save(self.index_dir)

    @property
    def items(self) -> list[Item]:
        """The gallery items (a copy, in insertion order)."""
        return list(self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def item(self, item_id: str) -> Item:
        """The gallery item with this id (KeyError naming it when absent)."""
        try:
            return self._items[item_id]
        except KeyError:
            raise KeyError(f"no gallery item with id {item_id!r}") from None

    # ------------------------------------------------------------------ queries

    def _pixels(self, image: Any) -> torch.Tensor:
        """Decode one image (path, bytes, PIL, numpy, file) into ``(3, S, S)``."""
        from fashion_retrieval.data.images import load_image

        return self._transform(load_image(image))

    def encode_queries(
        self, images: Sequence[Any] | None = None, texts: Sequence[str] | None = None
    ) -> torch.Tensor:
        """``(B, D)`` query embeddings, computed on the device; all images given or none,
        all texts given or none."""
        from fashion_retrieval.devices import autocast, to_device

        n = len(images) if images is not None else len(texts or [])
        if n == 0:
            raise ValueError(NO_QUERY)
        out = []
        with self._lock, torch.inference_mode(), autocast(self.device, self.mixed_precision):
            for a in range(0, n, self.batch_size):
                b = min(a + self.batch_size, n)
                pix = None
                if images is not None:
                    pix = to_device(torch.stack([self._pixels(x) for x in images[a:b]]), self.device)  # (b, 3, S, S)
                txt = list(texts[a:b]) if texts is not None else None
                out.append(self.model.encode_query(images=pix, texts=txt).float().cpu())
        return torch.cat(out)  # (B, D)

    def search(
        self,
        image: Any = None,
        text: str | None = None,
        k: int = 10,
        *,
        exclude_ids: Iterable[str] = (),
    ) -> list[Hit]:
        """Top-``k`` gallery items for an image, a text, or both (``exclude_ids`` left out)."""
        return self.search_batch(
            None if image is None else [image],
            None if text is None else [text],
            k,
            exclude_ids=[list(exclude_ids)],
        )[0]

    def search_batch(
        self,
        images: Sequence[Any] | None = None,
        texts: Sequence[str | None] | None = None,
        k: int = 10,
        *,
        exclude_ids: Sequence[Iterable[str]] | None = None,
    ) -> list[list[Hit]]:
        """One list of hits per query; queries may mix image-only, text-only and both."""
        n = len(images) if images is not None else len(texts) if texts is not None else 0
        images = list(images) if images is not None else [None] * n
        texts = list(texts) if texts is not None else [None] * n
        if n == 0:
            raise ValueError(NO_QUERY)
        if len(images) != len(texts):
            raise ValueError(
                f"{len(images)} images but {len(texts)} texts: give one of each per query"
            )
        excluded = [set(e) for e in exclude_ids] if exclude_ids is not None else [set()] * n
        if len(excluded) != n:
            raise ValueError(f"exclude_ids has {len(excluded)} entries for {n} queries")
        k = _check_k(k, len(self))
        texts = [_clean_text(t, f"query {i}") for i, t in enumerate(texts)]
        groups: dict[tuple[bool, bool], list[int]] = {}
        for i, (img, txt) in enumerate(zip(images, texts, strict=True)):
            if img is None and txt is None:
                raise ValueError(NO_QUERY + (f" (query {i})" if n > 1 else ""))
            groups.setdefault((img is not None, txt is not None), []).append(i)
        queries = torch.empty(0)
        for (has_img, has_txt), rows in groups.items():
            emb = self.encode_queries(
                [images[i] for i in rows] if has_img else None,
                [texts[i] for i in rows] if has_txt else None,
            )  # (len(rows), D)
            if queries.numel() == 0:
                queries = torch.empty(n, emb.shape[1])
            queries[rows] = emb
        return self._ranked(queries, k, excluded)

    def _ranked(self, queries: torch.Tensor, k: int, excluded: list[set[str]]) -> list[list[Hit]]:
        """Search the index and turn positions into hits, dropping excluded ids."""
        extra = max(len(e) for e in excluded)
        with self._lock:
            queries = self._postprocess(queries)  # (Q, d)
            scores, positions = self.index.search(queries.numpy(), min(k + extra, len(self)))
            ids = [[self.index.id_at(p) if p >= 0 else None for p in row] for row in positions]
        results = []
        for srow, idrow, skip in zip(scores, ids, excluded, strict=True):
            hits: list[Hit] = []
            for s, item_id in zip(srow, idrow, strict=True):
                if item_id is None or item_id in skip:
                    continue
                it = self._items[item_id]
                hits.append(Hit(it.id, float(s), it.caption, it.path, it.category, len(hits) + 1))
                if len(hits) == k:
                    break
            results.append(hits)
        return results

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_checkpoint(
        cls,
        path_or_repo: str | os.PathLike,
        items: Sequence[Item],
        *,
        revision: str | None = None,
        **kwargs: Any,
    ) -> Retriever:
        """Load a checkpoint (folder or Hub repo id) and index ``items`` with it.

        For a writable local checkpoint folder the index is kept beside it in ``index/``
        unless ``index_dir`` is given.
        """
        from fashion_retrieval.hub import load_model

        model = load_model(str(path_or_repo), revision=revision)
        local = Path(path_or_repo)
        if "index_dir" not in kwargs and local.is_dir() and os.access(local, os.W_OK):
            kwargs["index_dir"] = local / "index"
        return cls(model, items, **kwargs)
