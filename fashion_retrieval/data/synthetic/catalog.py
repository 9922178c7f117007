"""The catalogue plan: products in families, their splits and (source, target) pairs.

A family is a source product plus related products of the same category. ``easy``: the
targets differ from the source in exactly one attribute. ``hard``: the target differs in
one to three attributes and near-duplicate distractors differ from the target in exactly
one attribute (half of them turn a changed attribute back towards the source, so the
source image alone points at the wrong item; the others change an attribute the text
never mentions, so the text alone cannot tell them apart). Products of a family share
their unstated style, so only the described attributes separate them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .attributes import (
    CATEGORIES,
    COLORS,
    Product,
    attribute_values,
    caption_of,
    differing,
    get_category,
    mutate,
    random_attributes,
    random_style,
)
from .relative import relative_captions
from .render import ViewConfig

SPLITS: tuple[str, ...] = ("train", "val", "test")
SPLIT_FRACTIONS: tuple[float, ...] = (0.7, 0.15, 0.15)
FIRST_PRODUCT_NUMBER = 100000


@dataclass(frozen=True)
class Preset:
    """How hard the catalogue is: pair differences, distractors and view changes."""

    name: str
    changes: tuple[int, int]  # pairs differ in this many attributes (inclusive range)
    targets_per_source: tuple[int, int]
    distractors: int  # near-duplicates per target, each differing in exactly one attribute
    view: ViewConfig
    # Pair every two family members whose difference fits ``changes`` (not only the
    # planned source -> target pairs): more training pairs per product, and each
    # near-duplicate is also some query's target, so only the text tells them apart.
    all_pairs: bool = False


PRESETS: dict[str, Preset] = {
    "easy": Preset("easy", (1, 1), (1, 3), 0, ViewConfig()),
    "hard": Preset(
        "hard", (1, 3), (1, 1), 2,
        ViewConfig(shift=0.12, scale=(0.72, 1.02), rotation=14.0, brightness=(0.72, 1.2),
                   tint=0.1, gradient=0.3, noise=5.0, clutter=5, occlusion=0.5,
                   dark_backgrounds=True),
        all_pairs=True,
    ),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; unknown names raise ``ValueError`` listing valid ones."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
    return PRESETS[name]


@dataclass(frozen=True)
class Pair:
    """A (source product, target product) pair, the changed attributes and two captions."""

    source: str
    target: str
    changed: tuple[str, ...]
    captions: tuple[str, str]
    source_view: int
    target_view: int


@dataclass
class SplitCatalog:
    """The products and pairs of one split."""

    name: str
    products: list[Product] = field(default_factory=list)
    pairs: list[Pair] = field(default_factory=list)


@dataclass
class Catalog:
    """A whole synthetic catalogue plan (nothing rendered yet)."""

    preset: Preset
    seed: int
    views: int
    splits: dict[str, SplitCatalog]

    def products(self) -> list[Product]:
        """Every product of every split."""
        return [p for s in self.splits.values() for p in s.products]

    def image_ids(self, product: Product) -> list[str]:
        """The ids of a product's images: '<product id>_<view>'."""
        return [image_id(product, v) for v in range(self.views)]


def image_id(product: Product, view: int) -> str:
    """The id (and file stem) of view ``view`` of ``product``."""
    return f"{product.id}_{view}"


def caption(product: Product) -> str:
    """The product's Fashion200k-style caption."""
    return caption_of(product.category, product.attributes)


def _family(category: str, preset: Preset, rng: np.random.Generator, colour: str | None = None,
            ) -> tuple[list[dict[str, str]], list[tuple[int, int]]]:
    """Attribute sets of one family (its first member ``colour`` when given) and its
    (source index, target index) pairs."""
    n_attrs = len(attribute_values(category))
    root = random_attributes(category, rng)
    if colour is not None:
        root["color"] = colour
    members, pairs = [root], []
    for _ in range(int(rng.integers(preset.targets_per_source[0], preset.targets_per_source[1] + 1))):
        k = int(rng.integers(preset.changes[0], min(preset.changes[1], n_attrs) + 1))
        target, changed = mutate(category, root, k, rng)
        members.append(target)
        t = len(members) - 1
        pairs.append((0, t))
        for d in range(preset.distractors):
            unchanged = [n for n in attribute_values(category) if n not in changed]
            only = changed if d % 2 == 0 or not unchanged else unchanged
            near, _ = mutate(category, target, 1, rng, only=only)
            members.append(near)
        if preset.distractors:  # the reverse pair, with a near-duplicate of its target too
            unchanged = [n for n in attribute_values(category) if n not in changed]
            near, _ = mutate(category, root, 1, rng, only=unchanged or changed)
            members.append(near)
            pairs.append((t, 0))
    if preset.all_pairs:  # extra pairs change at most two attributes: the text stays vague
        planned = set(pairs)
        pairs += [(s, t) for s in range(len(members)) for t in range(len(members))
                  if s != t and (s, t) not in planned
                  and 1 <= len(differing(members[s], members[t])) <= 2]
    return members, pairs


def _plan_split(name: str, budget: int, first_number: int, preset: Preset, seed: int,
                categories: list[str], views: int) -> SplitCatalog:
    """Families of products for one split until ``budget`` products exist."""
    rng = np.random.default_rng([seed, SPLITS.index(name), 101])
    out = SplitCatalog(name)
    # Families start at the garment types x colours in turn, in an order drawn once per
    # catalogue; the test split starts half-way round, so val and test together (the
    # embedded default's gallery) hold every type x colour once each has half as many
    # families as there are pairs.
    combos = [(c, colour) for c in categories for colour in COLORS]
    order = np.random.default_rng([seed, 202]).permutation(len(combos))
    turn = len(combos) // 2 if name == "test" else 0
    while len(out.products) < budget:
        category, colour = combos[int(order[turn % len(combos)])]
        turn += 1
        members, pairs = _family(category, preset, rng, colour)
        members = members[: budget - len(out.products)]
        style = random_style(rng)
        start = len(out.products)
        for attrs in members:
            number = first_number + len(out.products)
            out.products.append(Product(str(number), number, category, attrs, style))
        for s, t in pairs:
            if max(s, t) >= len(members):
                continue
            src, tgt = out.products[start + s], out.products[start + t]
            out.pairs.append(Pair(
                src.id, tgt.id, tuple(differing(src.attributes, tgt.attributes)),
                relative_captions(category, src.attributes, tgt.attributes, rng),
                int(rng.integers(views)), int(rng.integers(views)),
            ))
    return out


def build_catalog(products: int, seed: int = 0, preset: str = "easy", views: int = 3,
                  categories: list[str] | None = None) -> Catalog:
    """Plan a catalogue of ``products`` products (70/15/15 train/val/test, disjoint).

    Deterministic from ``seed``; nothing is rendered.
    """
    if products < 3:
        raise ValueError(f"need at least 3 products (one per split), got {products}")
    if views < 1:
        raise ValueError(f"need at least one view per product, got {views}")
    cats = list(categories) if categories else list(CATEGORIES)
    for c in cats:
        get_category(c)
    p = get_preset(preset)
    budgets = [max(1, round(products * f)) for f in SPLIT_FRACTIONS[:-1]]
    budgets.append(max(1, products - sum(budgets)))
    splits, first = {}, FIRST_PRODUCT_NUMBER
    for name, budget in zip(SPLITS, budgets, strict=True):
        splits[name] = _plan_split(name, budget, first, p, seed, cats, views)
        first += budget
    return Catalog(p, seed, views, splits)
