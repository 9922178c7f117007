"""A faiss gallery index: exact inner product by default, IVF and HNSW for large galleries.

Embeddings are expected L2-normalised, so inner product is cosine similarity. The index
keeps the gallery ids beside the faiss index and saves both with a fingerprint of the model
and the gallery, so a stale index is detected and rebuilt. faiss is imported lazily.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fashion_retrieval.io_utils import atomic_write_bytes, atomic_write_json
from fashion_retrieval.registry import Registry

INDEX_FILE, IDS_FILE, META_FILE = "index.faiss", "ids.json", "meta.json"
AUTO_EXACT_LIMIT = 100_000  # "auto" uses exact search below this many items


class IndexLoadError(ValueError):
    """A saved index is missing, corrupt or inconsistent (the message names the file)."""


FEW_QUERIES = 20  # below this many queries faiss's flat scan is single-threaded


def _faiss() -> Any:
    """The faiss module, or an ImportError that says how to install it."""
    try:
        import faiss
    except ImportError as err:  # pragma: no cover - faiss is in requirements.txt
        raise ImportError("the gallery index needs faiss: pip install faiss-cpu") from err
    return faiss


def combine_fingerprints(*parts: str) -> str:
    """One short stable fingerprint (sha256 hex prefix) from several fingerprint strings."""
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:32]


def _as_matrix(x: Any, name: str, dim: int | None = None) -> np.ndarray:
    """``x`` as a C-contiguous float32 ``(N, D)`` array; errors for bad shape, NaN, dim."""
    if hasattr(x, "detach"):  # a torch tensor, without importing torch here
        x = x.detach().cpu().float().numpy()
    a = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, D), got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contain NaN or infinite values")
    if dim is not None and a.shape[1] != dim:
        raise ValueError(f"{name} have dimension {a.shape[1]} but the index has dimension {dim}")
    return a


# --- index kinds: one registry entry per kind holds how to build it and how to search it ---


@dataclass(frozen=True)
class IndexKind:
    """One kind of faiss index: its build and search parameters, and how to apply them.

    ``make(dim, emb, build_params) -> (faiss index, build params used)`` creates (and where
    needed trains) an empty index; ``search_defaults(build params used)`` gives the default
    search-time parameters; ``apply(index, search params)`` sets them on a faiss index
    (faiss does not serialise them) and ``clip(build params, search params)`` bounds them.
    """

    name: str
    build_params: tuple[str, ...]
    search_params: tuple[str, ...]
    make: Callable[[int, np.ndarray, dict], tuple[Any, dict]]
    search_defaults: Callable[[dict], dict] = lambda built: {}
    apply: Callable[[Any, dict], None] = lambda index, params: None
    clip: Callable[[dict, dict], dict] = lambda built, params: params

    def build(self, emb: np.ndarray, **params: Any) -> tuple[Any, dict]:
        """An index over ``emb (N, D)`` (vectors added) and every parameter it uses,
        build and search, defaults filled in; unknown parameters are a ``ValueError``."""
        valid = self.build_params + self.search_params
        unknown = sorted(set(params) - set(valid))
        if unknown:
            names = ", ".join(sorted(valid)) or "none"
            raise ValueError(f"unknown {self.name} parameters {unknown}; valid: {names}")
        built_in = {k: v for k, v in params.items() if k in self.build_params}
        index, built = self.make(emb.shape[1], emb, built_in)
        given = {k: v for k, v in params.items() if k in self.search_params}
        search = self.clip(built, {**self.search_defaults(built), **given})
        self.apply(index, search)
        index.add(emb)
        return index, {**built, **search}

    def allowed_search(self, params: dict) -> tuple[str, ...]:
        """Search parameters that an index built with ``params`` accepts."""
        return tuple(p for p in self.search_params if p != "rerank" or params.get("codes") == "pq")

    def set_search(self, index: Any, params: dict, **changes: Any) -> dict:
        """``params`` with ``changes`` applied to ``index``; an unknown name is a ValueError."""
        allowed = self.allowed_search(params)
        unknown = sorted(set(changes) - set(allowed))
        if unknown:
            raise ValueError(
                f"{self.name} index has no search parameter {unknown}; valid: {sorted(allowed)}"
            )
        built = {k: v for k, v in params.items() if k not in self.search_params}
        current = {k: v for k, v in params.items() if k in self.search_params}
        search = self.clip(built, {**current, **{k: int(v) for k, v in changes.items()}})
        self.apply(index, search)
        return {**built, **search}


INDEX_KINDS: Registry = Registry("index kind")


def _make_flat(dim: int, emb: np.ndarray, params: dict) -> tuple[Any, dict]:
    """Exact inner-product search."""
    return _faiss().IndexFlatIP(dim), {}


IVF_TRAIN_POINTS_PER_CELL = 64  # k-means sample per cell (faiss advises 39 to 256)
IVF_CODES = ("flat", "pq")


def _make_ivf(dim: int, emb: np.ndarray, params: dict) -> tuple[Any, dict]:
    """Inverted lists over a k-means coarse quantiser; ``nlist`` cells, ``nprobe`` visited.

    ``codes="flat"`` (default) stores the vectors as they are and scans them exactly.
    ``codes="pq"`` stores 4-bit product-quantiser codes of ``pq_m`` sub-vectors, scanned
    with SIMD lookups (faiss's fast-scan), and re-ranks the best ``rerank`` x k candidates
    against the stored full vectors, so the scores returned are exact inner products.
    Scanning a code costs a fraction of reading a 4 x D-byte vector, which is what lets
    IVF visit enough cells for high recall on a large gallery.
    """
    faiss = _faiss()
    codes = params.get("codes", "flat")
    if codes not in IVF_CODES:
        raise ValueError(f"ivf codes must be one of {IVF_CODES}, got {codes!r}")
    if codes == "flat" and "pq_m" in params:
        raise ValueError("pq_m and rerank apply to codes='pq' only")
    n = len(emb)
    # Default: ~4 sqrt(N) cells, but at least 39 training points per cell (faiss's advice).
    nlist = int(params.get("nlist", min(round(4 * math.sqrt(n)), n // 39)))
    nlist = max(1, min(nlist, n))  # k-means cannot make more cells than points
    used: dict[str, Any] = {"nlist": nlist}
    if codes == "flat":
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    else:
        pq_m = int(params.get("pq_m", _default_pq_m(dim)))
        if pq_m < 1 or dim % pq_m:
            raise ValueError(f"pq_m must divide the dimension {dim}, got {pq_m}")
        index = faiss.index_factory(dim, f"IVF{nlist},PQ{pq_m}x4fs,RFlat", faiss.METRIC_INNER_PRODUCT)
        used.update(codes="pq", pq_m=pq_m)
    faiss.extract_index_ivf(index).cp.max_points_per_centroid = IVF_TRAIN_POINTS_PER_CELL
    index.train(emb)
    return index, used


def _ivf_search_defaults(built: dict) -> dict:
    """16 cells visited with exact vectors; with cheap PQ codes 1/16 of them (at least 16),
    re-ranking 30 x k candidates."""
    if built.get("codes") == "pq":
        return {"nprobe": max(16, built["nlist"] // 16), "rerank": 30}
    return {"nprobe": 16}


def _ivf_clip(built: dict, params: dict) -> dict:
    """``nprobe`` within 1..nlist; ``rerank`` (PQ codes only) at least 1."""
    if "rerank" in params and built.get("codes") != "pq":
        raise ValueError("pq_m and rerank apply to codes='pq' only")
    out = {**params, "nprobe": max(1, min(int(params["nprobe"]), built["nlist"]))}
    if "rerank" in out:
        out["rerank"] = int(out["rerank"])
        if out["rerank"] < 1:
            raise ValueError(f"rerank must be at least 1, got {out['rerank']}")
    return out


def _ivf_apply(index: Any, params: dict) -> None:
    _faiss().extract_index_ivf(index).nprobe = int(params["nprobe"])
    if "rerank" in params:  # codes="pq": an IndexRefineFlat around the IVF
        index.k_factor = float(params["rerank"])


def _default_pq_m(dim: int) -> int:
    """Sub-quantisers for ``codes="pq"``: 8 dimensions each (a 4-bit code per 8 floats),
    or 4, 2, 1 where the dimension is not a multiple of 8."""
    return dim // next(per for per in (8, 4, 2, 1) if dim % per == 0)


def _make_hnsw(dim: int, emb: np.ndarray, params: dict) -> tuple[Any, dict]:
    """A navigable small-world graph; ``M`` links, ``efConstruction`` candidates per insert."""
    m = int(params.get("M", 32))
    index = _faiss().IndexHNSWFlat(dim, m, _faiss().METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = int(params.get("efConstruction", 80))
    return index, {"M": m, "efConstruction": index.hnsw.efConstruction}


def _hnsw_apply(index: Any, params: dict) -> None:
    index.hnsw.efSearch = int(params["efSearch"])


for _kind in (
    IndexKind("flat", (), (), _make_flat),
    IndexKind(
        "ivf", ("nlist", "codes", "pq_m"), ("nprobe", "rerank"), _make_ivf,
        _ivf_search_defaults, _ivf_apply, _ivf_clip,
    ),
    IndexKind(
        "hnsw", ("M", "efConstruction"), ("efSearch",), _make_hnsw,
        lambda built: {"efSearch": 64}, _hnsw_apply,
    ),
):
    INDEX_KINDS.register(_kind.name)(_kind)


def index_kind(name: str) -> IndexKind:
    """The registry entry of a kind (a ValueError lists the valid kinds)."""
    return INDEX_KINDS.get(name)  # type: ignore[return-value]


def choose_kind(kind: str, n: int, params: dict | None = None) -> tuple[str, dict]:
    """The kind and parameters to build for ``n`` items: the one place "auto" is decided.

    ``"auto"`` is exact (``flat``) below ``AUTO_EXACT_LIMIT`` items; above it IVF with PQ
    codes re-ranked on the full vectors (fastest at high recall in bench_ann.py), unless
    ``params`` choose the codes. Any other kind is checked and returned as given.
    """
    params = dict(params or {})
    if kind == "auto":
        if n < AUTO_EXACT_LIMIT:
            return "flat", params
        return "ivf", {"codes": "pq", **params}
    index_kind(kind)  # raises a ValueError listing valid kinds
    return kind, params


def resolve_kind(kind: str, n: int) -> str:
    """The kind :func:`choose_kind` builds for ``n`` items (``"auto"`` resolved)."""
    return choose_kind(kind, n)[0]


class GalleryIndex:
    """Gallery embeddings in a faiss index, with their ids, kind, parameters and fingerprint."""

    def __init__(self, index: Any, ids: list[str], kind: str, params: dict, fingerprint: str = ""):
        if index.ntotal != len(ids):
            raise ValueError(f"the faiss index holds {index.ntotal} vectors but {len(ids)} ids")
        self._index = index
        self._ids = list(ids)
        self._id_set = set(self._ids)
        if len(self._id_set) != len(self._ids):
            raise ValueError("gallery ids must be unique")
        self.kind = kind
        self.params = dict(params)
        self.fingerprint = fingerprint

    @classmethod
    def build(
        cls,
        embeddings: Any,
        ids: Sequence[str],
        kind: str = "auto",
        *,
        fingerprint: str = "",
        **params: Any,
    ) -> GalleryIndex:
        """Index ``embeddings (N, D)`` under ``ids``; ``kind`` is flat, ivf, hnsw or auto.

        ``auto`` is exact below ``AUTO_EXACT_LIMIT`` items, and above it IVF with PQ codes
        re-ranked on the full vectors (``codes="pq"``), unless ``params`` say otherwise.
        """
        emb = _as_matrix(embeddings, "embeddings")
        if len(emb) == 0:
            raise ValueError("cannot build an index over an empty gallery")
        if len(ids) != len(emb):
            raise ValueError(f"{len(emb)} embeddings but {len(ids)} ids")
        kind, params = choose_kind(kind, len(emb), params)
        index, used = index_kind(kind).build(emb, **params)
        return cls(index, [str(i) for i in ids], kind, used, fingerprint)

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return int(self._index.d)

    @property
    def ids(self) -> list[str]:
        """Gallery ids, in index order (a copy)."""
        return list(self._ids)

    def id_at(self, position: int) -> str:
        """The id stored at an index position (as returned by :meth:`search`)."""
        return self._ids[position]

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._id_set

    def add(self, embeddings: Any, ids: Sequence[str]) -> None:
        """Append ``embeddings (M, D)`` under new, unique ``ids``."""
        emb = _as_matrix(embeddings, "embeddings", self.dim)
        ids = [str(i) for i in ids]
        if len(ids) != len(emb):
            raise ValueError(f"{len(emb)} embeddings but {len(ids)} ids")
        repeated = {i for i, n in Counter(ids).items() if n > 1}
        dup = sorted((set(ids) & self._id_set) | repeated)
        if dup:
            raise ValueError(f"ids already in the index or repeated: {dup[:5]}")
        self._index.add(emb)
        self._ids.extend(ids)
        self._id_set.update(ids)

    def search(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` for ``queries (Q, D)``: ``scores (Q, k)`` and positions ``(Q, k)``.

        ``k`` < 1 is an error; ``k`` above the gallery size is clipped. Approximate kinds
        may return fewer than ``k`` results: those slots hold position -1, score -inf.
        """
        q = _as_matrix(queries, "queries", self.dim)
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k must be an integer of at least 1, got {k!r}")
        k = min(int(k), len(self))
        if self.kind == "flat" and len(q) < FEW_QUERIES:
            return self._search_flat_few(q, k)
        scores, positions = self._index.search(q, k)  # (Q, k), (Q, k)
        scores[positions < 0] = -np.inf
        return scores, positions

    def _search_flat_few(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact search for a handful of queries as one multi-threaded mat-vec + top-k.

        faiss scans a flat index on a single thread when there are fewer than 20 queries
        (its BLAS threshold); reading its stored vectors in place and letting torch's
        BLAS use every core makes a single query 2-3x faster at 100k items.
        """
        import torch

        n, d = len(self), self.dim
        stored = _faiss().rev_swig_ptr(self._index.get_xb(), n * d)  # a view, no copy
        gallery = torch.from_numpy(np.asarray(stored).reshape(n, d))  # (N, D)
        sims = torch.from_numpy(q) @ gallery.T  # (Q, N)
        scores, positions = torch.topk(sims, k, dim=1)
        return scores.numpy(), positions.numpy().astype(np.int64)

    def set_search_params(self, **params: Any) -> None:
        """Change search-time parameters: ``nprobe`` (and ``rerank`` with PQ codes) for IVF,
        ``efSearch`` for HNSW."""
        self.params = index_kind(self.kind).set_search(self._index, self.params, **params)

    def search_ids(self, queries: Any, k: int) -> list[list[tuple[str, float]]]:
        """Like :meth:`search` but ``[(id, score), ...]`` per query, missing slots dropped."""
        scores, positions = self.search(queries, k)
        return [
            [(self._ids[p], float(s)) for p, s in zip(prow, srow, strict=True) if p >= 0]
            for prow, srow in zip(positions, scores, strict=True)
        ]

    def meta(self) -> dict:
        """What ``meta.json`` holds."""
        return {
            "kind": self.kind,
            "params": self.params,
            "dim": self.dim,
            "count": len(self),
            "fingerprint": self.fingerprint,
        }

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``index.faiss``, ``ids.json`` and ``meta.json`` (last) atomically."""
        out = Path(directory)
        data = _faiss().serialize_index(self._index).tobytes()  # uint8 array -> bytes
        ids = (json.dumps(self._ids, indent=0, ensure_ascii=False) + "\n").encode("utf-8")
        atomic_write_bytes(out / INDEX_FILE, data)
        atomic_write_bytes(out / IDS_FILE, ids)
        # Last: marks a complete save; the hashes tie it to these very files.
        hashes = {"index_sha256": _sha256(data), "ids_sha256": _sha256(ids)}
        atomic_write_json(out / META_FILE, {**self.meta(), **hashes})
        return out

    @classmethod
    def load(cls, directory: str | os.PathLike) -> GalleryIndex:
        """Read an index written by :meth:`save`; :class:`IndexLoadError` names what is wrong."""
        d = Path(directory)
        for name in (META_FILE, IDS_FILE, INDEX_FILE):
            if not (d / name).is_file():
                raise IndexLoadError(f"{d / name}: missing")
        meta, ids = _read_json(d / META_FILE), _read_json(d / IDS_FILE)
        data = (d / INDEX_FILE).read_bytes()
        _check_hash(d / INDEX_FILE, data, meta)
        _check_hash(d / IDS_FILE, (d / IDS_FILE).read_bytes(), meta)
        if not isinstance(meta, dict) or not {"kind", "params", "dim", "count"} <= set(meta):
            raise IndexLoadError(f"{d / META_FILE}: not an index description")
        if not isinstance(ids, list) or len(ids) != meta["count"]:
            raise IndexLoadError(f"{d / IDS_FILE}: expected {meta['count']} ids")
        try:
            index = _faiss().deserialize_index(np.frombuffer(data, dtype=np.uint8))
        except RuntimeError as err:
            raise IndexLoadError(f"{d / INDEX_FILE}: unreadable faiss index ({err})") from err
        if index.ntotal != meta["count"] or index.d != meta["dim"]:
            raise IndexLoadError(
                f"{d / INDEX_FILE}: holds {index.ntotal} x {index.d}, "
                f"meta.json says {meta['count']} x {meta['dim']}"
            )
        try:
            index_kind(meta["kind"]).apply(index, meta["params"])
        except (ValueError, KeyError) as err:
            raise IndexLoadError(f"{d / META_FILE}: bad kind or parameters ({err})") from err
        return cls(index, ids, meta["kind"], meta["params"], meta.get("fingerprint", ""))

    @classmethod
    def load_or_build(
        cls,
        directory: str | os.PathLike,
        fingerprint: str,
        build_fn: Callable[[], GalleryIndex],
    ) -> GalleryIndex:
        """The saved index if its fingerprint matches, else ``build_fn()`` saved in its place.

        A missing or corrupt saved index is rebuilt too.
        """
        try:
            index = cls.load(directory)
            if index.fingerprint == fingerprint:
                return index
        except IndexLoadError:
            pass
        index = build_fn()
        index.fingerprint = fingerprint
        index.save(directory)
        return index


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_hash(path: Path, data: bytes, meta: Any) -> None:
    """IndexLoadError when ``meta.json`` records another hash for this file (a torn save)."""
    key = "index_sha256" if path.name == INDEX_FILE else "ids_sha256"
    want = meta.get(key) if isinstance(meta, dict) else None
    if want is not None and want != _sha256(data):
        raise IndexLoadError(f"{path}: does not match {META_FILE} (an interrupted save); rebuild the index")


def _read_json(path: Path) -> Any:
    """Parsed JSON, or :class:`IndexLoadError` naming the file and line."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise IndexLoadError(f"{path}: invalid JSON at line {err.lineno}: {err.msg}") from err
    except (OSError, UnicodeDecodeError) as err:
        raise IndexLoadError(f"{path}: unreadable ({err})") from err
