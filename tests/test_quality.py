"""Quality tests: a small seeded comparison that tells a working model from a broken one.

It runs through the same code as ``python -m fashion_retrieval.training.compare``: a
rendered synthetic catalogue, the real offline EfficientNet-Lite0 backbone (128 px, with
the colour descriptor) cached once, TIRG, image_only and text_only trained on the same
data and budget. TIRG must beat both baselines on one gallery by a margin, far above
chance, rank first on composition control, and its gate must respond to the words
(measured through the trained model's own forward pass). Because a bug in the shared
training code breaks the baselines too, TIRG must also pass absolute checks that read no
other model: recorded floors for this seeded run's one-gallery recall, and its composed
query must rank the target above the source's other views. Then each of five injected
breaks is trained and evaluated the same way, and the absolute checks alone must reject it.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from fashion_retrieval.training import compare

STEPS, PRODUCTS, PAIRS, CONTROL = 150, 360, 4000, 200
MARGIN = 5.0  # percentage points TIRG must lead each baseline by
GATE_RESPONSE = 0.02  # TIRG's gate must move by more than this (relative) when the words change
# Recorded floors for the seeded clean run's TIRG one-gallery recall (percent, 35 val queries,
# one query = 2.9 points). Re-measured 2026-12-07 (issue 25) with
# `timeout 1500 pytest tests/test_quality.py -q -s` (CPU) after the training's random numbers
# changed path (the packaged EfficientNet-Lite0 weights no longer follow a random
# initialisation; fused SGD; frozen text features from the length-sorted bank): clean R@1 51.4,
# R@10 94.3; the injected breaks: source_as_target R@1 22.9 (R@10 91.4), gate_without_text
# R@1 54.3 (R@10 97.1, caught by the gate response), the three text breaks R@1 8.6-14.3 (R@10
# 88.6). Before that change (the same seed, other random numbers): clean R@1 60.0, R@10 97.1,
# source_as_target R@1 40.0, the text breaks R@10 85.7-88.6; with the backbone's random
# initialisation drawn in another order: clean R@1 62.9, R@10 91.4. R@1 45 leaves the clean run
# two queries and sits above every source_as_target seen (40.0 at most); R@10 90 leaves it two
# and rejects the text breaks. Chance is R@1 2.1, R@10 19.3.
FLOOR = {"R@1": 45.0, "R@10": 90.0}
# The share (percent) of val queries whose composed query must rank its target above every
# other view of its source product, through the trained checkpoints. Re-measured as above:
# clean 51.4, source_as_target 17.1, the text breaks 5.7, gate_without_text 51.4 (caught by the
# gate response). Earlier random-number paths of the clean run: 60.0 and 74.3 (seeds 1-3 of the
# first: 80.0, 68.6, 82.9); of source_as_target: 34.3 (seeds 1-3: 40.0, 37.1, 48.6), which the
# R@1 floor also rejects. The clean figure moves by 20 points with the random numbers alone, so
# 40 leaves the clean run four queries and still rejects source_as_target on this path.
TARGET_OVER_VIEWS = 40.0
MIN_VIEW_QUERIES = 20  # the views check must be asked of at least this many val queries


def run(work: Path, models: tuple[str, ...]) -> dict[str, Any]:
    """The seeded small comparison (compare.run_comparison) on ``work``'s catalogue and cache."""
    return compare.run_comparison(models, work, preset="easy", steps=STEPS, products=PRODUCTS, seed=0,
                                  generated_pairs=PAIRS, control_queries=CONTROL)


def chance_recall(dataset: Any, k: int) -> float:
    """Expected one-gallery R@k (percent) of a random ranking: 1 - C(N-1-m, k) / C(N-1, k)."""
    from math import comb

    captions = [it.caption for it in dataset.items]
    by_id = dataset.item_by_id()
    out = []
    for t in dataset.triplets:
        m = sum(c == (t.target_caption or by_id[t.target].caption) for c in captions)
        m -= by_id[t.source].caption == (t.target_caption or by_id[t.target].caption)
        n = len(captions) - 1
        out.append(1 - comb(n - m, k) / comb(n, k))
    return 100 * sum(out) / len(out)


def failures(tirg: dict[str, Any], baselines: list[dict[str, Any]]) -> list[str]:
    """What is wrong with ``tirg`` next to ``baselines``; empty when it works."""
    bad = []
    for base in baselines:
        for key in ("R@1", "R@10"):
            if tirg["one_gallery"][key] < base["one_gallery"][key] + MARGIN:
                bad.append(f"one-gallery {key}: tirg {tirg['one_gallery'][key]:.1f} vs "
                           f"{base['model']} {base['one_gallery'][key]:.1f} (margin {MARGIN})")
        if tirg["control"]["both"] <= base["control"]["both"]:
            bad.append(f"control: tirg {tirg['control']['both']:.1f} <= {base['model']} {base['control']['both']:.1f}")
    return bad


def gate_response(checkpoint: str, work: Path) -> float:
    """How much TIRG's gate moves when each val query gets another query's words.

    Mean |gate(image, text) - gate(image, other text)| over the mean gate, through the
    model's own forward pass (a hook on the gate); 0 when the gate ignores the words.
    """
    from fashion_retrieval.checkpoints import load_model
    from fashion_retrieval.evaluation.embeddings import ModelEmbeddings
    from fashion_retrieval.training.trainer import load_split, split_features

    cfg = compare.comparison_config("tirg", work, "easy", STEPS, PRODUCTS, 0, PAIRS)
    model = load_model(checkpoint).eval()
    dataset = load_split(cfg, "val")
    source = ModelEmbeddings(model, dataset.items, features=split_features(model, dataset, cfg))
    triplets = dataset.triplets
    outputs: list[torch.Tensor] = []
    hook = model.compositor.gate.register_forward_hook(lambda m, i, o: outputs.append(torch.sigmoid(o)))
    try:
        source.query_embeddings(triplets)
        rolled = [dataclasses.replace(t, text=u.text) for t, u in zip(triplets, triplets[1:] + triplets[:1], strict=True)]
        source.query_embeddings(rolled)
    finally:
        hook.remove()
    half = len(outputs) // 2
    own, other = torch.cat(outputs[:half]), torch.cat(outputs[half:])  # (Q, D) each
    return float((own - other).abs().mean() / own.abs().mean())


def target_over_source_views(checkpoint: str, work: Path) -> tuple[float, int]:
    """The share (percent) of val queries whose composed query ranks its target above every
    other view of its source product, and how many queries were asked.

    Asked of each val triplet whose source product has other views in the gallery (the
    source image itself is left out, and so is a target that is a view of the source's own
    product). Products are told apart by ``product_key`` (training/data.py); the synthetic
    items record no product id, so it groups the items sharing the source's caption: the
    source's views, and any other product with every attribute the same. Read through the
    trained checkpoint's own forward pass; it needs no other model: a TIRG that returns (a
    view of) its source image, whatever it was trained or told, ranks those views first.
    """
    from fashion_retrieval.checkpoints import load_model
    from fashion_retrieval.evaluation.embeddings import ModelEmbeddings
    from fashion_retrieval.training.data import product_key
    from fashion_retrieval.training.trainer import load_split, split_features

    cfg = compare.comparison_config("tirg", work, "easy", STEPS, PRODUCTS, 0, PAIRS)
    model = load_model(checkpoint).eval()
    dataset = load_split(cfg, "val")
    source = ModelEmbeddings(model, dataset.items, features=split_features(model, dataset, cfg))
    row = {it.id: i for i, it in enumerate(dataset.items)}
    views: dict[str, list[int]] = {}
    for i, it in enumerate(dataset.items):
        views.setdefault(product_key(it), []).append(i)
    asked, others = [], []
    for t in dataset.triplets:
        own = product_key(dataset.items[row[t.source]])
        rest = [i for i in views[own] if i != row[t.source]]
        if t.target in row and rest and product_key(dataset.items[row[t.target]]) != own:
            asked.append(t)
            others.append(rest)
    if not asked:
        return 0.0, 0
    queries, gallery = source.query_embeddings(asked), source.item_embeddings()  # (Q, D), (N, D)
    wins = 0
    for q, t, rest in zip(queries, asked, others, strict=True):
        wins += bool(q @ gallery[row[t.target]] > (gallery[rest] @ q).max())
    return 100.0 * wins / len(asked), len(asked)


def absolute_failures(tirg: dict[str, Any], work: Path) -> tuple[list[str], dict[str, float]]:
    """What is wrong with ``tirg`` on checks that read no other model, each named; and the
    figures they read (recall floors, target over the source's other views, gate response).

    Call it under the same break (if any) that ``tirg`` was trained with: the two behavioural
    checks run the checkpoint's forward pass on ``work``'s val split.
    """
    bad = []
    for key, floor in FLOOR.items():
        if tirg["one_gallery"][key] < floor:
            bad.append(f"absolute floor: one-gallery {key} {tirg['one_gallery'][key]:.1f} < {floor} "
                       "(the seeded run's recorded floor)")
    rate, asked = target_over_source_views(tirg["checkpoint"], work)
    if asked < MIN_VIEW_QUERIES:
        bad.append(f"target over source views: asked of {asked} val queries (< {MIN_VIEW_QUERIES})")
    elif rate < TARGET_OVER_VIEWS:
        bad.append(f"target over source views: {rate:.1f}% of {asked} composed queries rank the target above "
                   f"the source's other views (< {TARGET_OVER_VIEWS}%)")
    response = gate_response(tirg["checkpoint"], work)
    if response <= GATE_RESPONSE:
        bad.append(f"gate response: the gate ignores the words (response {response:.4f} <= {GATE_RESPONSE})")
    figures = {**{f"one-gallery {k}": tirg["one_gallery"][k] for k in FLOOR}, "target over views": rate,
               "view queries": asked, "gate response": response}
    return bad, figures


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> dict[str, Any]:
    """The clean comparison; its catalogue and backbone cache are reused by every break."""
    work = tmp_path_factory.mktemp("quality")
    report = run(work, ("tirg", "image_only", "text_only"))
    rows = {r["model"]: r for r in report["results"]}
    absolute, figures = absolute_failures(rows["tirg"], work)
    return {"work": work, "report": report, "rows": rows, "absolute": absolute, "figures": figures}


@pytest.mark.slow
def test_tirg_beats_both_baselines_far_above_chance(clean):
    from fashion_retrieval.training.trainer import load_split

    rows = clean["rows"]
    cfg = compare.comparison_config("tirg", clean["work"], "easy", STEPS, PRODUCTS, 0, PAIRS)
    dataset = load_split(cfg, "val")
    chance = {k: chance_recall(dataset, k) for k in (1, 10)}
    summary = {m: (r["one_gallery"]["R@1"], r["one_gallery"]["R@10"], r["control"]["both"]) for m, r in rows.items()}
    print(f"one gallery of {len(dataset.items)} images; chance R@1 {chance[1]:.1f}, R@10 {chance[10]:.1f}; "
          f"(R@1, R@10, control both) per model: {summary}")
    print(f"tirg's absolute checks: {clean['figures']}")
    assert len(dataset.items) >= 150 and chance[1] < 3.0
    # The absolute checks first: a bug in the shared training code also breaks the baselines
    # that the relative checks below compare with.
    assert clean["absolute"] == [], "the clean TIRG fails the absolute checks: " + "; ".join(clean["absolute"])
    relative = failures(rows["tirg"], [rows["image_only"], rows["text_only"]])
    assert relative == [], "the clean TIRG fails the checks against the baselines: " + "; ".join(relative)
    assert rows["tirg"]["one_gallery"]["R@1"] > 5 * chance[1], (
        f"chance: one-gallery R@1 {rows['tirg']['one_gallery']['R@1']:.1f} <= 5 x chance {chance[1]:.1f}")
    assert clean["report"]["ordering"]["holds"], f"published ordering: {clean['report']['ordering']}"


# ---------------------------------------------------------------- injected breaks


@contextlib.contextmanager
def neighbours_text() -> Iterator[None]:
    """Each query is composed with the next query's text (training and evaluation)."""
    from fashion_retrieval.models.retrieval import RetrievalModel

    original = RetrievalModel.encode_text

    def rolled(self, texts):
        return original(self, list(texts[1:]) + list(texts[:1]))

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(RetrievalModel, "encode_text", rolled)
        yield


@contextlib.contextmanager
def text_dropped() -> Iterator[None]:
    """Queries never see their text: the null text embedding stands in."""
    from fashion_retrieval.models.retrieval import RetrievalModel

    original = RetrievalModel.encode_query

    def no_text(self, images=None, texts=None, *, image_features=None):
        return original(self, images, None, image_features=image_features)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(RetrievalModel, "encode_query", no_text)
        yield


@contextlib.contextmanager
def text_encoder_collapsed() -> Iterator[None]:
    """Every text encoder returns one constant vector whatever the words."""
    from fashion_retrieval.models.text_encoders import HFTextEncoder, LSTMTextEncoder

    def constant(self, texts):
        return torch.ones(len(texts), self.output_dim)  # (B, Dtxt)

    with pytest.MonkeyPatch.context() as mp:
        for cls in (HFTextEncoder, LSTMTextEncoder):
            mp.setattr(cls, "forward", constant)
        yield


@contextlib.contextmanager
def gate_without_text() -> Iterator[None]:
    """TIRG's gate gets zeros where the text feature should be (the residual keeps the text)."""
    from fashion_retrieval.models.compositors import TIRG

    def zero_text(self, img, txt):
        gated = torch.sigmoid(self.gate(torch.cat([img, torch.zeros_like(txt)], dim=1))) * img  # (B, D)
        return self.weights[0] * gated + self.weights[1] * self.residual(torch.cat([img, txt], dim=1))

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(TIRG, "forward", zero_text)
        yield


@contextlib.contextmanager
def source_as_target() -> Iterator[None]:
    """Training pulls each composed query towards its source image instead of its target."""
    from fashion_retrieval.training import data

    original = data.FeatureBatches.__call__

    def swapped(self, step, indices):
        batch = original(self, step, indices)
        if "source_features" in batch:
            batch["target_features"] = batch["source_features"]
        return batch

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(data.FeatureBatches, "__call__", swapped)
        yield


BREAKS = {
    "neighbours_text": neighbours_text,
    "text_dropped": text_dropped,
    "text_encoder_collapsed": text_encoder_collapsed,
    "gate_without_text": gate_without_text,
    "source_as_target": source_as_target,
}


@pytest.fixture(scope="module")
def broken_runs(clean, tmp_path_factory) -> Any:
    """``get(name)``: TIRG trained and checked under break ``name`` (once per module), as
    ``{"row": ..., "absolute": [...], "figures": {...}}``; the issue-scenario test reuses the
    break tests' runs instead of training again."""
    cache: dict[str, dict[str, Any]] = {}

    def get(name: str) -> dict[str, Any]:
        if name not in cache:
            work = tmp_path_factory.mktemp(f"broken_{name}") / "work"
            (work / "features").mkdir(parents=True)
            (work / "data").symlink_to(clean["work"] / "data")  # the clean run's catalogue
            for cache_file in (clean["work"] / "features").glob("efficientnet*"):  # and backbone cache, not
                (work / "features" / cache_file.name).symlink_to(cache_file)  # its text cache: a break may change it
            with BREAKS[name]():
                row = run(work, ("tirg",))["results"][0]
                absolute, figures = absolute_failures(row, work)
            cache[name] = {"row": row, "absolute": absolute, "figures": figures}
        return cache[name]

    return get


def clean_state(clean: dict[str, Any]) -> str:
    """How the clean run itself fares on the absolute checks (for the break tests' messages)."""
    if clean["absolute"]:
        return "; the clean run fails them too, so suspect the shared code: " + "; ".join(clean["absolute"])
    return f"; the clean run passes them ({clean['figures']})"


@pytest.mark.slow
@pytest.mark.parametrize("name", list(BREAKS))
def test_quality_check_rejects_a_broken_tirg(clean, broken_runs, name):
    broken = broken_runs(name)
    row, absolute = broken["row"], broken["absolute"]
    rows = clean["rows"]
    relative = failures(row, [rows["image_only"], rows["text_only"]])
    print(f"{name}: one gallery {row['one_gallery']}, control both {row['control']['both']}, "
          f"{broken['figures']}: absolute {absolute}, against the clean baselines {relative}")
    # The absolute checks alone must reject every break: they still hold when the baselines
    # are broken the same way (a bug in the shared training code).
    assert absolute, (f"the absolute checks (recall floors, target over source views, gate response) passed a TIRG "
                      f"broken by {name}: {broken['figures']}; against the clean baselines: {relative or 'passed'}"
                      f"{clean_state(clean)}")


@pytest.mark.slow
def test_absolute_checks_reject_a_bug_shared_by_every_model(clean, broken_runs):
    """Issue 22 item 10: with the training target replaced by the source for every model
    (TIRG and both baselines), TIRG still beat the baselines far above chance. The absolute
    checks read no baseline, so the broken TIRG alone must fail them, on the recall floor or
    on ranking its target above the source's other views."""
    broken = broken_runs("source_as_target")
    named = [p for p in broken["absolute"] if p.startswith(("absolute floor", "target over source views"))]
    print(f"source_as_target everywhere: {broken['figures']}: {broken['absolute']}")
    assert named, (f"the recall floors and the target-over-source-views check passed a TIRG whose training target "
                   f"was its source: {broken['figures']}{clean_state(clean)}")
