"""Quality tests: a small seeded comparison that tells a working model from a broken one.

It runs through the same code as ``python -m fashion_retrieval.training.compare``: a
rendered synthetic catalogue, the real offline EfficientNet-Lite0 backbone (128 px, with
the colour descriptor) cached once, TIRG, image_only and text_only trained on the same
data and budget. TIRG must beat both baselines on one gallery by a margin, far above
chance, rank first on composition control, and its gate must respond to the words
(measured through the trained model's own forward pass). Then each of five injected
breaks is trained and evaluated the same way, and the same checks must reject it.
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
    from fashion_retrieval.evaluation.embeddings import ModelEmbeddings
    from fashion_retrieval.hub import load_model
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


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> dict[str, Any]:
    """The clean comparison; its catalogue and backbone cache are reused by every break."""
    work = tmp_path_factory.mktemp("quality")
    report = run(work, ("tirg", "image_only", "text_only"))
    return {"work": work, "report": report, "rows": {r["model"]: r for r in report["results"]}}


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
    assert len(dataset.items) >= 150 and chance[1] < 3.0
    assert failures(rows["tirg"], [rows["image_only"], rows["text_only"]]) == []
    assert rows["tirg"]["one_gallery"]["R@1"] > 5 * chance[1]
    assert clean["report"]["ordering"]["holds"], clean["report"]["ordering"]
    response = gate_response(rows["tirg"]["checkpoint"], clean["work"])
    print(f"gate response to the words: {response:.3f}")
    assert response > GATE_RESPONSE


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


@pytest.mark.slow
@pytest.mark.parametrize("name", list(BREAKS))
def test_quality_check_rejects_a_broken_tirg(clean, name, tmp_path):
    work = tmp_path / "work"
    (work / "features").mkdir(parents=True)
    (work / "data").symlink_to(clean["work"] / "data")  # the clean run's catalogue
    for cache in (clean["work"] / "features").glob("efficientnet*"):  # and backbone cache, not
        (work / "features" / cache.name).symlink_to(cache)  # its text cache: a break may change it
    with BREAKS[name]():
        broken = run(work, ("tirg",))["results"][0]
        response = gate_response(broken["checkpoint"], work)
    rows = clean["rows"]
    problems = failures(broken, [rows["image_only"], rows["text_only"]])
    if response <= GATE_RESPONSE:
        problems.append(f"the gate ignores the words (response {response:.4f})")
    print(f"{name}: one gallery {broken['one_gallery']}, control both {broken['control']['both']}: {problems}")
    assert problems, f"the quality check passed a TIRG broken by {name}"
