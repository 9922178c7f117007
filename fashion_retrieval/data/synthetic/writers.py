"""Writers for the on-disk layouts: Fashion200k, FashionIQ and a datasets imagefolder.

Every file is written atomically (``io_utils.atomic_write_bytes``), so an
interrupted run leaves only complete files; a rerun with the same parameters skips the
images already there. A marker file ``.synthetic.json`` records the parameters and,
once everything is written, ``"complete": true``.
"""

from __future__ import annotations

import io
import json
import shutil
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fashion_retrieval.io_utils import atomic_write_bytes
from fashion_retrieval.registry import Registry

from .attributes import CATEGORIES, Product, attribute_values
from .catalog import Catalog, build_catalog, caption, image_id
from .render import ViewConfig, render_image

MARKER = ".synthetic.json"
LAYOUT_VERSION = 2  # 2: families start at every garment type x colour in turn
WRITERS: Registry[dict] = Registry("synthetic format")
# What each writer creates under the root (removed on overwrite, only where a marker exists).
OWNED = ("images", "captions", "image_splits", "image_meta.json", "labels", "women",
         "test_queries.txt", "train", "validation", "test")


def atomic_write_text(path: Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"), fsync=False)


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


@dataclass(frozen=True)
class RenderJob:
    """One image to render and where to put it."""

    product: Product
    view: int
    path: str


@dataclass(frozen=True)
class RenderSettings:
    """What every job of one run shares."""

    size: int
    view: ViewConfig
    seed: int
    quality: int = 92


def _render_chunk(args: tuple[list[RenderJob], RenderSettings]) -> int:
    """Render and write the jobs whose files do not exist yet; returns how many were written."""
    jobs, settings = args
    written = 0
    for job in jobs:
        path = Path(job.path)
        if path.exists():
            continue
        img = render_image(job.product, job.view, settings.size, settings.view, settings.seed)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=settings.quality)
        atomic_write_bytes(path, buf.getvalue(), fsync=False)
        written += 1
    return written


def render_jobs(jobs: list[RenderJob], settings: RenderSettings, workers: int = 1) -> int:
    """Render ``jobs`` with ``workers`` processes (1: in this process); returns images written."""
    chunk = 64
    chunks = [(jobs[i : i + chunk], settings) for i in range(0, len(jobs), chunk)]
    if workers <= 1 or len(chunks) <= 1:
        return sum(_render_chunk(c) for c in chunks)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return sum(pool.map(_render_chunk, chunks))


def _jobs(products: Iterable[Product], views: int, path_of: Callable[[Product, int], Path]
          ) -> list[RenderJob]:
    return [RenderJob(p, v, str(path_of(p, v))) for p in products for v in range(views)]


@WRITERS.register("fashioniq")
def write_fashioniq(catalog: Catalog, root: Path, settings: RenderSettings, workers: int) -> dict:
    """FashionIQ layout: captions/, image_splits/, images/<id>.jpg, plus image_meta.json."""
    jobs = _jobs(catalog.products(), catalog.views,
                 lambda p, v: root / "images" / f"{image_id(p, v)}.jpg")
    written = render_jobs(jobs, settings, workers)
    cats = sorted({p.category for p in catalog.products()})
    n_triplets = 0
    for split, sc in catalog.splits.items():
        for cat in cats:
            ids = [i for p in sc.products if p.category == cat for i in catalog.image_ids(p)]
            atomic_write_json(root / "image_splits" / f"split.{cat}.{split}.json", ids)
            by_id = {p.id: p for p in sc.products}
            entries = []
            for pair in sc.pairs:
                if by_id[pair.source].category != cat:
                    continue
                entry = {"target": f"{pair.target}_{pair.target_view}",
                         "candidate": f"{pair.source}_{pair.source_view}",
                         "captions": list(pair.captions)}
                if split == "test":  # like the release: no ground truth in test
                    del entry["target"]
                entries.append(entry)
            n_triplets += len(entries)
            atomic_write_json(root / "captions" / f"cap.{cat}.{split}.json", entries)
    meta = {image_id(p, v): {"caption": caption(p), "category": p.category,
                             "attributes": dict(p.attributes), "product": p.id}
            for p in catalog.products() for v in range(catalog.views)}
    atomic_write_json(root / "image_meta.json", meta)
    return {"images": len(jobs), "rendered": written, "triplets": n_triplets,
            "categories": len(cats)}


_F200K_GROUP_DIR = {"dress": "dresses", "jacket": "jackets", "pants": "pants", "skirt": "skirts",
                    "top": "tops"}


def fashion200k_path(product: Product, view: int) -> str:
    """The Fashion200k-style relative path of a view: women/<group>/<subcat>/<pid>/<pid>_<v>.jpeg."""
    spec = CATEGORIES[product.category]
    return (f"women/{_F200K_GROUP_DIR[spec.f200k_group]}/{spec.f200k_subcat}/"
            f"{product.id}/{product.id}_{view}.jpeg")


def fashion200k_test_queries(products: list[Product], views: int, seed: int,
                             per_product: int = 2) -> list[tuple[str, str]]:
    """(source path, target path) pairs whose captions differ in exactly one word."""
    groups: dict[tuple, list[Product]] = {}
    for p in products:
        words = caption(p).split()
        for i in range(len(words)):
            groups.setdefault((p.category, i, tuple(words[:i] + words[i + 1:])), []).append(p)
    rng = np.random.default_rng([seed, 202])
    out = []
    for p in products:
        words = caption(p).split()
        targets = []
        for i in range(len(words)):
            key = (p.category, i, tuple(words[:i] + words[i + 1:]))
            targets += [q for q in groups[key] if caption(q).split()[i] != words[i]]
        if not targets:
            continue
        for j in rng.permutation(len(targets))[:per_product]:
            q = targets[int(j)]
            out.append((fashion200k_path(p, int(rng.integers(views))),
                        fashion200k_path(q, int(rng.integers(views)))))
    return out


@WRITERS.register("fashion200k")
def write_fashion200k(catalog: Catalog, root: Path, settings: RenderSettings, workers: int) -> dict:
    """Fashion200k layout: labels/<cat>_<split>_detect_all.txt, the image tree, test_queries.txt.

    Fashion200k has train and test only: the catalogue's val and test products form test.
    """
    splits = {"train": catalog.splits["train"].products,
              "test": catalog.splits["val"].products + catalog.splits["test"].products}
    jobs = _jobs(catalog.products(), catalog.views, lambda p, v: root / fashion200k_path(p, v))
    written = render_jobs(jobs, settings, workers)
    for split, products in splits.items():
        lines: dict[str, list[str]] = {g: [] for g in _F200K_GROUP_DIR}
        for p in products:
            for v in range(catalog.views):
                score = np.random.default_rng([catalog.seed, p.number, v, 5]).uniform(0.5, 1.0)
                lines[CATEGORIES[p.category].f200k_group].append(
                    f"{fashion200k_path(p, v)}\t{score:.6f}\t{caption(p)}")
        for group, rows in lines.items():
            if rows:
                atomic_write_text(root / "labels" / f"{group}_{split}_detect_all.txt",
                                  "".join(r + "\n" for r in rows))
    queries = fashion200k_test_queries(splits["test"], catalog.views, catalog.seed)
    atomic_write_text(root / "test_queries.txt", "".join(f"{s} {t}\n" for s, t in queries))
    return {"images": len(jobs), "rendered": written, "test_queries": len(queries)}


_IMAGEFOLDER_SPLITS = {"train": "train", "val": "validation", "test": "test"}


@WRITERS.register("imagefolder")
def write_imagefolder(catalog: Catalog, root: Path, settings: RenderSettings, workers: int) -> dict:
    """A ``datasets`` imagefolder: <split>/<id>.jpg plus <split>/metadata.jsonl.

    Every row has every attribute column ("" where the category lacks it), so all rows
    share one schema.
    """
    names = list(dict.fromkeys(n for c in CATEGORIES for n in attribute_values(c)))
    split_of = {p.id: _IMAGEFOLDER_SPLITS[s] for s, sc in catalog.splits.items()
                for p in sc.products}
    jobs = _jobs(catalog.products(), catalog.views,
                 lambda p, v: root / split_of[p.id] / f"{image_id(p, v)}.jpg")
    written = render_jobs(jobs, settings, workers)
    for split, sc in catalog.splits.items():
        rows = []
        for p in sc.products:
            for v in range(catalog.views):
                row = {"file_name": f"{image_id(p, v)}.jpg", "image_id": image_id(p, v),
                       "caption": caption(p), "category": p.category, "product": p.id}
                row.update({n: p.attributes.get(n, "") for n in names})
                rows.append(json.dumps(row))
        atomic_write_text(root / _IMAGEFOLDER_SPLITS[split] / "metadata.jsonl",
                          "".join(r + "\n" for r in rows))
    return {"images": len(jobs), "rendered": written}


def _stored(root: Path) -> dict | None:
    """The marker's contents (``{}`` when unreadable, None when absent)."""
    marker = root / MARKER
    if not marker.exists():
        return None
    try:
        return json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _prepare_root(root: Path, params: dict, overwrite: bool) -> dict | None:
    """Check the marker; returns the stored summary when the output is already complete."""
    marker = root / MARKER
    stored = _stored(root)
    if stored is not None:
        if stored.get("params") == params:
            return stored.get("summary") if stored.get("complete") else None
        if not overwrite:
            raise ValueError(
                f"{root} holds a synthetic catalogue made with other parameters "
                f"({stored.get('params')}); choose another output folder or overwrite it"
            )
        for name in OWNED:
            target = root / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    atomic_write_json(marker, {"params": params, "complete": False})
    return None


def write_catalog(out: str | Path, format: str = "fashioniq", products: int = 600, seed: int = 0,
                  preset: str = "easy", image_size: int = 128, views: int = 3,
                  workers: int = 1, categories: list[str] | None = None,
                  overwrite: bool = False) -> dict:
    """Render a synthetic catalogue into ``out`` in ``format``'s layout; returns a summary.

    Skips the work when ``out`` already holds a complete catalogue with the same
    parameters, resumes an interrupted one, and refuses (or with ``overwrite``, replaces)
    a catalogue made with other parameters.
    """
    writer = WRITERS.get(format)
    root = Path(out)
    params = {"format": format, "products": products, "seed": seed, "preset": preset,
              "image_size": image_size, "views": views,
              "categories": sorted(categories) if categories else None,
              "version": LAYOUT_VERSION}
    stored = _stored(root) or {}
    if stored.get("params") == params and stored.get("complete"):  # done: no catalogue to plan
        return {**stored.get("summary", {}), "rendered": 0, "skipped": True}
    catalog = build_catalog(products, seed, preset, views, categories)
    done = _prepare_root(root, params, overwrite)
    if done is not None:
        return {**done, "rendered": 0, "skipped": True}
    settings = RenderSettings(image_size, catalog.preset.view, seed)
    start = time.perf_counter()
    summary = {"format": format, "preset": preset, "products": len(catalog.products()),
               **writer(catalog, root, settings, workers)}
    print(f"[render] {summary['rendered']} images of {summary['products']} products ({workers} workers): "
          f"{time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    summary["pairs"] = sum(len(s.pairs) for s in catalog.splits.values())
    atomic_write_json(root / MARKER, {"params": params, "complete": True, "summary": summary})
    return summary
