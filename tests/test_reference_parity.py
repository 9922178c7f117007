"""Behaviour matched to the reference code (issue 22, items 3 and 8).

- FashionIQ: one definition of the query text per caption mode, shared by training and
  evaluation; a ``train_caption_mode: random`` run is evaluated on CLIP4Cir's validation text
  ("C1 and c2", stripped of ".?, "; CLIP4Cir ``src/validate.py``), a ``join`` run on the text
  it trained on, and ``training/evaluate.py --checkpoint`` picks the mode from the saved config.
- Fashion200k: TIRG's ``get_different_word`` when one caption has no differing word, and
  duplicated label lines kept as gallery rows of the test split, ranked as TIRG's
  ``test_retrieval.py`` ranks them (only the query's own row left out).
"""

from __future__ import annotations

import json
import random
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from helpers import write_standin_images

from fashion_retrieval.data.fashion200k import load_fashion200k, tirg_query_text
from fashion_retrieval.data.fashioniq import loader_caption_mode, query_texts
from fashion_retrieval.evaluation import evaluate_embeddings
from fashion_retrieval.training.config import TrainConfig
from fashion_retrieval.training.data import (
    FeatureBatches,
    build_sample_draw,
    join_captions,
    random_caption_forms,
)
from fashion_retrieval.training.tasks import build_examples
from fashion_retrieval.training.trainer import load_split

CAPTIONS = ["is red.", "has long sleeves?"]
IDS = ["a", "b", "c", "d"]


# ----------------------------------------------------------------- FashionIQ query texts
def _fashioniq(root: Path) -> Path:
    """Train and val splits of one category, every annotation with ``CAPTIONS``."""
    for d in ("captions", "image_splits"):
        (root / d).mkdir(parents=True, exist_ok=True)
    pairs = list(zip(IDS, IDS[1:] + IDS[:1], strict=True))
    for split in ("train", "val"):
        (root / "image_splits" / f"split.dress.{split}.json").write_text(json.dumps(IDS))
        annotations = [{"candidate": s, "target": t, "captions": CAPTIONS} for s, t in pairs]
        (root / "captions" / f"cap.dress.{split}.json").write_text(json.dumps(annotations))
    write_standin_images(root / "images", IDS, size=8, ext=".jpg")
    return root


def _training_texts(config: TrainConfig, step: int = 0) -> list[str]:
    """The texts of one training batch of ``config`` (drawn per sample when it asks to)."""
    train = load_split(config, config.train_split)
    examples = build_examples(train, "composed")
    rows = {it.id: i for i, it in enumerate(train.items)}
    batches = FeatureBatches(examples, rows, torch.zeros(len(rows), 4), build_sample_draw(train, config))
    return batches(step, list(range(len(examples))))["text"]


def test_training_and_evaluation_share_the_fashioniq_query_text(tmp_path):
    root = _fashioniq(tmp_path / "fiq")
    # CLIP4Cir validate.py: c1.strip('.?, ').capitalize() + " and " + c2.strip('.?, ')
    reference = "Is red and has long sleeves"
    random_run = TrainConfig(dataset="fashioniq", data_root=str(root), batch_size=2, train_caption_mode="random")
    evaluated = [t.text for t in load_split(random_run, "val").triplets]
    assert evaluated == [reference] * len(IDS)
    assert random_caption_forms(tuple(CAPTIONS))[0] == reference == query_texts(CAPTIONS, "clip4cir")[0]
    drawn = {t for step in range(40) for t in _training_texts(random_run, step)}
    assert reference in drawn and drawn == set(random_caption_forms(tuple(CAPTIONS)))
    # join: the training text is the evaluation text, character for character
    join_run = random_run.replace(train_caption_mode="join")
    evaluated = [t.text for t in load_split(join_run, "val").triplets]
    assert evaluated == _training_texts(join_run) == ["is red. and has long sleeves?"] * len(IDS)
    assert join_captions(tuple(CAPTIONS)) == query_texts(CAPTIONS, "join")[0] == evaluated[0]
    # an explicit loader caption_mode wins over the one the training mode selects
    explicit = random_run.replace(dataset_options={"caption_mode": "join"})
    assert load_split(explicit, "val").triplets[0].text == evaluated[0]


def test_caption_mode_for_a_training_mode_and_unknown_modes():
    assert loader_caption_mode("join") == "join" and loader_caption_mode("random") == "clip4cir"
    assert query_texts(["only one, "], "clip4cir") == ["Only one"]
    assert query_texts(CAPTIONS, "separate") == CAPTIONS
    with pytest.raises(ValueError, match="caption_mode 'both'.*join, separate, clip4cir"):
        query_texts(CAPTIONS, "both")
    with pytest.raises(ValueError, match="train_caption_mode='shuffle'.*join, random"):
        loader_caption_mode("shuffle")


def test_evaluate_cli_ranks_the_caption_mode_of_the_saved_training_config(tmp_path):
    from _demo_data import tiny_model

    from fashion_retrieval.checkpoints import save_checkpoint
    from fashion_retrieval.training.cli import evaluate_main

    root = _fashioniq(tmp_path / "fiq")
    ckpt = tmp_path / "ckpt"
    save_checkpoint(tiny_model(), ckpt)
    out = tmp_path / "eval.json"
    for train_mode, loader_mode in (("random", "clip4cir"), ("join", "join")):
        saved = {"dataset": "fashioniq", "data_root": str(root), "eval_split": "val", "train_caption_mode": train_mode}
        (ckpt / "train_config.json").write_text(json.dumps(saved), encoding="utf-8")
        assert evaluate_main(["--checkpoint", str(ckpt), "--json", str(out)]) == 0
        result = json.loads(out.read_text())
        assert result["caption_mode"] == loader_mode and result["queries"] == len(IDS)


# ----------------------------------------------------------------- TIRG's "replace X with Y"
def _get_different_word(source: str, target: str) -> str:
    """google/tirg datasets.py get_different_word, as behaviour: a loop that finds no
    differing word leaves its variable on the caption's last word."""
    source_words, target_words = source.split(), target.split()
    x = [w for w in source_words if w not in target_words] + source_words[-1:]
    y = [w for w in target_words if w not in source_words] + target_words[-1:]
    return f"replace {x[0]} with {y[0]}"


@pytest.mark.parametrize("source, target, text", [
    ("a b c", "a x b c", "replace c with x"),  # the example: no source word differs
    ("a x b c", "a b c", "replace x with c"),  # no target word differs
    ("red blue midi", "blue red midi", "replace midi with midi"),  # a permutation
    ("red dress", "red dress", "replace dress with dress"),
    ("red floral dress", "blue floral dress", "replace red with blue"),
    ("long red dress", "red long dress maxi", "replace dress with maxi"),
])
def test_tirg_query_text_matches_get_different_word(source, target, text):
    assert tirg_query_text(source, target) == text == _get_different_word(source, target)


def test_tirg_query_text_on_random_pairs():
    rng = random.Random(0)
    vocab = ["a", "b", "c", "red", "blue", "dress"]
    for _ in range(500):
        s = " ".join(rng.choices(vocab, k=rng.randint(1, 4)))
        t = " ".join(rng.choices(vocab, k=rng.randint(1, 4)))
        assert tirg_query_text(s, t) == _get_different_word(s, t), (s, t)


# ----------------------------------------------------------------- duplicated label lines
PATH = "women/dresses/x/{0}/{0}_0.jpeg"
ROWS = [("s", "red floral dress"), ("t", "blue floral dress"), ("o", "green floral dress"),
        ("s", "red floral dress")]  # TIRG keeps the repeated line: a fourth gallery row


def _fashion200k_test(root: Path) -> Path:
    (root / "labels").mkdir(parents=True)
    body = "".join(f"{PATH.format(n)}\t0.9\t{c}\n" for n, c in ROWS)
    (root / "labels" / "dress_test_detect_all.txt").write_text(body, encoding="utf-8")
    (root / "test_queries.txt").write_text(f"{PATH.format('s')} {PATH.format('t')}\n", encoding="utf-8")
    write_standin_images(root, sorted({PATH.format(n) for n, _ in ROWS}), size=8)
    return root


def _tirg_recall(sims: torch.Tensor, source_rows: list[int], captions: list[str], targets: list[str], k: int) -> float:
    """test_retrieval.py's recall: the query's own row (one index) set very low, then ranks."""
    hits = 0
    for i, (row, target) in enumerate(zip(source_rows, targets, strict=True)):
        s = sims[i].clone()
        s[row] = -10e10
        hits += target in [captions[r] for r in s.argsort(descending=True)[:k].tolist()]
    return 100.0 * hits / len(targets)


def test_duplicate_label_line_is_a_gallery_row_ranked_as_tirg_ranks_it(tmp_path):
    root = _fashion200k_test(tmp_path / "f200k")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a kept line is not a skipped one: no warning
        ds = load_fashion200k(root, "test")
    paths = [PATH.format(n) for n, _ in ROWS]
    assert [it.path for it in ds.items] == [str(root / p) for p in paths]
    assert [it.id for it in ds.items] == paths[:3] + [f"{paths[0]}#2"]
    assert ds.meta["duplicate_rows"] == 1 and not ds.skipped
    # TIRG's file2imgid names the path's last row: the query's source is that row
    assert [(t.source, t.target, t.text) for t in ds.triplets] == [
        (f"{paths[0]}#2", paths[1], "replace red with blue")
    ]
    # one embedding per image file (both rows of s alike); the query is nearest s, then t
    per_file = {p: torch.eye(3)[i] for i, p in enumerate(paths[:3])}
    gallery = torch.stack([per_file[p] for p in paths])  # (4, 3)
    query = torch.nn.functional.normalize(0.9 * per_file[paths[0]] + 0.4 * per_file[paths[1]], dim=0)[None]  # (1, 3)
    source = SimpleNamespace(item_embeddings=lambda: gallery, query_embeddings=lambda triplets: query)
    result = evaluate_embeddings(source, ds, protocol="fashion200k")
    captions = [c for _, c in ROWS]
    for k in (1, 5):
        want = _tirg_recall(query @ gallery.T, [3], captions, [ds.triplets[0].target_caption], k)
        assert result["recall"][f"R@{k}"] == pytest.approx(want)
    # the other row of s is not left out: it takes rank 1, the target comes second
    assert result["recall"]["R@1"] == 0.0 and result["recall"]["R@5"] == 100.0
    assert result["duplicate_rows"] == 1


def test_duplicates_stay_one_row_outside_the_published_test_protocol(tmp_path):
    root = _fashion200k_test(tmp_path / "f200k")
    with pytest.warns(UserWarning, match="duplicate=1"):
        ds = load_fashion200k(root, "test", caption_cleanup="normalize")
    assert len(ds.items) == 3 and ds.meta["duplicate_rows"] == 0
    assert ds.triplets[0].source == PATH.format("s")
