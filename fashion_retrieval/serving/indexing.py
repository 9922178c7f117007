"""Indexing a catalogue across processes (``python -m fashion_retrieval.build_index``).

The items still to embed (those an earlier gallery store does not already hold unchanged)
are cut into chunks of ``chunk_size``; chunk ``i`` belongs to process ``i % num_processes``
(Accelerate's ``process_index``), which embeds it in batches and writes it atomically as
``chunk-<i>.npz`` (ids, file stamps, backbone features, embeddings, skipped files) under the
work folder ``<index dir>/build_work``. A restart keeps every chunk whose ids and file stamps
still hold; a new checkpoint, catalogue or chunk size empties the folder (``manifest.json``).
When all chunks are there the main process merges them in catalogue order into the
:class:`GalleryStore` and builds the index through the app's own
:func:`~fashion_retrieval.serving.models.load_retriever`, so ``app.py`` reuses both as they are.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from fashion_retrieval.io_utils import atomic_write_bytes, atomic_write_json
from fashion_retrieval.search.gallery_store import GalleryStore, StoreLoadError, file_stamp

WORK_DIR, MANIFEST, SUMMARY_FILE = "build_work", "manifest.json", "build_index.json"
Log = Callable[[str], None]


def store_key(model: Any) -> str:
    """The key a Retriever gives the rows of ``model`` in full precision (what it reuses)."""
    from fashion_retrieval.search.index import combine_fingerprints
    from fashion_retrieval.search.retriever import model_fingerprint

    return combine_fingerprints(model_fingerprint(model))


def chunk_file(work: Path, i: int) -> Path:
    """Where chunk ``i`` is written."""
    return work / f"chunk-{i:06d}.npz"


def write_chunk(path: Path, ids: Sequence[str], stamps: Sequence[tuple], kept: np.ndarray,
                features: np.ndarray, embeddings: np.ndarray, skipped: Sequence[str]) -> None:
    """One chunk, atomically: every id and stamp, which were kept, their rows, why others failed."""
    buf = io.BytesIO()
    np.savez(buf, ids=np.array(ids, dtype=str), sizes=np.array([s[1] for s in stamps], np.int64),
             mtimes=np.array([s[2] for s in stamps], np.int64), kept=kept,
             features=features.astype(np.float16), embeddings=embeddings.astype(np.float32),
             reasons=np.array(list(skipped), dtype=str))  # fmt: skip
    atomic_write_bytes(path, buf.getvalue())


def read_chunk(path: Path, ids: Sequence[str], stamps: Sequence[tuple]) -> dict | None:
    """A finished chunk's arrays, or None when it is missing, damaged or stale."""
    try:
        with np.load(path, allow_pickle=False) as z:
            chunk = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError):
        return None
    now = [(s[1], s[2]) for s in stamps]
    if chunk["ids"].tolist() != list(ids) or list(zip(chunk["sizes"].tolist(), chunk["mtimes"].tolist(),
                                                       strict=True)) != now:
        return None
    return chunk


def embed_chunk(model: Any, items: Sequence[Any], **options: Any) -> tuple[np.ndarray, np.ndarray,
                                                                            np.ndarray, list[str]]:
    """``kept (n,)``, backbone features ``(m, Dimg)`` and embeddings ``(m, D)`` of the readable
    items, and the reason for each unreadable one (in order)."""
    import torch

    from fashion_retrieval.models.embedding import ModelEmbeddings, embed_images_skipping_bad
    from fashion_retrieval.serving.photos import check_photo

    feats, rows = embed_images_skipping_bad(model, [it.path for it in items], target=False, **options)
    kept = np.zeros(len(items), dtype=bool)
    kept[rows] = True
    good = [it for it, k in zip(items, kept, strict=True) if k]
    emb = (ModelEmbeddings(model, good, features=feats, **options).item_embeddings()
           if good else torch.empty(0, model.config.embed_dim))  # fmt: skip
    reasons = [check_photo(it.path) or "unreadable" for it, k in zip(items, kept, strict=True) if not k]
    return kept, feats.numpy(), emb.numpy(), reasons


def _digest(ids: Sequence[str], stamps: Sequence[tuple]) -> str:
    h = hashlib.sha256()
    for i, s in zip(ids, stamps, strict=True):
        h.update(f"{i}\0{s[0]}\0{s[1]}\0{s[2]}\n".encode())
    return h.hexdigest()


def _eta(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}h{m % 60:02d}m" if m >= 60 else f"{m}m{s:02d}s"


def _merge(work: Path, chunks: list[list[int]], items: Sequence[Any], stamps: Sequence[tuple],
           old: GalleryStore | None, reuse: dict[str, int]) -> tuple[np.ndarray, ...]:
    """Rows of every item in catalogue order, from the chunks and the reused store:
    ``keep (N,)``, features ``(N, Dimg)``, embeddings ``(N, D)``, and the unreadable files."""
    keep = np.zeros(len(items), dtype=bool)
    out: list[np.ndarray] = []
    failed: list[dict[str, str]] = []

    def put(rows: list[int], f: np.ndarray, e: np.ndarray) -> None:
        if not out:
            out.extend([np.zeros((len(items), f.shape[1]), np.float16),
                        np.zeros((len(items), e.shape[1]), np.float32)])  # fmt: skip
        out[0][rows], out[1][rows], keep[rows] = f, e, True

    if reuse:
        put([r for r, it in enumerate(items) if it.id in reuse],
            *(a[[reuse[it.id] for it in items if it.id in reuse]] for a in (old.features, old.embeddings)))
    for i, rows in enumerate(chunks):
        c = read_chunk(chunk_file(work, i), [items[r].id for r in rows], [stamps[r] for r in rows])
        if c is None:
            raise RuntimeError(f"{chunk_file(work, i)} changed while merging; run again")
        if c["kept"].any():
            put([r for r, k in zip(rows, c["kept"], strict=True) if k], c["features"], c["embeddings"])
        bad = [r for r, k in zip(rows, c["kept"], strict=True) if not k]
        failed += [{"path": items[r].path, "reason": str(why)}
                   for r, why in zip(bad, c["reasons"], strict=True)]  # fmt: skip
    if not keep.any():
        raise ValueError("no image of the catalogue could be read")
    return keep, out[0], out[1], failed


def build_index(
    checkpoint: str | os.PathLike,
    gallery: str | os.PathLike,
    *,
    dataset: str | None = None,
    split: str | None = None,
    home: str | os.PathLike | None = None,
    chunk_size: int = 512,
    batch_size: int = 64,
    num_workers: int = 0,
    stop_after_chunks: int | None = None,
    log: Log | None = None,
) -> dict[str, Any]:
    """Embed and index ``gallery`` for ``checkpoint`` on every process of this launch;
    returns the summary (also written as ``build_index.json`` beside the index). With
    ``stop_after_chunks`` each process stops after embedding that many chunks (``status``
    "stopped": a rehearsed kill; run again to resume)."""
    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs

    from fashion_retrieval.checkpoints import load_model
    from fashion_retrieval.paths import index_dir_for
    from fashion_retrieval.serving.catalogue import open_catalogue
    from fashion_retrieval.serving.models import load_retriever

    if chunk_size < 1 or batch_size < 1:
        raise ValueError(f"chunk size and batch size must be at least 1, got {chunk_size}, {batch_size}")
    t0 = time.perf_counter()
    # Processes wait for the main one's photo scan and for each other's last chunk: allow hours.
    acc = Accelerator(kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(hours=24))])
    main, rank, nproc = acc.is_main_process, acc.process_index, acc.num_processes
    say: Log = (log or (lambda m: print(f"[build_index] {m}", file=sys.stderr, flush=True))) if main \
        else (lambda m: None)  # fmt: skip
    model = load_model(str(checkpoint)).eval().to(acc.device)
    with acc.main_process_first():  # the main one scans a photo folder; the others reuse its scan
        catalogue = open_catalogue(gallery, dataset=dataset, split=split, log=say)
    index_dir = index_dir_for(checkpoint, catalogue.key, home)
    work = index_dir / WORK_DIR
    items = catalogue.items
    stamps = [file_stamp(it.path) for it in items]
    key = store_key(model)
    try:
        old: GalleryStore | None = GalleryStore.load(index_dir, key)
    except StoreLoadError:
        old = None
    reuse = old.reusable([it.id for it in items], stamps) if old is not None else {}
    todo = [r for r, it in enumerate(items) if it.id not in reuse]  # catalogue rows
    chunks = [todo[a:a + chunk_size] for a in range(0, len(todo), chunk_size)]
    manifest = {"key": key, "gallery": catalogue.key, "chunk_size": chunk_size,
                "todo": _digest([items[r].id for r in todo], [stamps[r] for r in todo])}
    if main:
        try:
            same = json.loads((work / MANIFEST).read_text(encoding="utf-8")) == manifest
        except (OSError, ValueError):
            same = False
        if not same:
            shutil.rmtree(work, ignore_errors=True)
            atomic_write_json(work / MANIFEST, manifest)
        started = {i for i in range(len(chunks)) if chunk_file(work, i).is_file()}  # resumed
        done_before = len(started)
        say(f"{catalogue.describe()}: {len(items)} images, {len(reuse)} already indexed, "
            f"{len(todo)} to embed in {len(chunks)} chunk(s) over {nproc} process(es) -> {index_dir}")
    acc.wait_for_everyone()

    import torchvision.transforms.v2  # noqa: F401  (the images' transform: a heavy first import)

    options = {"batch_size": batch_size, "num_workers": num_workers, "device": acc.device}
    t_embed, written = time.perf_counter(), 0
    for i in range(rank, len(chunks), nproc):
        part = [items[r] for r in chunks[i]]
        part_stamps = [stamps[r] for r in chunks[i]]
        if read_chunk(chunk_file(work, i), [it.id for it in part], part_stamps) is not None:
            continue  # finished before a restart
        if stop_after_chunks is not None and written >= stop_after_chunks:
            break
        kept, feats, emb, reasons = embed_chunk(model, part, **options)
        write_chunk(chunk_file(work, i), [it.id for it in part], part_stamps, kept, feats, emb, reasons)
        written += 1
        if main:
            done = sum(chunk_file(work, j).is_file() for j in range(len(chunks)))
            rate = (done - done_before) / max(time.perf_counter() - t_embed, 1e-9)  # chunks/s
            say(f"{done}/{len(chunks)} chunks, {rate * chunk_size:.1f} images/s, "
                f"ETA {_eta((len(chunks) - done) / rate) if rate > 0 else '?'}")
    acc.wait_for_everyone()
    embed_s = time.perf_counter() - t_embed
    if not main:
        return {"status": "worker", "process": rank}
    missing = [i for i in range(len(chunks)) if not chunk_file(work, i).is_file()]
    if missing:
        say(f"stopped with {len(chunks) - len(missing)}/{len(chunks)} chunks in {work}; "
            "run the same command again to resume")
        return {"status": "stopped", "chunks": len(chunks), "finished": len(chunks) - len(missing),
                "work_dir": str(work)}

    keep, feats, emb, failed = _merge(work, chunks, items, stamps, old, reuse)
    fresh = sum(len(c) for i, c in enumerate(chunks) if i not in started)  # embedded by this run
    for f in failed:
        say(f"skipped unreadable {f['path']} ({f['reason']})")
    rows = np.flatnonzero(keep)  # catalogue order, unreadable items left out
    GalleryStore(key, [items[r].id for r in rows], [stamps[r] for r in rows],
                 feats[rows], emb[rows]).save(index_dir)  # fmt: skip
    kept_catalogue = replace(catalogue, items=[items[r] for r in rows])
    retriever = load_retriever(checkpoint, kept_catalogue, home=home, model=model)  # index from the rows
    shutil.rmtree(work, ignore_errors=True)
    skipped = [{"path": p, "reason": why} for p, why in catalogue.unreadable] + failed
    summary = {
        "status": "ok", "checkpoint": str(checkpoint), "gallery": catalogue.describe(),
        "index_dir": str(index_dir), "indexed": len(rows), "embedded": len(todo) - len(failed),
        "reused": len(reuse), "chunks": len(chunks), "chunks_resumed": done_before,
        "processes": nproc, "index": retriever.index.kind, "embed_s": round(embed_s, 3),
        "images_per_s": round(fresh / embed_s, 2) if fresh else None,
        "seconds": round(time.perf_counter() - t0, 3), "skipped": skipped,
    }
    atomic_write_json(index_dir / SUMMARY_FILE, summary)
    say(f"indexed {len(rows)} images ({summary['embedded']} embedded, {len(reuse)} reused, "
        f"{len(skipped)} skipped) in {summary['seconds']:.1f} s; summary in {index_dir / SUMMARY_FILE}")
    return summary
