"""Refinement latency: one step of a shopper's session (issue 24).

``Retriever.search_session`` at turn 3 of a session: the picture is a catalogue item (a
``CatalogueImage``: its stored backbone features, no decoding, no backbone), composed with
each of the three requests so far, made one query by the ``history`` policy, searched with
the 16 results already shown and the 2 pictures already picked left out; over 100,000 items
indexed the way a service indexes them (stored features, the ``auto`` index). Beside it: the
same step under ``last_turn``, and a one-turn catalogue pick (``Retriever.search``).
"""

from __future__ import annotations

from benchmarks.common import Row, StepContext, log, percentile, register, time_repeated
from benchmarks.models import QUERY_TEXTS, default_model, fake_items

TARGET_MS = 5.0  # the catalogue-pick latency target: a step's picture is a stored item too
SIZE = {True: 100_000, False: 100_000}
TINY_SIZE = 2_000
REPEATS = {True: 30, False: 100}
TINY_REPEATS = 5
K, TURN = 8, 3


def measure_step(model, n: int, repeats: int) -> dict:
    """Latencies (ms) of a session step under both policies and of a one-turn pick at ``n`` items."""
    import time

    import numpy as np

    from fashion_retrieval.search.retriever import CatalogueImage, Retriever

    items = fake_items(n)
    rng = np.random.default_rng(n)
    feats = rng.standard_normal((n, model.feature_dim), dtype=np.float32)  # stored backbone features
    t0 = time.perf_counter()
    retriever = Retriever(model, items, features=feats, index_kind="auto")
    build_s = time.perf_counter() - t0
    picture = CatalogueImage(items[n // 2].id)
    texts = QUERY_TEXTS[:TURN]  # the requests so far, oldest first
    shown = [it.id for it in items[: K * (TURN - 1)]] + [items[n // 3].id, picture.id]

    def step(policy: str) -> list:
        return retriever.search_session(picture, texts, K, policy=policy, exclude_ids=shown)

    hits = step("history")
    assert len(hits) == K and not {h.id for h in hits} & set(shown)  # what a shopper expects
    history = time_repeated(lambda: step("history"), repeats, warmup=3)
    last = time_repeated(lambda: step("last_turn"), repeats, warmup=1)
    pick = time_repeated(lambda: retriever.search(picture, texts[-1], K), repeats, warmup=1)
    return {
        "p50": 1000 * percentile(history, 50), "p95": 1000 * percentile(history, 95),
        "last_turn_p50": 1000 * percentile(last, 50), "pick_p50": 1000 * percentile(pick, 50),
        "index": retriever.index.kind, "build_s": build_s, "turn": TURN, "k": K, "excluded": len(shown),
    }


@register("session")
def bench_session(ctx: StepContext) -> list[Row]:
    """One session step (history policy, catalogue item as the picture) at 100,000 items: p50, p95."""
    import torch

    n = int(ctx.options.get("session_size") or ctx.size(SIZE, TINY_SIZE))
    repeats = ctx.size(REPEATS, TINY_REPEATS)
    m = measure_step(default_model(), n, repeats)
    log(f"session: step at {n:,}: p50 {m['p50']:.2f} ms, p95 {m['p95']:.2f} ms")
    at = n == SIZE[ctx.quick]
    ctx.analysis.append(
        "session: a refinement step encodes the picked item's stored features with every request so "
        "far (one small batch through the text encoder and the heads) and searches once; the "
        "results already shown are dropped after an approximate search asked for that many more."
    )
    return [Row(
        figure="refinement latency",
        measure=f"session step (turn {TURN}, history policy, catalogue item as the picture), {n:,} gallery (p50)",
        value=m["p50"], unit="ms",
        baseline_name="one-turn catalogue pick (p50)", baseline=m["pick_p50"],
        target=f"p50 < {TARGET_MS:.0f} ms at {SIZE[ctx.quick]:,}" if at else "reported",
        passed=(m["p50"] < TARGET_MS) if at else None,
        notes=(f"p95 {m['p95']:.2f} ms; last_turn policy {m['last_turn_p50']:.2f} ms (p50); {TURN} requests, "
               f"{m['excluded']} ids left out, k {K}; {m['index']} index (auto), stored float16 backbone "
               f"features, LSTM text, TIRG; {repeats} steps, torch threads {torch.get_num_threads()}; "
               f"indexing {m['build_s']:.0f} s"),
        extra=m,
    )]
