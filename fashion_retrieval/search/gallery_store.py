"""Per-item gallery data saved beside an index, so a changed gallery updates without
embedding again what it already embedded.

For every indexed item the store keeps its id, its file stamp (path, size, modification
time), its backbone features (``model.image_features``, float16) and its target embedding
(``model.encode_target``, float32, before any post-processing). The rows depend on the
model's weights and the autocast precision only (its ``key``), not on the index kind or the
post-processing, so changing those rebuilds the index from stored rows.

Two files in the index folder: ``gallery.npz`` (the arrays, uncompressed; zip CRCs catch a
damaged file) and ``gallery.json`` (key, ids, stamps, the npz's sha256), written last.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fashion_retrieval.io_utils import atomic_write_bytes, atomic_write_json

STORE_ARRAYS, STORE_META = "gallery.npz", "gallery.json"
STORE_VERSION = 1

Stamp = tuple[str, int, int]  # (path, size in bytes, modification time in ns); -1s when missing


def file_stamp(path: str | os.PathLike) -> Stamp:
    """``(path, size, mtime_ns)`` of a file, ``(path, -1, -1)`` when it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return (str(path), -1, -1)
    return (str(path), int(st.st_size), int(st.st_mtime_ns))


class StoreLoadError(ValueError):
    """A saved gallery store is missing, damaged, or made by another model (says which)."""


@dataclass
class GalleryStore:
    """Rows of indexed items: ``features (N, Dimg)`` float16, ``embeddings (N, D)`` float32."""

    key: str
    ids: list[str]
    stamps: list[Stamp]
    features: np.ndarray
    embeddings: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.ids)
        if not (len(self.stamps) == n == len(self.features) == len(self.embeddings)):
            raise ValueError(
                f"gallery store rows disagree: {n} ids, {len(self.stamps)} stamps, "
                f"{len(self.features)} feature rows, {len(self.embeddings)} embedding rows"
            )
        self.features = np.ascontiguousarray(self.features, dtype=np.float16)
        self.embeddings = np.ascontiguousarray(self.embeddings, dtype=np.float32)
        self._row = {i: r for r, i in enumerate(self.ids)}
        if len(self._row) != n:
            raise ValueError("gallery store ids must be unique")

    def __len__(self) -> int:
        return len(self.ids)

    def row(self, item_id: str) -> int:
        """The row of an id (KeyError naming it when it is not stored)."""
        try:
            return self._row[item_id]
        except KeyError:
            raise KeyError(f"no stored backbone features for gallery item {item_id!r}") from None

    def reusable(self, ids: Sequence[str], stamps: Sequence[Stamp]) -> dict[str, int]:
        """Rows that still hold for these items: same id, path, size and modification time."""
        out = {}
        for item_id, stamp in zip(ids, stamps, strict=True):
            r = self._row.get(item_id)
            if r is not None and tuple(self.stamps[r]) == tuple(stamp) and stamp[1] >= 0:
                out[item_id] = r
        return out

    def matches(self, ids: Sequence[str], stamps: Sequence[Stamp]) -> bool:
        """Whether the store holds exactly these items, in this order, unchanged."""
        return list(self.ids) == list(ids) and all(
            tuple(a) == tuple(b) for a, b in zip(self.stamps, stamps, strict=True)
        )

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``gallery.npz`` then ``gallery.json`` (which marks a complete save)."""
        out = Path(directory)
        buf = io.BytesIO()
        np.savez(buf, features=self.features, embeddings=self.embeddings)
        data = buf.getvalue()
        atomic_write_bytes(out / STORE_ARRAYS, data)
        meta = {
            "version": STORE_VERSION,
            "key": self.key,
            "count": len(self.ids),
            "ids": self.ids,
            "stamps": [list(s) for s in self.stamps],
            "arrays_sha256": hashlib.sha256(data).hexdigest(),
        }
        atomic_write_json(out / STORE_META, meta, indent=0)
        return out

    @classmethod
    def load(cls, directory: str | os.PathLike, key: str | None = None) -> GalleryStore:
        """Read a store; :class:`StoreLoadError` when missing, damaged or (given ``key``)
        made under another model or precision."""
        d = Path(directory)
        meta = read_meta(d)
        if key is not None and meta.get("key") != key:
            raise StoreLoadError(f"{d / STORE_META}: made by another model or precision")
        try:
            data = (d / STORE_ARRAYS).read_bytes()
        except OSError as err:
            raise StoreLoadError(f"{d / STORE_ARRAYS}: unreadable ({err})") from err
        if hashlib.sha256(data).hexdigest() != meta.get("arrays_sha256"):
            raise StoreLoadError(f"{d / STORE_ARRAYS}: does not match {STORE_META} (damaged)")
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
                features, embeddings = arrays["features"], arrays["embeddings"]
            return cls(meta["key"], list(meta["ids"]), [tuple(s) for s in meta["stamps"]],
                       features, embeddings)  # fmt: skip
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise StoreLoadError(f"{d}: unreadable gallery store ({err})") from err


def read_meta(directory: Path) -> dict[str, Any]:
    """``gallery.json`` as a dict; :class:`StoreLoadError` naming the problem."""
    path = directory / STORE_META
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StoreLoadError(f"{path}: missing") from None
    except (OSError, ValueError) as err:
        raise StoreLoadError(f"{path}: unreadable ({err})") from err
    if not isinstance(meta, dict) or meta.get("version") != STORE_VERSION or not {
        "key", "ids", "stamps", "arrays_sha256"
    } <= set(meta):
        raise StoreLoadError(f"{path}: not a gallery store of version {STORE_VERSION}")
    return meta


def stored_stamps(directory: str | os.PathLike) -> dict[str, tuple[int, int]]:
    """``{id: (size, mtime_ns)}`` of the items a saved store holds ({} when there is none):
    what :func:`~fashion_retrieval.serving.photos.scan_photo_folder` takes as ``known``."""
    try:
        meta = read_meta(Path(directory))
    except StoreLoadError:
        return {}
    return {i: (int(s[1]), int(s[2])) for i, s in zip(meta["ids"], meta["stamps"], strict=False)}


def aligned_rows(features: Any, ids: Sequence[str]) -> dict[str, np.ndarray]:
    """Given backbone features (``{id: row}`` or ``(N, Dimg)`` aligned with ``ids``) by id."""
    if isinstance(features, Mapping):
        return {i: np.asarray(_numpy(features[i])) for i in ids if i in features}
    arr = _numpy(features)
    if arr.ndim != 2 or len(arr) != len(ids):
        raise ValueError(
            f"features must be ({len(ids)}, Dimg) aligned with the items, got shape {arr.shape}"
        )
    return {i: arr[r] for r, i in enumerate(ids)}


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().float().numpy()
    return np.asarray(x, dtype=np.float32)


def embed_rows(
    model: Any,
    items: Sequence[Any],
    given: Mapping[str, np.ndarray] | None = None,
    **options: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Backbone features ``(N, Dimg)`` and target embeddings ``(N, D)`` of ``items``.

    Items with a row in ``given`` (backbone features by id) skip the backbone; the others
    are decoded and go through ``model.image_features`` once. ``options`` go to
    :class:`~fashion_retrieval.models.embedding.ModelEmbeddings` (batch_size,
    num_workers, device, mixed_precision).
    """
    import torch

    from fashion_retrieval.models.embedding import ModelEmbeddings

    given = given or {}
    todo = [it for it in items if it.id not in given]
    computed: dict[str, np.ndarray] = {}
    if todo:
        feats = ModelEmbeddings(model, todo, **options).backbone_features()  # (M, Dimg)
        computed = {it.id: row for it, row in zip(todo, feats.numpy(), strict=True)}
    features = np.stack([given[it.id] if it.id in given else computed[it.id] for it in items])
    heads = ModelEmbeddings(model, items, features=torch.from_numpy(features), **options)
    return features.astype(np.float32), heads.item_embeddings().numpy()  # (N, Dimg), (N, D)
