"""More training signal from the catalogue's ground truth, at no backbone cost.

The rendered catalogue knows every item's attributes, so any two products of one
category that differ in one or two attributes make a composed training pair, whatever
family they came from, and any item can be described by any subset of its attributes.
Both reuse images whose backbone features are already cached: more triplets cost only
head steps. Texts use the ``train`` phrasing (:mod:`.phrasing`) or the catalogue's own
relative captions, never the held-out phrasing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from .attributes import attribute_values, differing, get_category
from .phrasing import multi_change_request
from .relative import relative_captions


def _products(items: Sequence[Any]) -> dict[str, list[Any]]:
    """Items grouped by product (views of one product share caption and category)."""
    groups: dict[str, list[Any]] = defaultdict(list)
    for it in items:
        if it.attributes and it.category:
            groups[it.id.rsplit("_", 1)[0]].append(it)
    return groups


def attribute_change_pairs(
    items: Sequence[Any], count: int, seed: int = 0, max_changes: int = 2,
) -> list[tuple[str, str, str]]:
    """Up to ``count`` (source id, target id, text) pairs of products differing in 1..max_changes attributes.

    Pairs are drawn without replacement over product pairs (then views at random); half the
    texts are plain-words requests in the ``train`` phrasing, half the catalogue's relative
    captions joined "c1 and c2".
    """
    rng = np.random.default_rng([seed, 7])
    by_cat: dict[str, list[list[Any]]] = defaultdict(list)
    for views in _products(items).values():
        by_cat[views[0].category].append(views)
    candidates = []
    for cat, prods in by_cat.items():
        for i, a in enumerate(prods):
            for j, b in enumerate(prods):
                if i != j and 1 <= len(differing(a[0].attributes, b[0].attributes)) <= max_changes:
                    candidates.append((cat, i, j))
    if not candidates:
        return []
    order = rng.permutation(len(candidates))[:count]
    out = []
    for n in order:
        cat, i, j = candidates[int(n)]
        src_views, tgt_views = by_cat[cat][i], by_cat[cat][j]
        src = src_views[int(rng.integers(len(src_views)))]
        tgt = tgt_views[int(rng.integers(len(tgt_views)))]
        out.append((src.id, tgt.id, change_text(cat, src.attributes, tgt.attributes, rng)))
    return out


def change_text(category: str, source: dict[str, str], target: dict[str, str], rng: np.random.Generator) -> str:
    """A training text for the change source -> target: plain words or relative captions."""
    changed = {a: target[a] for a in differing(source, target)}
    if rng.random() < 0.5:
        return multi_change_request(get_category(category).noun, changed, rng, "train")
    c1, c2 = relative_captions(category, source, target, rng)
    return f"{c1} and {c2}"


def partial_descriptions(items: Sequence[Any], per_item: int, seed: int = 0) -> list[tuple[str, str]]:
    """(item id, text) pairs: each item described by random subsets of its attributes.

    "red dress", "striped long-sleeve shirt", "maxi dress": the words of the catalogue's
    captions, in caption order, with the garment noun always last. A shopper's search box
    holds such partial descriptions far more often than a full caption.
    """
    rng = np.random.default_rng([seed, 11])
    out = []
    for it in items:
        if not (it.attributes and it.category):
            continue
        names = [n for n in attribute_values(it.category) if n in it.attributes]
        noun = get_category(it.category).noun
        for _ in range(per_item):
            k = int(rng.integers(0, min(3, len(names)) + 1))
            keep = sorted(rng.choice(len(names), size=k, replace=False).tolist()) if k else []
            words = [it.attributes[names[i]] for i in keep]
            out.append((it.id, " ".join([*words, noun])))
    return out
