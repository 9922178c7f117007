"""Quality as a shopper sees it: composition control, held-out phrasing, words to image.

All three work on any :class:`EmbeddingSource` over a catalogue whose items carry their
attributes (the synthetic catalogue), and rank one gallery across all garment types.

- :func:`composition_control`: a gallery picture plus a one-attribute change in plain
  words, in templates never trained on ("could you show this in red", the ``plain``
  phrasing). Of the top ``k``
  (the source image excluded) it reports the share that keeps the picture's garment type
  (``type``), keeps every other attribute too (``others``), has the asked value
  (``asked``), and has both the type and the asked value (``both``) or all of it
  (``exact``); each beside the catalogue's ceiling (the best share any ranking could
  reach, given what the gallery holds) and as a percent of it (``*_of_ceiling``).
- :func:`phrasing_gap`: R@10 of the split's composed queries, rephrased in the training
  phrasing and in the held-out phrasing (same changes, other words), on one gallery.
- :func:`words_to_image`: "<colour> <garment>" and "<pattern> <garment>" text queries
  for every pair the gallery holds at least ``k`` images of; the share of the top ``k``
  that has both.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from fashion_retrieval.data import DATASETS
from fashion_retrieval.data.records import RetrievalDataset, Triplet
from fashion_retrieval.evaluation.embeddings import EmbeddingSource
from fashion_retrieval.evaluation.ranking import topk_chunked

CONTROL_ATTRIBUTES = ("color", "pattern", "sleeve", "length")
SHARES = ("type", "others", "asked", "both", "exact")


def _tools(name: str) -> Any:
    """The synthetic catalogue's ``attributes`` or ``phrasing`` module, through its data set entry."""
    return DATASETS.get("synthetic").helper(name)


def _noun(category: str) -> str:  # how a shopper names the garment type
    return _tools("attributes").get_category(category).noun


def _described(dataset: RetrievalDataset) -> list[int]:
    """Rows of the items that carry a category and attributes; an error if there are none."""
    rows = [i for i, it in enumerate(dataset.items) if it.category and it.attributes]
    if not rows:
        raise ValueError(f"{dataset.name} {dataset.split!r}: no item carries attributes; "
                         "these evaluations need a catalogue with attribute ground truth")
    return rows


def control_queries(dataset: RetrievalDataset, n: int, seed: int = 0, phrasing: str = "plain",
                    attributes: Sequence[str] = CONTROL_ATTRIBUTES) -> list[tuple[int, str, str, str]]:
    """``n`` seeded (source row, attribute, asked value, text) one-attribute change requests."""
    rng = np.random.default_rng([seed, 3])
    rows = _described(dataset)
    out = []
    while len(out) < n:
        row = rows[int(rng.integers(len(rows)))]
        item = dataset.items[row]
        values = _tools("attributes").attribute_values(item.category)
        names = [a for a in attributes if a in values and a in item.attributes]
        if not names:
            continue
        name = names[int(rng.integers(len(names)))]
        others = [v for v in values[name] if v != item.attributes[name]]
        value = others[int(rng.integers(len(others)))]
        text = _tools("phrasing").change_request(name, value, _noun(item.category), rng, phrasing)
        out.append((row, name, value, text))
    return out


def _judge(item: Any, source: Any, name: str, value: str) -> dict[str, bool]:
    """Which shares one retrieved ``item`` counts towards, for a request on ``source``."""
    same_type = item.category == source.category
    asked = (item.attributes or {}).get(name) == value
    rest = same_type and all(item.attributes.get(a) == v for a, v in source.attributes.items() if a != name)
    return {"type": same_type, "others": rest, "asked": asked, "both": same_type and asked, "exact": rest and asked}


def composition_control(source: EmbeddingSource, dataset: RetrievalDataset, *, k: int = 5,
                        n: int = 400, seed: int = 0, phrasing: str = "plain") -> dict[str, Any]:
    """Shares of the top ``k`` that keep the picture and follow the words, with ceilings (percent)."""
    queries = control_queries(dataset, n, seed, phrasing)
    items = dataset.items
    triplets = [Triplet(items[r].id, None, text, items[r].category) for r, _, _, text in queries]
    gallery = source.item_embeddings()  # (N, D)
    q = source.query_embeddings(triplets)  # (Q, D)
    _, idx = topk_chunked(q, gallery, k, exclude=torch.tensor([r for r, *_ in queries]))  # (Q, k)
    got, ceiling = Counter(), Counter()
    for (row, name, value, _), top in zip(queries, idx.tolist(), strict=True):
        src = items[row]
        for j in top:
            if j >= 0:
                got.update(s for s, ok in _judge(items[j], src, name, value).items() if ok)
        possible = Counter()
        for j, it in enumerate(items):
            if j != row:
                possible.update(s for s, ok in _judge(it, src, name, value).items() if ok)
        ceiling.update({s: min(possible[s], k) for s in SHARES})
    total = k * len(queries)
    out: dict[str, Any] = {"k": k, "queries": len(queries), "phrasing": phrasing, "gallery": len(items)}
    for s in SHARES:
        share, ceil = 100 * got[s] / total, 100 * ceiling[s] / total
        out[s] = round(share, 2)
        out[f"{s}_ceiling"] = round(ceil, 2)
        out[f"{s}_of_ceiling"] = round(100 * share / ceil, 2) if ceil else float("nan")
    return out


def rephrase(dataset: RetrievalDataset, phrasing: str, seed: int = 0) -> RetrievalDataset:
    """The split's composed queries with texts rewritten in ``phrasing`` (same changes)."""
    rng = np.random.default_rng([seed, 5])
    by_id = dataset.item_by_id()
    out = []
    for t in dataset.triplets:
        src, tgt = by_id.get(t.source), by_id.get(t.target) if t.target else None
        if src is None or tgt is None or not (src.attributes and tgt.attributes):
            continue
        changes = {a: tgt.attributes[a] for a in _tools("attributes").differing(src.attributes, tgt.attributes)}
        if not changes:
            continue
        text = _tools("phrasing").multi_change_request(_noun(src.category), changes, rng, phrasing)
        out.append(dataclasses.replace(t, text=text, captions=(text,)))
    return dataclasses.replace(dataset, triplets=out)


PHRASING_PARTS = ("plain", "heldout_words", "dev")  # beside train and heldout: see data/synthetic/phrasing.py


def phrasing_gap(source: EmbeddingSource, dataset: RetrievalDataset, *, seed: int = 0) -> dict[str, Any]:
    """R@1/R@10 on one gallery with the queries in the train and in the held-out phrasing.

    Beside them, the parts of the gap: ``plain`` (held-out templates, the catalogue's own
    words), ``heldout_words`` (training templates, held-out words) and ``dev`` (training
    templates, the development words that word-knowledge choices are made on).
    """
    from fashion_retrieval.evaluation.protocols import evaluate_embeddings

    out: dict[str, Any] = {}
    for phrasing in ("train", "heldout", *PHRASING_PARTS):
        worded = rephrase(dataset, phrasing, seed)
        result = evaluate_embeddings(source, worded, protocol="one_gallery")
        out[phrasing] = {key: result["recall"][key] for key in ("R@1", "R@10")}
        out.setdefault("queries", len(worded.triplets))  # the same pairs in every phrasing
    out["gap_R@10"] = round(out["train"]["R@10"] - out["heldout"]["R@10"], 2)
    return out


def words_to_image(source: EmbeddingSource, dataset: RetrievalDataset, *, k: int = 4,
                   attributes: Sequence[str] = ("color", "pattern")) -> dict[str, Any]:
    """Share (percent) of the top ``k`` of "<value> <garment>" that has both, per attribute."""
    items = [dataset.items[r] for r in _described(dataset)]
    gallery = source.item_embeddings()  # (N, D)
    out: dict[str, Any] = {"k": k}
    for name in attributes:
        counts = Counter((it.category, it.attributes.get(name)) for it in items if name in it.attributes)
        pairs = sorted(p for p, c in counts.items() if c >= k)
        if not pairs:
            continue
        texts = [f"{value} {_noun(cat)}" for cat, value in pairs]
        _, idx = topk_chunked(source.text_embeddings(texts), gallery, k)  # (P, k)
        good = sum(
            1 for (cat, value), top in zip(pairs, idx.tolist(), strict=True) for j in top
            if j >= 0 and dataset.items[j].category == cat and dataset.items[j].attributes.get(name) == value
        )
        out[name] = {"share": round(100 * good / (k * len(pairs)), 2), "queries": len(pairs)}
    return out


def shopper_metrics(source: EmbeddingSource, dataset: RetrievalDataset, *, k: int = 5,
                    n: int = 400, seed: int = 0, text_queries: bool = False) -> dict[str, Any]:
    """One gallery (R@1 first), composition control and the phrasing gap; with
    ``text_queries`` also words to image. Every figure in percent."""
    from fashion_retrieval.evaluation.protocols import evaluate_embeddings

    out = {
        "one_gallery": evaluate_embeddings(source, dataset, protocol="one_gallery")["recall"],
        "control": composition_control(source, dataset, k=k, n=n, seed=seed),
        "phrasing": phrasing_gap(source, dataset, seed=seed),
    }
    if text_queries:
        out["words_to_image"] = words_to_image(source, dataset)
    return out
