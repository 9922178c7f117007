"""Approximate search: IVF and HNSW against the exact index, queries/s and recall@10.

Both approximate kinds are built through ``fashion_retrieval.index.GalleryIndex``; their
search-time knob (``nprobe``, ``efSearch``) is swept and the fastest setting that keeps
recall@10 of the exact top 10 at 0.95 or more is reported.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from benchmarks.common import Row, StepContext, log, register, structured_unit_embeddings

DIM = 512
K = 10
RECALL_TARGET = 0.95
SPEEDUP_TARGET = 10.0
# Data: a Gaussian mixture in a 32-d subspace of the 512-d space, plus 30% isotropic noise.
INTRINSIC = 32
# Per mode: gallery size, queries, and the build parameters of each approximate kind.
SIZES = {
    True: {
        "n": 200_000,
        "queries": 500,
        "ivf": {"nlist": 512},
        "hnsw": {"M": 16, "efConstruction": 32},
    },
    False: {
        "n": 1_000_000,
        "queries": 1000,
        "ivf": {"nlist": 2048},
        # Building HNSW over 1M 512-d vectors takes far longer than the 20-minute budget on
        # 2 cores (graph construction is ~efConstruction x M distance evaluations per
        # insert), so the full run measures HNSW at 200k against exact search at 200k.
        "hnsw": {"M": 16, "efConstruction": 32},
        "hnsw_n": 200_000,
    },
}
SWEEPS = {
    "ivf": ("nprobe", [1, 2, 4, 8, 16, 32, 64, 128]),
    "hnsw": ("efSearch", [16, 24, 32, 48, 64, 96, 128, 256]),
}


def set_search_param(index: Any, name: str, value: int) -> None:
    """Change an index's search-time parameter (``nprobe`` or ``efSearch``) in place.

    Uses ``GalleryIndex.set_search_params`` where it exists; otherwise sets the faiss
    attribute directly (GalleryIndex has no public setter yet).
    """
    if hasattr(index, "set_search_params"):
        index.set_search_params(**{name: value})
        return
    raw = index._index  # noqa: SLF001 - see the docstring
    if name == "nprobe":
        raw.nprobe = value
    else:
        raw.hnsw.efSearch = value
    index.params[name] = value


def recall_of(found, truth) -> float:  # (Q, K), (Q, K) positions
    """Mean share of each query's true top ``K`` present in its approximate top ``K``."""
    import numpy as np

    hits = sum(len(np.intersect1d(f, t)) for f, t in zip(found, truth, strict=True))
    return hits / truth.size


def timed_search(index: Any, queries, k: int) -> tuple[float, Any]:
    """Queries/s of one batched search (after a small warm-up), and its positions."""
    index.search(queries[:8], k)
    t0 = time.perf_counter()
    _, pos = index.search(queries, k)
    return len(queries) / (time.perf_counter() - t0), pos


def sweep(index: Any, kind: str, queries, truth) -> tuple[list[dict], dict | None]:
    """Every setting of the kind's knob: qps and recall; the fastest one meeting the target."""
    name, values = SWEEPS[kind]
    points = []
    for v in values:
        set_search_param(index, name, v)
        qps, pos = timed_search(index, queries, K)
        points.append({name: v, "qps": qps, "recall": recall_of(pos, truth)})
        if points[-1]["recall"] >= 0.999:
            break  # larger settings only get slower
    good = [p for p in points if p["recall"] >= RECALL_TARGET]
    best = max(good, key=lambda p: p["qps"]) if good else None
    set_search_param(index, name, (best or points[-1])[name])
    return points, best


def _row(
    kind: str,
    params: dict,
    build_s: float,
    points: list[dict],
    best: dict | None,
    exact_qps: float,
    n: int,
    data_note: str,
) -> Row:
    knob = SWEEPS[kind][0]
    chosen = best or max(points, key=lambda p: p["recall"])
    speedup = chosen["qps"] / exact_qps
    passed = best is not None and speedup >= SPEEDUP_TARGET
    return Row(
        figure="approximate search",
        measure=f"{kind.upper()} queries/s at {n:,} ({knob}={chosen[knob]}, recall@10 {chosen['recall']:.3f})",
        value=chosen["qps"],
        unit="q/s",
        baseline_name="exact flat",
        baseline=exact_qps,
        target=f">= {SPEEDUP_TARGET:.0f}x exact at recall@10 >= {RECALL_TARGET}",
        passed=passed,
        notes=f"{speedup:.1f}x exact; build {build_s:.0f} s with {params}; {data_note}",
        extra={
            "kind": kind,
            "build_params": params,
            "build_seconds": build_s,
            "sweep": points,
            "chosen": chosen,
            "speedup": speedup,
        },
    )


@register("ann")
def bench_ann(ctx: StepContext) -> list[Row]:
    """IVF and HNSW vs exact flat search at 1M (quick: 200k) clustered 512-d embeddings."""
    from fashion_retrieval.index import GalleryIndex

    size = SIZES[ctx.quick]
    n = size["n"]
    clusters = n // 100
    gallery = structured_unit_embeddings(n, DIM, INTRINSIC, clusters, seed=0)  # (N, D)
    # Queries from the same distribution but not in the gallery.
    queries = structured_unit_embeddings(size["queries"], DIM, INTRINSIC, clusters, seed=1)
    ids = [str(i) for i in range(n)]
    data_note = (
        f"unit vectors from a {clusters:,}-centre Gaussian mixture in a {INTRINSIC}-d subspace "
        f"+ 30% isotropic noise (uniform random vectors are the worst case); "
        f"{size['queries']} batched queries"
    )

    exact_at: dict[int, tuple[float, np.ndarray]] = {}  # gallery size -> (exact qps, truth)
    rows = []
    for kind in ("ivf", "hnsw"):
        m = size.get(f"{kind}_n", n)  # this kind's gallery: the first m vectors
        if m not in exact_at:
            exact = GalleryIndex.build(gallery[:m], ids[:m], kind="flat")
            exact_at[m] = timed_search(exact, queries, K)  # qps, truth (Q, K) positions
            log(f"ann: exact flat {exact_at[m][0]:.0f} queries/s at {m:,}")
            del exact
        exact_qps, truth = exact_at[m]
        t0 = time.perf_counter()
        index = GalleryIndex.build(gallery[:m], ids[:m], kind=kind, **size[kind])
        build_s = time.perf_counter() - t0
        log(f"ann: {kind} built in {build_s:.0f} s ({index.params})")
        points, best = sweep(index, kind, queries, truth)
        rows.append(_row(kind, index.params, build_s, points, best, exact_qps, m, data_note))
        del index
    ctx.analysis.append(
        "approximate search: exact search is bound by memory bandwidth (every query reads the "
        f"whole {n * DIM * 4 / 2**30:.1f} GiB gallery, amortised over a batch by BLAS); IVF reads "
        "nprobe/nlist of it, HNSW ~efSearch x M vectors per query."
    )
    return rows
