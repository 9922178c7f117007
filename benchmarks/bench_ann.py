"""Approximate search: IVF and HNSW against the exact index, queries/s and recall@10.

Both approximate kinds are built through ``fashion_retrieval.search.index.GalleryIndex``: IVF with
4-bit PQ codes re-ranked on the full vectors, and HNSW. Their search-time knobs (``nprobe``
and ``rerank``, ``efSearch``) are swept and the fastest setting that keeps recall@10 of the
exact top 10 at 0.95 or more is reported. The vectors come from ``benchmarks.ann_data``: a
mixture calibrated on the default model's own embeddings.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

from benchmarks.ann_data import (
    AMBIENT,
    INTRINSIC,
    POINTS_PER_CLUSTER,
    load_calibration,
    mixture,
    recall_of,
)
from benchmarks.common import Row, StepContext, log, percentile, register, time_repeated

DIM = 512
K = 10
RECALL_TARGET = 0.95
SPEEDUP_TARGET = 10.0
# Per mode: gallery size, queries, and the build parameters of each approximate kind.
SIZES = {
    True: {
        "n": 200_000,
        "queries": 500,
        "ivf": {"nlist": 1024, "codes": "pq", "pq_m": 64},
        "hnsw": {"M": 16, "efConstruction": 40},
    },
    False: {
        "n": 1_000_000,
        "queries": 1000,
        "ivf": {"nlist": 4096, "codes": "pq", "pq_m": 64},
        "hnsw": {"M": 16, "efConstruction": 40},
    },
}
TINY_SIZE = {
    "n": 2_000,
    "queries": 50,
    "ivf": {"nlist": 32, "codes": "pq", "pq_m": 16},
    "hnsw": {"M": 8, "efConstruction": 20},
}
# Search-time settings tried, cheapest first: every combination of the listed values.
SWEEPS = {
    "ivf": {"nprobe": [8, 16, 32, 64, 128, 256, 512], "rerank": [10, 30]},
    "hnsw": {"efSearch": [16, 24, 32, 48, 64, 96, 128, 192, 256]},
}


def settings(kind: str) -> list[dict[str, int]]:
    """Every search-time setting of a kind, in sweep order (first knob slowest-varying)."""
    grid = [{}]
    for name, values in SWEEPS[kind].items():
        grid = [{**g, name: v} for g in grid for v in values]
    return grid


def timed_search(index: Any, queries, k: int) -> tuple[float, Any]:
    """Queries/s of one batched search (after a small warm-up), and its positions.

    The warm-up batch is large enough to take the same batched path as the timed search
    (a flat index answers fewer than ``FEW_QUERIES`` queries another way).
    """
    from fashion_retrieval.search.index import FEW_QUERIES

    index.search(queries[: 2 * FEW_QUERIES], k)
    t0 = time.perf_counter()
    _, pos = index.search(queries, k)
    return len(queries) / (time.perf_counter() - t0), pos


def single_query_ms(index: Any, queries, count: int) -> float:
    """p50 milliseconds of searching ``count`` queries one at a time (what the demo does)."""
    turn = itertools.count()  # a different query each call
    times = time_repeated(lambda: index.search(queries[next(turn) % len(queries)][None], K), count)
    return 1000 * percentile(times, 50)


def sweep(index: Any, kind: str, queries, truth) -> tuple[list[dict], dict | None]:
    """Every search-time setting of the kind: qps and recall; the fastest meeting the target.

    Settings are tried in order; once one reaches recall 0.999, the later ones with the same
    first knob value and above are skipped (they only get slower).
    """
    points = []
    first = next(iter(SWEEPS[kind]))
    for setting in settings(kind):
        if points and points[-1]["recall"] >= 0.999 and setting[first] >= points[-1][first]:
            continue
        index.set_search_params(**setting)
        qps, pos = timed_search(index, queries, K)
        points.append({**setting, "qps": qps, "recall": recall_of(pos, truth)})
    good = [p for p in points if p["recall"] >= RECALL_TARGET]
    best = max(good, key=lambda p: p["qps"]) if good else None
    chosen = best or max(points, key=lambda p: p["recall"])
    index.set_search_params(**{name: chosen[name] for name in SWEEPS[kind]})
    return points, best


def _describe(kind: str, setting: dict) -> str:
    """``nprobe=128, rerank=30`` for a sweep point (search-time knobs only)."""
    return ", ".join(f"{name}={setting[name]}" for name in SWEEPS[kind])


def _row(
    kind: str,
    params: dict,
    build_s: float,
    points: list[dict],
    best: dict | None,
    exact_qps: float,
    n: int,
    data_note: str,
    latency: tuple[float, float],
) -> Row:
    chosen = best or max(points, key=lambda p: p["recall"])
    speedup = chosen["qps"] / exact_qps
    passed = best is not None and speedup >= SPEEDUP_TARGET
    build = {k: v for k, v in params.items() if k not in SWEEPS[kind]}
    name = "IVF-PQ (re-ranked)" if params.get("codes") == "pq" else kind.upper()
    return Row(
        figure="approximate search",
        measure=f"{name} queries/s at {n:,} ({_describe(kind, chosen)}, recall@10 {chosen['recall']:.3f})",
        value=chosen["qps"],
        unit="q/s",
        baseline_name="exact flat",
        baseline=exact_qps,
        target=f">= {SPEEDUP_TARGET:.0f}x exact at recall@10 >= {RECALL_TARGET}",
        passed=passed,
        notes=(
            f"{speedup:.1f}x exact; one query at a time {latency[0]:.2f} ms (p50) vs exact "
            f"{latency[1]:.1f} ms; build {build_s:.0f} s with {build}; {data_note}"
        ),
        extra={
            "kind": kind,
            "build_params": params,
            "build_seconds": build_s,
            "sweep": points,
            "chosen": chosen,
            "speedup": speedup,
            "single_query_ms_p50": latency[0],
            "exact_single_query_ms_p50": latency[1],
        },
    )


def _data_note(intrinsic: int, n: int, queries: int) -> str:
    """Where the vectors come from, and how they compare with the real model's."""
    note = (
        f"{n // POINTS_PER_CLUSTER:,}-centre Gaussian mixture in a {intrinsic}-d subspace of "
        f"{DIM}-d + {AMBIENT:.0%} isotropic noise; {queries} batched held-out queries"
    )
    cal = load_calibration()
    if cal and str(intrinsic) in cal.get("synthetic", {}):
        note += (
            f"; local intrinsic dimensionality {cal['synthetic'][str(intrinsic)]['lid']:.1f} vs "
            f"{cal['real']['lid']:.1f} for the default TIRG's composed queries "
            "(`python -m benchmarks.ann_data`)"
        )
    return note


@register("ann")
def bench_ann(ctx: StepContext) -> list[Row]:
    """IVF and HNSW vs exact flat search at 1M (quick: 200k) clustered 512-d embeddings.

    ``ctx.options["ann_intrinsic"]`` overrides the mixture's intrinsic dimension (e.g. 32
    for data harder than the calibration asks for).
    """
    from fashion_retrieval.search.index import GalleryIndex

    size = ctx.size(SIZES, TINY_SIZE)
    n, nq = size["n"], size["queries"]
    intrinsic = int(ctx.options.get("ann_intrinsic", INTRINSIC))
    gallery = mixture(n, DIM, seed=0, intrinsic=intrinsic)  # (N, D)
    queries = mixture(nq, DIM, seed=1, gallery_size=n, intrinsic=intrinsic)  # not in the gallery
    ids = [str(i) for i in range(n)]
    data_note = _data_note(intrinsic, n, nq)

    exact = GalleryIndex.build(gallery, ids, kind="flat")
    exact_qps, truth = timed_search(exact, queries, K)  # truth: (Q, K) positions
    exact_one_ms = single_query_ms(exact, queries, 10 if ctx.quick else 20)
    log(f"ann: exact flat {exact_qps:.0f} queries/s at {n:,}; one query {exact_one_ms:.1f} ms")
    del exact
    rows = []
    for kind in ("ivf", "hnsw"):
        t0 = time.perf_counter()
        index = GalleryIndex.build(gallery, ids, kind=kind, **size[kind])
        build_s = time.perf_counter() - t0
        log(f"ann: {kind} built in {build_s:.0f} s ({index.params})")
        points, best = sweep(index, kind, queries, truth)
        latency = (single_query_ms(index, queries, 20 if ctx.tiny else 200), exact_one_ms)
        rows.append(_row(kind, index.params, build_s, points, best, exact_qps, n, data_note, latency))
        del index
    flops = 2 * n * DIM * exact_qps / 1e9
    ctx.analysis.append(
        f"approximate search: batched exact search is one matrix product, FLOP-bound "
        f"({flops:.0f} GFLOP/s here: every query costs 2 x N x D = {2 * n * DIM / 1e9:.1f} GFLOP). "
        "IVF-flat scans its cells one query at a time at memory bandwidth (~4 x D bytes per "
        "vector), so it must visit under ~1% of the gallery to be 10x faster, which costs "
        "recall; 4-bit PQ codes (D/16 bytes, SIMD lookups) make a visited vector ~30x cheaper, "
        "and re-ranking the best rerank x k candidates on the full vectors restores exact "
        "scores. HNSW reads ~efSearch x 2M full vectors per query, at random addresses."
    )
    return rows
