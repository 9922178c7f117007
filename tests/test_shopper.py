"""The shopper evaluations, the phrasings, the generated pairs, the colour descriptor and the
probe: each checked against a brute-force reference or a known answer, on tiny data."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest
import torch

from fashion_retrieval.data.records import Item, RetrievalDataset, Triplet
from fashion_retrieval.data.synthetic.attributes import (
    CATEGORIES,
    attribute_values,
    caption_of,
    differing,
)
from fashion_retrieval.evaluation import shopper


def _catalogue(n_products: int = 40, views: int = 2, seed: int = 0) -> RetrievalDataset:
    """Items with attributes (two categories, few values so that matches exist) and triplets."""
    rng = np.random.default_rng(seed)
    items, triplets = [], []
    for p in range(n_products):
        cat = ("dress", "shirt")[p % 2]
        attrs = {name: values[int(rng.integers(min(3, len(values))))]
                 for name, values in attribute_values(cat).items()}
        for v in range(views):
            items.append(Item(f"{p}_{v}", f"/x/{p}_{v}.jpg", caption_of(cat, attrs), cat, attrs))
    for a, b in itertools.combinations(range(0, len(items), views), 2):
        if items[a].category == items[b].category and 1 <= len(differing(items[a].attributes, items[b].attributes)) <= 2:
            triplets.append(Triplet(items[a].id, items[b].id, "x", items[a].category, (), items[b].caption))
    return RetrievalDataset("synthetic", "val", "/x", items, triplets[:30], "synthetic")


class RandomSource:
    """An EmbeddingSource with fixed random gallery vectors and hashed text/query vectors."""

    def __init__(self, dataset: RetrievalDataset, dim: int = 8, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.items = torch.nn.functional.normalize(torch.randn(len(dataset.items), dim, generator=g), dim=1)
        self.rows = {it.id: i for i, it in enumerate(dataset.items)}
        self.dim = dim

    def _text(self, text: str) -> torch.Tensor:
        g = torch.Generator().manual_seed(abs(hash(text)) % (2**31))
        return torch.randn(self.dim, generator=g)

    def item_embeddings(self) -> torch.Tensor:
        return self.items

    def query_embeddings(self, triplets) -> torch.Tensor:
        q = torch.stack([self.items[self.rows[t.source]] + 0.7 * self._text(t.text) for t in triplets])
        return torch.nn.functional.normalize(q, dim=1)

    def text_embeddings(self, texts) -> torch.Tensor:
        return torch.nn.functional.normalize(torch.stack([self._text(t) for t in texts]), dim=1)


def test_composition_control_matches_brute_force():
    ds = _catalogue()
    source = RandomSource(ds)
    k, n = 5, 60
    got = shopper.composition_control(source, ds, k=k, n=n, seed=3)
    queries = shopper.control_queries(ds, n, seed=3)
    q = source.query_embeddings([Triplet(ds.items[r].id, None, t, ds.items[r].category) for r, _, _, t in queries])
    totals, ceilings = Counter(), Counter()
    for (row, name, value, _), vec in zip(queries, q, strict=True):
        src = ds.items[row]
        scores = [(float(vec @ source.items[j]), j) for j in range(len(ds.items)) if j != row]
        top = [j for _, j in sorted(scores, reverse=True)[:k]]

        def judge(it, src=src, name=name, value=value):
            same = it.category == src.category
            others = same and all(it.attributes[a] == v for a, v in src.attributes.items() if a != name)
            asked = it.attributes.get(name) == value
            return {"type": same, "others": others, "asked": asked, "both": same and asked, "exact": others and asked}

        for j in top:
            totals.update(s for s, ok in judge(ds.items[j]).items() if ok)
        possible = Counter()
        for j, it in enumerate(ds.items):
            if j != row:
                possible.update(s for s, ok in judge(it).items() if ok)
        ceilings.update({s: min(possible[s], k) for s in shopper.SHARES})
    for s in shopper.SHARES:
        assert got[s] == pytest.approx(100 * totals[s] / (k * n), abs=0.01)
        assert got[f"{s}_ceiling"] == pytest.approx(100 * ceilings[s] / (k * n), abs=0.01)
    assert got["queries"] == n and got["both_ceiling"] > 0


def test_control_queries_ask_for_a_new_value_of_an_attribute_the_item_has():
    ds = _catalogue()
    for row, name, value, text in shopper.control_queries(ds, 100, seed=1):
        item = ds.items[row]
        assert value in attribute_values(item.category)[name] and value != item.attributes[name]
        assert text.strip()


def test_words_to_image_matches_brute_force():
    ds = _catalogue(60)
    source = RandomSource(ds, seed=2)
    got = shopper.words_to_image(source, ds, k=3)
    for name in ("color", "pattern"):
        counts = Counter((it.category, it.attributes[name]) for it in ds.items)
        pairs = sorted(p for p, c in counts.items() if c >= 3)
        good = 0
        for cat, value in pairs:
            t = source.text_embeddings([f"{value} {CATEGORIES[cat].noun}"])[0]
            top = sorted(range(len(ds.items)), key=lambda j: -float(t @ source.items[j]))[:3]
            good += sum(ds.items[j].category == cat and ds.items[j].attributes[name] == value for j in top)
        assert got[name]["queries"] == len(pairs)
        assert got[name]["share"] == pytest.approx(100 * good / (3 * len(pairs)), abs=0.01)


def test_one_gallery_protocol_matches_brute_force():
    from fashion_retrieval.evaluation.protocols import evaluate_embeddings

    ds = _catalogue()
    source = RandomSource(ds, seed=5)
    got = evaluate_embeddings(source, ds, protocol="one_gallery")["recall"]
    q = source.query_embeddings(ds.triplets)
    hits = {1: 0, 10: 0}
    for t, vec in zip(ds.triplets, q, strict=True):
        src = source.rows[t.source]
        order = sorted((j for j in range(len(ds.items)) if j != src), key=lambda j: -float(vec @ source.items[j]))
        for k in hits:
            hits[k] += any(ds.items[j].caption == t.target_caption for j in order[:k])
    for k in hits:
        assert got[f"R@{k}"] == pytest.approx(100 * hits[k] / len(ds.triplets), abs=0.01)


def test_rephrase_keeps_the_changes_and_the_phrasings_differ():
    ds = _catalogue()
    train, held = shopper.rephrase(ds, "train"), shopper.rephrase(ds, "heldout")
    assert len(train.triplets) == len(held.triplets) == len(ds.triplets)
    for a, b, c in zip(ds.triplets, train.triplets, held.triplets, strict=True):
        assert (a.source, a.target) == (b.source, b.target) == (c.source, c.target)
    assert {t.text for t in train.triplets}.isdisjoint({t.text for t in held.triplets})


def test_phrasing_gap_parts_are_the_same_changes_in_other_words():
    """The gap's parts reword the same pairs: each against a brute-force one-gallery R@10."""
    from fashion_retrieval.data.synthetic.phrasing import (
        _DEV_WORDS,
        _HELDOUT_WORDS,
        _TRAIN_TEMPLATES,
        change_request,
    )

    ds = _catalogue()
    source = RandomSource(ds, seed=3)
    gap = shopper.phrasing_gap(source, ds, seed=2)
    assert set(gap) >= {"train", "heldout", "plain", "heldout_words", "dev", "gap_R@10", "queries"}
    gallery = source.item_embeddings()
    for phrasing in ("plain", "heldout_words", "dev"):
        worded = shopper.rephrase(ds, phrasing, 2)
        assert [(t.source, t.target) for t in worded.triplets] == [(t.source, t.target) for t in ds.triplets]
        q = source.query_embeddings(worded.triplets)
        hits = 0
        for t, vec in zip(worded.triplets, q, strict=True):
            src = source.rows[t.source]
            order = sorted((j for j in range(len(ds.items)) if j != src), key=lambda j: -float(vec @ gallery[j]))
            hits += any(ds.items[j].caption == t.target_caption for j in order[:10])
        assert gap[phrasing]["R@10"] == pytest.approx(100 * hits / len(ds.triplets), abs=0.01)
    # which words and sentences each part uses
    rng = np.random.default_rng(0)
    texts = {p: [change_request("color", "red", "dress", rng, p) for _ in range(40)]
             for p in ("heldout_words", "dev")}
    assert all(any(w in t for w in _HELDOUT_WORDS["red"]) for t in texts["heldout_words"])
    assert all(any(w in t for w in _DEV_WORDS["red"]) for t in texts["dev"])
    train_shapes = {t.split("{v}")[0] for t in _TRAIN_TEMPLATES["color"]}
    assert all(any(t.startswith(s) for s in train_shapes) for t in texts["dev"])


def test_heldout_words_never_reach_training_texts():
    """Held out means held out: no held-out-only word in any training text the project makes."""
    from fashion_retrieval.data.synthetic.pairs import attribute_change_pairs, partial_descriptions
    from fashion_retrieval.data.synthetic.phrasing import (
        _HELDOUT_TEMPLATES,
        _HELDOUT_WORDS,
        _TRAIN_TEMPLATES,
        _training_vocabulary,
        dev_vocabulary,
        heldout_vocabulary,
    )
    from fashion_retrieval.data.synthetic.relative import relative_captions
    from fashion_retrieval.models.vocab import tokenize

    held = heldout_vocabulary()
    assert {"crimson", "burgundy", "unpatterned"} <= held
    ds = _catalogue(80)
    texts = [t for _, _, t in attribute_change_pairs(ds.items, 2000, seed=1)]
    texts += [t for _, t in partial_descriptions(ds.items, 5, seed=1)]
    rng = np.random.default_rng(0)
    for a, b in itertools.combinations(ds.items[::2][:30], 2):
        if a.category == b.category and differing(a.attributes, b.attributes):
            texts += relative_captions(a.category, a.attributes, b.attributes, rng)
    words = {w for t in texts for w in tokenize(t)}
    assert not words & held, sorted(words & held)
    dev = dev_vocabulary()  # the development words: neither trained on nor held out
    assert {"cerise", "speckled", "armless"} <= dev
    assert not dev & (words | _training_vocabulary(3000)), sorted(dev & (words | _training_vocabulary(3000)))
    assert not dev & {w for ws in _HELDOUT_WORDS.values() for x in ws for w in x.split()}
    train_templates = {t for ts in _TRAIN_TEMPLATES.values() for t in ts}
    assert train_templates.isdisjoint({t for ts in _HELDOUT_TEMPLATES.values() for t in ts})


def test_attribute_change_pairs_and_partial_descriptions():
    from fashion_retrieval.data.synthetic.pairs import attribute_change_pairs, partial_descriptions

    ds = _catalogue(60)
    by_id = ds.item_by_id()
    pairs = attribute_change_pairs(ds.items, 300, seed=2)
    assert pairs and len(pairs) <= 300
    for s, t, text in pairs:
        a, b = by_id[s], by_id[t]
        assert a.category == b.category and 1 <= len(differing(a.attributes, b.attributes)) <= 2 and text
    assert pairs == attribute_change_pairs(ds.items, 300, seed=2)  # seeded
    for item_id, text in partial_descriptions(ds.items, 3, seed=0):
        item = by_id[item_id]
        words = text.split()
        assert words[-1] == CATEGORIES[item.category].noun
        assert set(words[:-1]) <= set(item.attributes.values())


def test_rgb_to_lab_known_values():
    from fashion_retrieval.models.colour import rgb_to_lab

    rgb = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]).view(3, 3, 1, 1)
    lab = rgb_to_lab(rgb).view(3, 3)
    assert lab[0].tolist() == pytest.approx([100.0, 0.0, 0.0], abs=0.1)
    assert lab[1].tolist() == pytest.approx([53.24, 80.09, 67.20], abs=0.2)
    assert lab[2].tolist() == pytest.approx([0.0, 0.0, 0.0], abs=0.1)


def test_colour_descriptor_sees_the_garment_not_the_backdrop():
    from PIL import Image, ImageDraw

    from fashion_retrieval.data.transforms import ImageTransform
    from fashion_retrieval.models.colour import build_colour_features

    def garment(fill, backdrop):
        img = Image.new("RGB", (128, 128), backdrop)
        ImageDraw.Draw(img).rectangle([40, 30, 88, 100], fill=fill)
        return ImageTransform(128)(img)

    hist = build_colour_features("lab_fg", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    feats = hist(torch.stack([garment((200, 30, 40), (200, 200, 200)), garment((200, 30, 40), (40, 40, 60)),
                              garment((40, 90, 210), (200, 200, 200))]))
    assert feats.shape == (3, hist.output_dim)
    k = hist.output_dim - hist.silhouette**2
    red_light, red_dark, blue = feats[:, :k]
    # The same red garment on two backdrops is closer than red and blue on one backdrop.
    assert torch.dist(red_light, red_dark) < 0.5 * torch.dist(red_light, blue)
    assert torch.allclose(feats[0, k:], feats[2, k:], atol=0.05)  # the same silhouette


def test_colour_features_are_part_of_the_checkpoint_and_the_cache_key(tmp_path):
    from helpers import solid_image

    from fashion_retrieval import checkpoints as hub
    from fashion_retrieval.models import ModelConfig, RetrievalModel
    from fashion_retrieval.models.feature_cache import cache_key

    cfg = ModelConfig(image_encoder="tiny_cnn", pretrained=False, embed_dim=16, colour_features="lab_fg", image_size=48)
    model = RetrievalModel(cfg, texts=["make it red"]).eval()
    assert model.feature_dim == 128 + model.colour.output_dim
    pixels = torch.randn(2, 3, 48, 48)
    feats = model.image_features(pixels)
    assert feats.shape == (2, model.feature_dim)
    loaded = hub.load_model(hub.save_checkpoint(model, tmp_path / "c"))
    assert loaded.config.colour_features == "lab_fg" and loaded.transform().size == 48
    assert torch.allclose(loaded.image_features(pixels), feats, atol=1e-5)
    path = tmp_path / "a.png"
    solid_image(32, (10, 20, 30)).save(path)
    plain = RetrievalModel(ModelConfig(image_encoder="tiny_cnn", pretrained=False, embed_dim=16, image_size=48),
                           texts=["a"])
    plain.image_encoder.load_state_dict(model.image_encoder.state_dict())  # same backbone, no colour
    assert cache_key(model, [path]) != cache_key(plain, [path])


def test_probe_accuracy_on_separable_and_random_labels():
    from fashion_retrieval.evaluation.probe import probe_accuracy

    rng = np.random.default_rng(0)
    labels = [("a", "b", "c")[i % 3] for i in range(300)]
    centres = {"a": np.zeros(5), "b": np.full(5, 4.0), "c": np.full(5, -4.0)}
    x = np.stack([centres[y] + rng.normal(size=5) * 0.3 for y in labels])
    good = probe_accuracy(x[:200], labels[:200], x[200:], labels[200:])
    assert good["accuracy"] == 100.0 and good["classes"] == 3
    noise = rng.normal(size=(300, 5))
    bad = probe_accuracy(noise[:200], labels[:200], noise[200:], labels[200:])
    assert bad["accuracy"] < 60.0
    with pytest.raises(ValueError, match="2 classes"):
        probe_accuracy(x[:10], ["a"] * 10, x[10:20], ["a"] * 10)


def test_the_default_gallery_can_answer_every_garment_type_and_colour():
    """The embedded default's gallery (val + test splits) holds >= 2,000 images and every
    garment type x colour (checked on the catalogue plan: nothing is rendered)."""
    from fashion_retrieval.data.synthetic import COLORS
    from fashion_retrieval.data.synthetic.catalog import build_catalog
    from fashion_retrieval.serving.default import DefaultSpec

    spec = DefaultSpec()
    plan = build_catalog(spec.products, seed=spec.seed, preset=spec.preset)
    gallery = [p for split in spec.gallery_split.split("+") for p in plan.splits[split].products]
    assert len(gallery) * plan.views >= 2000
    assert {(p.category, p.attributes["color"]) for p in gallery} == set(itertools.product(CATEGORIES, COLORS))
