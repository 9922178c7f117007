"""TIRG on Fashion200k as google/tirg publishes it, and per-sample training texts.

- a fresh sibling target and "replace X with Y" text at every training sample, on the
  cached-features path and the image path, deterministic under (seed, step, index);
- TIRG's caption clean-up, and every ``test_queries.txt`` line a query (captions that
  differ only by punctuation stay apart), with exact caption-equality hits;
- ``training/configs/tirg_fashion200k.yaml``: the published settings, no augmentation;
- FashionIQ: one empty caption keeps the annotation (not counted as skipped); CLIP4Cir's
  ``random`` training captions next to the unchanged ``join``.
"""

from __future__ import annotations

import json
import random
import re
import warnings
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import write_standin_images

from fashion_retrieval.data.fashion200k import (
    CAPTION_CLEANUPS,
    clean_caption,
    load_fashion200k,
    modification_text,
    tirg_caption,
)
from fashion_retrieval.data.fashioniq import load_fashioniq
from fashion_retrieval.data.transforms import ImageTransform
from fashion_retrieval.evaluation import evaluate_embeddings
from fashion_retrieval.training.config import TrainConfig
from fashion_retrieval.training.data import (
    FeatureBatches,
    ImageBatches,
    StepBatchSampler,
    build_sample_draw,
    random_caption,
    random_caption_forms,
)
from fashion_retrieval.training.tasks import build_examples

REPO = Path(__file__).resolve().parents[1]
PATH = "women/dresses/x/{0}/{0}_0.jpeg"

# Sibling groups (one word apart) with two images per caption, plus captions without any
# sibling. "red floral dress" has siblings under two parents ("floral dress", "red dress").
TRAIN_CAPTIONS = [
    "red floral dress", "blue floral dress", "green floral dress", "black floral dress",
    "red striped dress", "red lace dress",
    "white slim pants", "black slim pants",
    "yellow maxi gown",  # no sibling
]


def _write_labels(root: Path, split: str, rows: list[tuple[str, str]]) -> Path:
    """A Fashion200k label file with ``(path, caption)`` rows and a stand-in image each."""
    (root / "labels").mkdir(parents=True, exist_ok=True)
    body = "".join(f"{p}\t0.9\t{c}\n" for p, c in rows)
    (root / "labels" / f"dress_{split}_detect_all.txt").write_text(body, encoding="utf-8")
    write_standin_images(root, [p for p, _ in rows], size=8, link=True)
    return root


def _train_set(tmp_path: Path):
    rows = [(PATH.format(f"{i}{j}"), c) for i, c in enumerate(TRAIN_CAPTIONS) for j in range(2)]
    root = _write_labels(tmp_path / "f200k", "train", rows)
    return load_fashion200k(root, "train")


def _parents(caption: str) -> set[str]:
    w = caption.split()
    return {" ".join(w[:i] + w[i + 1 :]) for i in range(len(w))}


def _config(**kw) -> TrainConfig:
    return TrainConfig(**{"dataset": "fashion200k", "batch_size": 4, "seed": 7, **kw})


# ----------------------------------------------------------------- fresh sibling per sample
def test_fresh_sibling_target_and_text_every_sample(tmp_path):
    ds = _train_set(tmp_path)
    captions = {it.id: it.caption for it in ds.items}
    rows = {it.id: i for i, it in enumerate(ds.items)}
    examples = build_examples(ds, "composed")
    assert {captions[e.source] for e in examples} == set(TRAIN_CAPTIONS) - {"yellow maxi gown"}
    features = torch.randn(len(ds.items), 6)  # (N, Dimg)
    make = FeatureBatches(examples, rows, features, build_sample_draw(ds, _config()))
    sampler = StepBatchSampler(len(examples), 4, seed=7)
    seen: dict[str, set[tuple[str, str]]] = {}
    for step in range(sampler.batches_per_epoch * 12):  # 12 epochs
        batch = make(step, sampler.indices(step))
        for j, (src, tgt, text) in enumerate(
            zip(batch["source_ids"], batch["target_ids"], batch["text"], strict=True)
        ):
            a, b = captions[src], captions[tgt]
            # every draw is a valid sibling pair and its text is that pair's "replace X with Y"
            assert a != b and _parents(a) & _parents(b), (a, b)
            assert text == modification_text(a, b) and text is not None
            assert batch["label"][j].item() == rows[tgt]
            assert torch.equal(batch["target_features"][j], features[rows[tgt]])
            assert torch.equal(batch["source_features"][j], features[rows[src]])
            seen.setdefault(src, set()).add((tgt, text))
    # the same source gets different targets and texts over the epochs (not one frozen pair)
    red = [e.source for e in examples if captions[e.source] == "red floral dress"][0]
    texts = {text for _, text in seen[red]}
    assert {"replace red with blue", "replace floral with striped"} <= texts
    assert len({t for t, _ in seen[red]}) >= 5
    assert all(len(pairs) >= 2 for pairs in seen.values())


def test_draws_are_deterministic_resumable_and_path_independent(tmp_path):
    ds = _train_set(tmp_path)
    rows = {it.id: i for i, it in enumerate(ds.items)}
    examples = build_examples(ds, "composed")
    features = torch.randn(len(ds.items), 6)

    def run(seed, start=0, rank=0, world=1, steps=10):
        make = FeatureBatches(examples, rows, features, build_sample_draw(ds, _config(seed=seed)))
        sampler = StepBatchSampler(len(examples), 2, seed=seed, rank=rank, world_size=world,
                                   start_step=start)
        out = []
        for step, indices in sampler:
            if step >= start + steps:
                break
            b = make(step, indices)
            out.append((step, b["source_ids"], b["target_ids"], b["text"]))
        return out

    full = run(seed=7)
    assert full == run(seed=7)  # same seed, same draws
    assert full != run(seed=8)
    assert run(seed=7, start=4, steps=6) == full[4:]  # a resumed run draws what it would have
    # two processes: disjoint sources at every step, each drawn independently of the other rank
    r0, r1 = run(seed=7, rank=0, world=2, steps=3), run(seed=7, rank=1, world=2, steps=3)
    assert all(set(a[1]).isdisjoint(b[1]) for a, b in zip(r0, r1, strict=True))
    # the image path draws exactly what the cached-features path draws
    images = ImageBatches(examples, {it.id: it.path for it in ds.items}, ImageTransform(8), seed=7,
                          draw=build_sample_draw(ds, _config()))
    feats = FeatureBatches(examples, rows, features, build_sample_draw(ds, _config()))
    for step in (0, 3, 11):
        indices = [0, 2, 5]
        a, b = images[(step, indices)], feats(step, indices)
        assert a["target_ids"] == b["target_ids"] and a["text"] == b["text"]
        assert a["target"].shape == (3, 3, 8, 8)
    # resample_pairs: false keeps the loader's one frozen pair per source
    assert build_sample_draw(ds, _config(resample_pairs=False)) is None


def test_trainer_batches_use_the_draw(tmp_path):
    from fashion_retrieval.training.trainer import batches

    ds = _train_set(tmp_path)
    cfg = _config(max_steps=3)
    run = SimpleNamespace(
        accelerator=SimpleNamespace(process_index=0, num_processes=1, device=torch.device("cpu")),
        config=cfg, examples=build_examples(ds, "composed"), train_set=ds,
        train_features=torch.randn(len(ds.items), 6), draw=build_sample_draw(ds, cfg),
    )
    stream = batches(run, 0)
    got = [next(stream) for _ in range(6)]
    frozen = {e.source: e.target for e in run.examples}
    drawn = [(s, t) for b in got for s, t in zip(b["source_ids"], b["target_ids"], strict=True)]
    assert any(frozen[s] != t for s, t in drawn)  # not the loader's frozen pairs

    class Model:  # records which transform the image path asks for
        asked: list[bool] = []

        def transform(self, train=False):
            self.asked.append(train)
            return ImageTransform(8, train=train)

    run.train_features, run.model = None, Model()
    run.config = _config(train_augment=False)
    assert next(batches(run, 0))["source"].shape == (4, 3, 8, 8)
    assert Model.asked == [False]


# ----------------------------------------------------------------- caption clean-up
@pytest.mark.parametrize(
    "raw, tirg",
    [
        ("  red dress.\n", "red dressdotmark"),
        ("Is it red?", "Is it redquestionmark"),
        ("black & white*", "black andmark whitestarmark"),
        ("floral-print, v-neck  dress", "floral-print, v-neck  dress"),  # nothing else changes
    ],
)
def test_tirg_caption_cleanup(raw, tirg):
    assert tirg_caption(raw) == tirg == CAPTION_CLEANUPS["tirg"](raw)
    assert CAPTION_CLEANUPS["normalize"] is clean_caption


def test_caption_cleanup_option_is_checked(tmp_path):
    root = _write_labels(tmp_path, "train", [(PATH.format(1), "Red Dress.")])
    assert load_fashion200k(root, "train").items[0].caption == "Red Dressdotmark"
    assert load_fashion200k(root, "train", caption_cleanup="normalize").items[0].caption == "red dress"
    with pytest.raises(ValueError, match="caption_cleanup 'lower'.*tirg, normalize"):
        load_fashion200k(root, "train", caption_cleanup="lower")


# ----------------------------------------------------------------- every test query kept
PUNCT_ROWS = [
    ("a", "red dress."), ("b", "red dress"), ("c", "red dress"),
    ("d", "blue top?"), ("e", "blue top"),
    ("f", "black & white skirt"), ("g", "black and white skirt"),
    ("h", "red blue midi"), ("i", "blue red midi"),  # same words, another order
    ("j", "green floral dress"), ("k", "pink floral dress"),
]
QUERIES = [("b", "a"), ("a", "b"), ("c", "a"), ("e", "d"), ("d", "e"), ("g", "f"),
           ("h", "i"), ("j", "k"), ("k", "j"), ("b", "c")]


def _punctuation_test_set(tmp_path):
    rows = [(PATH.format(n), c) for n, c in PUNCT_ROWS]
    root = _write_labels(tmp_path / "f200k", "test", rows)
    lines = "".join(f"{PATH.format(s)} {PATH.format(t)}\n" for s, t in QUERIES)
    (root / "test_queries.txt").write_text(lines + "\n", encoding="utf-8")  # a trailing blank line
    return root


def test_punctuation_only_captions_keep_every_query(tmp_path):
    root = _punctuation_test_set(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing skipped: no "skipped records" warning
        ds = load_fashion200k(root, "test")
    assert len({it.caption for it in ds.items}) == len(PUNCT_ROWS) - 1  # only b/c share one
    assert [(t.source, t.target) for t in ds.triplets] == [
        (PATH.format(s), PATH.format(t)) for s, t in QUERIES
    ]
    assert not ds.skipped and ds.meta["query_lines"] == len(QUERIES)
    caption = {it.id: it.caption for it in ds.items}
    texts = {(Path(t.source).parent.name, Path(t.target).parent.name): t.text for t in ds.triplets}
    assert texts["b", "a"] == "replace dress with dressdotmark"
    assert texts["g", "f"] == "replace and with andmark"
    # no differing word (a permutation, equal captions): kept with TIRG's last-word text
    assert texts["h", "i"] == "replace midi with midi" and texts["b", "c"] == "replace dress with dress"
    assert ds.meta["queries_without_word_difference"] == 2
    for t in ds.triplets:
        assert t.target_caption == caption[t.target] and t.captions == (caption[t.source], caption[t.target])
    # the project's normalize clean-up merges the punctuation pairs and drops those queries
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        merged = load_fashion200k(root, "test", caption_cleanup="normalize")
    assert len(merged.triplets) == 2 and merged.skipped["no_word_difference"] == 8


class _Embeddings:
    """Fixed unit embeddings: item rows, and each query at a chosen item's embedding + noise."""

    def __init__(self, ds, seed=0):
        rng = np.random.default_rng(seed)
        self.items = torch.nn.functional.normalize(torch.from_numpy(rng.standard_normal((len(ds.items), 16))).float(), dim=1)
        self.rng = rng

    def item_embeddings(self):
        return self.items

    def query_embeddings(self, triplets):
        noise = torch.from_numpy(self.rng.standard_normal((len(triplets), 16))).float()
        base = self.items[torch.from_numpy(self.rng.integers(0, len(self.items), len(triplets)))]
        self.queries = torch.nn.functional.normalize(base + 0.5 * noise, dim=1)
        return self.queries


def test_fashion200k_protocol_ranks_every_query_with_exact_caption_hits(tmp_path):
    ds = load_fashion200k(_punctuation_test_set(tmp_path), "test")
    source = _Embeddings(ds)
    result = evaluate_embeddings(source, ds, protocol="fashion200k")
    assert result["queries"] == result["query_lines"] == len(QUERIES)
    assert result["caption_cleanup"] == "tirg" and result["skipped"] == {}
    # brute-force reference: whole split, source excluded, hit = exact (TIRG-cleaned) caption
    rows = {it.id: i for i, it in enumerate(ds.items)}
    sims = source.queries @ source.items.T  # (Q, N)
    for k in (1, 5, 10):
        hits = 0
        for q, t in enumerate(ds.triplets):
            s = sims[q].clone()
            s[rows[t.source]] = -float("inf")
            top = s.argsort(descending=True)[:k].tolist()
            hits += any(ds.items[r].caption == t.target_caption for r in top)
        assert result["recall"][f"R@{k}"] == pytest.approx(100.0 * hits / len(QUERIES), abs=1e-3)


def test_a_caption_differing_by_punctuation_is_not_a_hit(tmp_path):
    ds = load_fashion200k(_punctuation_test_set(tmp_path), "test")
    ids = [it.id for it in ds.items]
    gallery = torch.eye(len(ids))  # (N, N): item r is the unit vector e_r
    # query b -> a ("red dress" -> "red dressdotmark"): nearest is c ("red dress"), then a
    ds.triplets = ds.triplets[:1]
    q = 0.9 * gallery[ids.index(PATH.format("c"))] + 0.4 * gallery[ids.index(PATH.format("a"))]
    one = SimpleNamespace(
        item_embeddings=lambda: gallery,
        query_embeddings=lambda triplets: torch.nn.functional.normalize(q[None], dim=1),
    )
    recall = evaluate_embeddings(one, ds, protocol="fashion200k")["recall"]
    assert recall["R@1"] == 0.0 and recall["R@5"] == 100.0


# ----------------------------------------------------------------- the published config
def test_tirg_fashion200k_yaml_is_the_published_setting():
    path = REPO / "training" / "configs" / "tirg_fashion200k.yaml"
    cfg = TrainConfig.load(path)
    assert cfg.train_augment is False  # google/tirg main.py: Resize(224) + CenterCrop(224) only
    assert cfg.resample_pairs is True and cfg.dataset_options == {"caption_cleanup": "tirg"}
    want = dict(
        dataset="fashion200k", eval_split="test", loss="batch_classification", optimizer="sgd", lr=0.01,
        backbone_lr_scale=0.1, momentum=0.9, weight_decay=1e-6, batch_size=32, max_steps=160000,
        lr_schedule="step", lr_decay_steps=50000, lr_decay_gamma=0.1, warmup_steps=0,
        grad_accum_steps=1, temperature=1 / 16, train_caption_mode="join",
    )
    assert {k: getattr(cfg, k) for k in want} == want
    model = dict(image_encoder="resnet18", pretrained=True, freeze_image_encoder=False, text_encoder="lstm",
                 compositor="tirg", embed_dim=512)
    assert {k: getattr(cfg.model, k) for k in model} == model
    assert cfg.model.text_kwargs == {"word_dim": 512, "hidden": 512}
    assert cfg.model.scale_both_sides is True and cfg.model.projection == "image"
    assert re.search(r"R@1 / R@10 / R@50 = 14\.1 / 42\.5 / 63\.8", path.read_text())


@pytest.mark.parametrize("recipe", ["tirg_fashion200k", "tirg_fashioniq"])
def test_tirg_scale_is_one_learnable_scale_of_4_on_both_sides(recipe):
    """google/tirg: NormalizationLayer(normalize_scale=4.0, learn_scale=True) on the composed
    query and on the target, so the logits are s**2 * cos and SGD moves s, not s**2; the LSTM's
    own output layer feeds the compositor (no second text Linear), the ResNet's fc the image side."""
    from fashion_retrieval.training.trainer import build_model

    cfg = TrainConfig.load(REPO / "training" / "configs" / f"{recipe}.yaml").replace(
        model={"image_encoder": "tiny_cnn", "pretrained": False})
    model = build_model(cfg, ["replace red with blue", "make it longer"])
    assert isinstance(model.scale, torch.nn.Parameter) and float(model.scale.detach()) == pytest.approx(4.0)
    assert float(model.logit_scale.detach()) == pytest.approx(16.0)
    assert isinstance(model.text_proj, torch.nn.Identity) and isinstance(model.image_proj, torch.nn.Linear)
    assert model.text_encoder.output_dim == model.config.embed_dim == 512
    # d(s**2 cos)/ds = 2 s cos: the gradient reaching the scale is that of a scale on both sides
    q = torch.nn.functional.normalize(torch.randn(4, 512), dim=-1)
    t = torch.nn.functional.normalize(torch.randn(4, 512), dim=-1)
    logits = (model.scale * q) @ (model.scale * t).T
    torch.testing.assert_close(model.logit_scale * (q @ t.T), logits)
    model.logit_scale.backward()
    assert float(model.scale.grad) == pytest.approx(8.0)


# ----------------------------------------------------------------- FashionIQ
def _fashioniq(root: Path, annotations: list[dict]) -> Path:
    for d in ("captions", "image_splits"):
        (root / d).mkdir(parents=True, exist_ok=True)
    ids = ["a", "b", "c", "d"]
    (root / "image_splits" / "split.dress.train.json").write_text(json.dumps(ids))
    (root / "captions" / "cap.dress.train.json").write_text(json.dumps(annotations))
    write_standin_images(root / "images", ids, size=8, ext=".jpg")
    return root


def test_fashioniq_one_empty_caption_is_kept_not_skipped(tmp_path, recwarn):
    root = _fashioniq(tmp_path, [
        {"candidate": "a", "target": "b", "captions": ["", "is red"]},
        {"candidate": "b", "target": "c", "captions": ["is blue.", "has stripes"]},
        {"candidate": "c", "target": "d", "captions": ["", "  "]},  # nothing usable: skipped
        {"candidate": "d", "target": "a", "captions": ["is green", " "]},
    ])
    ds = load_fashioniq(root, "train")
    assert [t.text for t in ds.triplets] == ["is red", "is blue. and has stripes", "is green"]
    assert dict(ds.skipped) == {"no_caption": 1}
    assert ds.meta["one_caption_empty"] == 2
    reports = [str(w.message) for w in recwarn if "skipped records" in str(w.message)]
    assert reports == [f"FashionIQ train at {root}: skipped records: no_caption=1"]


FORMS = ["Is red and has long sleeves", "Has long sleeves and is red", "Is red", "Has long sleeves"]


def test_random_caption_forms_and_frequencies():
    captions = ("is red.", " has long sleeves? ")
    rng = random.Random(0)
    counts = Counter(random_caption(captions, rng) for _ in range(4000))
    assert set(counts) == set(FORMS) and random_caption_forms(captions) == FORMS
    for form in FORMS:  # each 1/4; the standard error at n=4000 is 0.7 points
        assert abs(counts[form] / 4000 - 0.25) < 0.03, counts
    assert random_caption(("only one, ",), rng) == "Only one"


def test_train_caption_mode_random_draws_per_sample_and_join_is_unchanged(tmp_path):
    root = _fashioniq(tmp_path, [
        {"candidate": c, "target": t, "captions": ["is red.", "has long sleeves"]}
        for c, t in [("a", "b"), ("b", "c"), ("c", "d"), ("d", "a")]
    ])
    ds = load_fashioniq(root, "train")
    examples = build_examples(ds, "composed")
    rows = {it.id: i for i, it in enumerate(ds.items)}
    feats = torch.randn(len(ds.items), 4)
    join = TrainConfig(dataset="fashioniq", batch_size=2)
    assert build_sample_draw(ds, join) is None
    assert FeatureBatches(examples, rows, feats)(0, [0, 1])["text"] == ["is red. and has long sleeves"] * 2
    cfg = TrainConfig(dataset="fashioniq", batch_size=2, train_caption_mode="random", seed=3)
    make = FeatureBatches(examples, rows, feats, build_sample_draw(ds, cfg))
    drawn = Counter(t for step in range(400) for t in make(step, [0, 1, 2, 3])["text"])
    assert set(drawn) == set(FORMS)
    assert all(abs(n / 1600 - 0.25) < 0.05 for n in drawn.values()), drawn
    again = FeatureBatches(examples, rows, feats, build_sample_draw(ds, cfg))
    assert make(17, [1, 3])["text"] == again(17, [1, 3])["text"]  # deterministic
    assert [e.text for e in examples] == ["is red. and has long sleeves"] * 4  # evaluation text
    with pytest.raises(ValueError, match="train_caption_mode 'random'"):
        TrainConfig(dataset="fashion200k", train_caption_mode="random")
    with pytest.raises(ValueError, match="train_caption_mode"):
        TrainConfig(dataset="fashioniq", train_caption_mode="shuffle")


def test_evaluate_cli_uses_the_loader_settings_the_model_was_trained_with(tmp_path):
    """``training/evaluate.py`` reads the checkpoint's ``dataset_options``: a model trained with
    the project's clean-up is evaluated with it (2 queries), unless another data set is named."""
    from _demo_data import tiny_model

    from fashion_retrieval.checkpoints import save_checkpoint
    from fashion_retrieval.training.cli import evaluate_main

    root = _punctuation_test_set(tmp_path)
    ckpt = tmp_path / "ckpt"
    save_checkpoint(tiny_model(), ckpt)
    saved = {"dataset": "fashion200k", "data_root": str(root), "eval_split": "test",
             "dataset_options": {"caption_cleanup": "normalize"}}
    (ckpt / "train_config.json").write_text(json.dumps(saved), encoding="utf-8")
    out = tmp_path / "eval.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the normalize clean-up skips queries, with a warning
        assert evaluate_main(["--checkpoint", str(ckpt), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["caption_cleanup"] == "normalize" and result["queries"] == 2
    saved["dataset_options"] = {}
    (ckpt / "train_config.json").write_text(json.dumps(saved), encoding="utf-8")
    assert evaluate_main(["--checkpoint", str(ckpt), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["caption_cleanup"] == "tirg" and result["queries"] == len(QUERIES)
