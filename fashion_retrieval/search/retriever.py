"""The Retriever: a model, a gallery and its index behind ``search(image, text, k)``.

The one search path that the demo, the dashboard, evaluation helpers and benchmarks use:
every search is a :class:`~fashion_retrieval.search.query.Query` (made by ``search.query``'s
rules) answered by :meth:`Retriever.search_queries`. Queries may be composed (image + text),
image-only or text-only for every model.
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
from fashion_retrieval.search.gallery_store import (
    STORE_ARRAYS,
    STORE_META,
    GalleryStore,
    StoreLoadError,
    aligned_rows,
    embed_rows,
    file_stamp,
)
from fashion_retrieval.search.index import GalleryIndex, IndexLoadError, combine_fingerprints
from fashion_retrieval.search.query import (
    NO_QUERY,
    CatalogueImage,
    Query,
    QueryError,
    check_k,
    clean_text,
    decode_picture,
    make_query,
)
from fashion_retrieval.search.whitening import (
    POSTPROCESS_MODES,
    WHITENING_FILE,
    PCAWhitening,
    fit_postprocess,
)


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

    Beside a saved index the Retriever keeps each item's file stamp, backbone features and
    target embedding (:class:`~fashion_retrieval.search.gallery_store.GalleryStore`): a gallery
    that changed on disk is updated on the next start by embedding only its new and changed
    files (removed ones are dropped); a damaged store means a full build (an index saved
    with no store at all is used while its fingerprint matches).
    ``features`` (backbone features, ``{id: row}`` or ``(N, Dimg)`` aligned with ``items``)
    skip the backbone for those items. :meth:`stored_features` hands them back.
    ``model_fp``: ``model_fingerprint(model)`` when the caller already knows it (the serving
    layer keeps it beside the index), else computed here.
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
        features: Any = None,
        batch_size: int = 64,
        num_workers: int = 0,
        postprocess: str | PCAWhitening = "none",
        postprocess_dim: int | None = None,
        device: str | torch.device | None = None,
        mixed_precision: str = "no",
        model_fp: str | None = None,
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
        self._model_fp = model_fp or model_fingerprint(model)
        self._init_postprocess(postprocess, postprocess_dim, index)
        self._store: GalleryStore | None = None
        given = None if features is None else aligned_rows(features, list(self._items))
        if index is not None:
            unknown = [i for i in index.ids if i not in self._items]
            if unknown or len(index) != len(self._items):
                raise ValueError(
                    f"the given index holds {len(index)} ids, the gallery {len(self._items)} "
                    f"items (ids not in the gallery: {unknown[:3]})"
                )
            self.index = index
            if given is not None:  # kept for stored_features
                self._store = self._gallery_rows(self.items, given)
        elif self.index_dir is not None:
            self.index = self._open_saved(given)
        else:
            self.index = self._build(self.items, given)

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

    def _saved_postprocessor(self) -> bool:
        """After reusing a saved index, read the post-processor saved beside it; False when
        it is missing or damaged (the index is then rebuilt from the stored rows)."""
        if self._post_mode == "none" or self.postprocessor is not None:
            return True
        try:
            self.postprocessor = PCAWhitening.load(self.index_dir)
        except ValueError:
            return False
        return True

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
        from fashion_retrieval.models.embedding import ModelEmbeddings

        source = ModelEmbeddings(
            self.model, items, batch_size=self.batch_size, num_workers=self.num_workers,
            device=self.device, mixed_precision=self.mixed_precision,
        )
        with self._lock:
            return source.item_embeddings()

    def _store_key(self) -> str:
        """What stored rows depend on: the model's weights and the autocast precision."""
        return combine_fingerprints(self._model_fp, *self._precision_settings())

    def _read_store(self) -> GalleryStore | None:
        """The store saved in ``index_dir`` for this model, or None (missing, damaged, other)."""
        if self.index_dir is None:
            return None
        try:
            return GalleryStore.load(self.index_dir, self._store_key())
        except StoreLoadError:
            return None

    def _gallery_rows(
        self,
        items: list[Item],
        given: dict[str, np.ndarray] | None = None,
        old: GalleryStore | None = None,
    ) -> GalleryStore:
        """Features and embeddings of ``items``: rows of ``old`` whose file is unchanged are
        reused as they are; the others come from ``given`` features (heads only) or from
        the backbone."""
        ids, stamps = [it.id for it in items], [file_stamp(it.path) for it in items]
        reuse = old.reusable(ids, stamps) if old is not None else {}
        feats = {i: old.features[r] for i, r in reuse.items()}  # id -> (Dimg,)
        emb = {i: old.embeddings[r] for i, r in reuse.items()}  # id -> (D,)
        rest = [it for it in items if it.id not in reuse]
        if rest:
            with self._lock:
                new_f, new_e = embed_rows(
                    self.model, rest, given, batch_size=self.batch_size,
                    num_workers=self.num_workers, device=self.device,
                    mixed_precision=self.mixed_precision,
                )  # (M, Dimg), (M, D)
            feats.update(zip([it.id for it in rest], new_f, strict=True))
            emb.update(zip([it.id for it in rest], new_e, strict=True))
        return GalleryStore(
            self._store_key(), ids, stamps,
            np.stack([feats[i] for i in ids]), np.stack([emb[i] for i in ids]),
        )  # fmt: skip

    def _index_rows(self, store: GalleryStore) -> GalleryIndex:
        """Index the stored embeddings (post-processing fitted on them first, if asked)."""
        emb = torch.from_numpy(store.embeddings)  # (N, D)
        if self._post_mode != "none":  # fitted on this gallery, saved before the index
            self.postprocessor = fit_postprocess(self._post_mode, emb, dim=self._post_dim)
            if self.index_dir is not None:
                self.postprocessor.save(self.index_dir / WHITENING_FILE)
        emb = self._postprocess(emb)  # (N, d)
        return GalleryIndex.build(emb.numpy(), store.ids, self.index_kind, **self.index_params)

    def _build(
        self, items: list[Item], given: dict[str, np.ndarray] | None = None,
        old: GalleryStore | None = None,
    ) -> GalleryIndex:
        """Rows of ``items`` (reusing ``old``'s unchanged ones) and an index over them."""
        self._store = self._gallery_rows(items, given, old)
        return self._index_rows(self._store)

    def _open_saved(self, given: dict[str, np.ndarray] | None) -> GalleryIndex:
        """The index saved in ``index_dir`` when it and the store match this model and
        gallery; else an update (only new and changed files embedded), saved there."""
        fingerprint, items = self.fingerprint(), self.items
        old = self._read_store()
        stamps = [file_stamp(it.path) for it in items]
        # No store at all: an index saved by an older version or by a caller that indexed
        # by itself. While its fingerprint matches it is used as it is (no rows to reuse).
        legacy = not any((self.index_dir / n).exists() for n in (STORE_META, STORE_ARRAYS))
        if legacy or (old is not None and old.matches([it.id for it in items], stamps)):
            try:
                index = GalleryIndex.load(self.index_dir)
                if index.fingerprint == fingerprint and self._saved_postprocessor():
                    self._store = old
                    if old is None and given is not None:  # rows from the given features
                        self._store = self._gallery_rows(items, given)
                        self._store.save(self.index_dir)
                    return index
            except IndexLoadError:
                pass
        index = self._build(items, given, old)
        self._store.save(self.index_dir)  # (rows first: an index is only valid with them)
        index.fingerprint = fingerprint
        index.save(self.index_dir)
        return index

    def add_items(self, items: Sequence[Item]) -> None:
        """Embed new items and append them to the index (re-saved when ``index_dir`` is set)."""
        with self._lock:
            new = self._add_to_catalogue(items)
            try:
                rows = self._gallery_rows(new)
                emb = self._postprocess(torch.from_numpy(rows.embeddings))  # (M, d)
                self.index.add(emb.numpy(), [it.id for it in new])
            except BaseException:
                for it in new:
                    del self._items[it.id]
                raise
            if self._store is not None:
                s = self._store
                self._store = GalleryStore(
                    s.key, s.ids + rows.ids, s.stamps + rows.stamps,
                    np.concatenate([s.features, rows.features]),
                    np.concatenate([s.embeddings, rows.embeddings]),
                )
            if self.index_dir is not None:
                if self._store is not None:
                    self._store.save(self.index_dir)
                self.index.fingerprint = self.fingerprint()
                self.index.save(self.index_dir)

    def stored_features(self, ids: Sequence[str]) -> torch.Tensor:
        """``(len(ids), Dimg)`` float32 backbone features of gallery items, as stored when
        they were indexed (no decoding, no backbone); KeyError naming an id not stored."""
        with self._lock:
            if self._store is None:
                raise KeyError(
                    f"no stored backbone features for gallery item {next(iter(ids), '')!r}: "
                    "this Retriever was given a ready index without features"
                )
            rows = [self._store.row(i) for i in ids]
            return torch.from_numpy(self._store.features[rows].astype(np.float32))

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
        """Decode one image (path, bytes, PIL, numpy, file) into ``(3, S, S)``; an RGB PIL
        image (a query decoded once by the serving layer) is only transformed."""
        from PIL import Image

        from fashion_retrieval.data.images import load_image

        if isinstance(image, Image.Image) and image.mode == "RGB":
            return self._transform(image)
        return self._transform(load_image(image))

    def _image_features(self, images: Sequence[Any]) -> torch.Tensor:
        """``(B, Dimg)`` backbone features of query pictures on the device: stored rows for
        :class:`CatalogueImage` picks, the backbone for the others (decoded here)."""
        from fashion_retrieval.devices import to_device

        feats: list[torch.Tensor | None] = [None] * len(images)
        picks = [i for i, x in enumerate(images) if isinstance(x, CatalogueImage)]
        if picks and self._store is not None:
            try:
                stored = self.stored_features([images[i].id for i in picks])  # (p, Dimg)
            except KeyError:  # not all stored: those pictures are decoded below
                stored = None
            for i, row in zip(picks, stored if stored is not None else [], strict=False):
                feats[i] = row
        rest = [i for i, f in enumerate(feats) if f is None]
        if rest:
            pix = torch.stack([  # (r, 3, S, S)
                self._pixels(images[i].path if isinstance(images[i], CatalogueImage) else images[i])
                for i in rest
            ])
            for i, row in zip(rest, self.model.image_features(to_device(pix, self.device)), strict=True):
                feats[i] = row
        return torch.stack([to_device(f, self.device) for f in feats])  # (B, Dimg)

    def encode_queries(
        self, images: Sequence[Any] | None = None, texts: Sequence[str] | None = None
    ) -> torch.Tensor:
        """``(B, D)`` query embeddings, computed on the device; all images given or none,
        all texts given or none. An image may be a :class:`CatalogueImage` (stored features)."""
        from fashion_retrieval.devices import autocast

        n = len(images) if images is not None else len(texts or [])
        if n == 0:
            raise QueryError(NO_QUERY)
        out = []
        with self._lock, torch.inference_mode(), autocast(self.device, self.mixed_precision):
            for a in range(0, n, self.batch_size):
                b = min(a + self.batch_size, n)
                feats = self._image_features(images[a:b]) if images is not None else None
                txt = list(texts[a:b]) if texts is not None else None
                out.append(self.model.encode_query(texts=txt, image_features=feats).float().cpu())
        return torch.cat(out)  # (B, D)

    def unknown_words(self, text: str) -> list[str] | None:
        """The words of ``text`` the model cannot read, or None when it reads none of them
        (``TextEncoder.unknown_words``)."""
        return self.model.unknown_words(text)

    def search(
        self,
        image: Any = None,
        text: str | None = None,
        k: int = 10,
        *,
        exclude_ids: Iterable[str] = (),
    ) -> list[Hit]:
        """Top-``k`` gallery items for an image, a text, or both (``exclude_ids`` left out);
        bad input is a :class:`QueryError` (``search.query``'s rules)."""
        return self.search_queries([make_query(image, text, k, exclude=exclude_ids)])[0]

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
            raise QueryError(NO_QUERY)
        if len(images) != len(texts):
            raise QueryError(f"{len(images)} images but {len(texts)} texts: give one of each per query")
        excluded = list(exclude_ids) if exclude_ids is not None else [()] * n
        if len(excluded) != n:
            raise QueryError(f"exclude_ids has {len(excluded)} entries for {n} queries")
        queries = []
        for i, (image, text, skip) in enumerate(zip(images, texts, excluded, strict=True)):
            try:
                queries.append(make_query(image, text, k, exclude=skip))
            except QueryError as err:
                raise QueryError(f"Query {i}: {err}") from None
        return self.search_queries(queries)

    def search_queries(self, queries: Sequence[Query]) -> list[list[Hit]]:
        """The hits of each :class:`Query` (``search.query.make_query``): nothing is checked
        or decoded again, a catalogue pick uses its stored features. Queries may mix
        image-only, text-only and composed ones (one model batch per kind); each has its own
        ``k`` (clipped to the gallery size) and exclusions."""
        if not queries:
            raise QueryError(NO_QUERY)
        groups: dict[tuple[bool, bool], list[int]] = {}
        for i, q in enumerate(queries):
            groups.setdefault((q.image is not None, bool(q.text)), []).append(i)
        emb = torch.empty(0)
        for (has_img, has_txt), rows in groups.items():
            part = self.encode_queries(
                [queries[i].image for i in rows] if has_img else None,
                [queries[i].text for i in rows] if has_txt else None,
            )  # (len(rows), D)
            if emb.numel() == 0:
                emb = torch.empty(len(queries), part.shape[1])
            emb[rows] = part
        k = min(max(q.k for q in queries), len(self))
        hits = self._ranked(emb, k, [set(q.exclude) for q in queries])
        return [h[: q.k] for h, q in zip(hits, queries, strict=True)]

    def search_session(
        self, image: Any, texts: Sequence[str], k: int = 10, *, policy: str = "history",
        exclude_ids: Iterable[str] = (),
    ) -> list[Hit]:
        """Hits of one refinement turn: the current ``image`` (a picked result, best a
        :class:`CatalogueImage`) with every request so far, ``texts`` (oldest first), made one
        query by the history ``policy`` (``models.history``); ``exclude_ids`` (the results
        already shown and passed over, the pictures picked) are left out."""
        from fashion_retrieval.models.history import session_query

        picture = decode_picture(image)
        if picture is None:
            raise QueryError("A refinement turn needs a picture: the result picked last.")
        cleaned = [clean_text(t) for t in texts]
        if not cleaned or not all(cleaned):
            raise QueryError("Every turn of a refinement needs words: what is still wrong.")
        k = min(check_k(k), len(self))
        turns = self.encode_queries([picture] * len(cleaned), cleaned)  # (T, D)
        return self._ranked(session_query(policy, turns)[None], k, [set(exclude_ids)])[0]

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
        from fashion_retrieval.checkpoints import load_model

        model = load_model(str(path_or_repo), revision=revision)
        local = Path(path_or_repo)
        if "index_dir" not in kwargs and local.is_dir() and os.access(local, os.W_OK):
            kwargs["index_dir"] = local / "index"
        return cls(model, items, **kwargs)
