"""Linear probes: how well an encoder's image features predict the catalogue's attributes.

``python -m fashion_retrieval.evaluation.probe --image-encoder efficientnet_lite0 --colour-features none,lab_fg --mid-grid 0,4 --preset hard``

Fits a multinomial logistic regression per attribute (colour, pattern, garment type,
sleeve, length, ...) on the features of the train split's views and reports accuracy
on the held-out views of another split (val by default), beside the majority-class
baseline. Works on features only (:func:`probe_features`), so any encoder, checkpoint
or feature variant can be compared; the CLI computes the features through the feature
cache of a model built from the options or loaded from ``--checkpoint``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

# What the probe reports, in this order; "type" is the garment category.
DEFAULT_ATTRIBUTES = ("color", "pattern", "type", "sleeve", "length")


def item_labels(items: Sequence[Any], attribute: str) -> list[str | None]:
    """Each item's value of ``attribute`` ("type" is the category); None where it has none."""
    if attribute == "type":
        return [it.category or None for it in items]
    return [(it.attributes or {}).get(attribute) for it in items]


def probe_accuracy(
    train_x: np.ndarray, train_y: Sequence[str | None], test_x: np.ndarray,
    test_y: Sequence[str | None], *, c: float = 1.0, max_iter: int = 300,
) -> dict[str, Any]:
    """Held-out accuracy of a logistic-regression probe; items labelled None are left out.

    Features are standardised with the train statistics. Returns accuracy and the
    majority-class baseline in percent, the class count and the sizes used.
    """
    from sklearn.linear_model import LogisticRegression

    tr = np.array([y is not None for y in train_y])
    te = np.array([y is not None for y in test_y])
    ytr = np.array([y for y in train_y if y is not None])
    yte = np.array([y for y in test_y if y is not None])
    if len(set(ytr)) < 2 or len(yte) == 0:
        raise ValueError(f"a probe needs >= 2 classes in train and some test items; got {len(set(ytr))} classes, {len(yte)} test items")
    xtr, xte = np.asarray(train_x, np.float64)[tr], np.asarray(test_x, np.float64)[te]
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    clf = LogisticRegression(C=c, max_iter=max_iter)
    clf.fit((xtr - mu) / sd, ytr)
    acc = float((clf.predict((xte - mu) / sd) == yte).mean())
    majority = Counter(ytr.tolist()).most_common(1)[0][0]
    return {
        "accuracy": round(100 * acc, 2), "majority": round(100 * float((yte == majority).mean()), 2),
        "classes": len(set(ytr)), "train": int(tr.sum()), "test": int(te.sum()),
    }


def probe_features(
    train_x: np.ndarray, train_items: Sequence[Any], test_x: np.ndarray, test_items: Sequence[Any],
    attributes: Sequence[str] = DEFAULT_ATTRIBUTES,
) -> dict[str, dict[str, Any]]:
    """A probe per attribute; attributes that the items do not have are left out."""
    out = {}
    for name in attributes:
        ytr, yte = item_labels(train_items, name), item_labels(test_items, name)
        if len({y for y in ytr if y is not None}) < 2 or not any(y is not None for y in yte):
            continue
        out[name] = probe_accuracy(train_x, ytr, test_x, yte)
    return out


def _model(args: argparse.Namespace, colour: str, mid_grid: int) -> Any:
    """The model whose image features are probed: a checkpoint, or one built from the options."""
    if args.checkpoint:
        from fashion_retrieval.checkpoints import load_model

        return load_model(args.checkpoint).eval()
    from fashion_retrieval.models import ModelConfig, RetrievalModel

    config = ModelConfig(
        image_encoder=args.image_encoder, colour_features=colour, mid_grid=mid_grid,
        image_size=args.image_size, compositor="image_only", embed_dim=8, pretrained=not args.random_weights,
    )
    return RetrievalModel(config, texts=["a"]).eval()


def markdown_table(results: list[dict[str, Any]]) -> str:
    """Probe accuracies, one row per feature variant."""
    attrs = [a for a in DEFAULT_ATTRIBUTES if any(a in r["probes"] for r in results)]
    first = results[0]
    lines = [
        f"Linear probes (logistic regression) on the `{first['preset']}` catalogue ({first['products']} "
        f"products): fitted on the train split's views, accuracy on the held-out {first['test_split']} "
        "split's views, percent (majority-class baseline in brackets).",
        "",
        "| image features | dim | " + " | ".join(attrs) + " |",
        "|---|---:|" + "---:|" * len(attrs),
    ]
    for r in results:
        cells = [f"{r['probes'][a]['accuracy']:.1f} ({r['probes'][a]['majority']:.0f})" if a in r["probes"] else "-"
                 for a in attrs]
        name = (f"{r['image_encoder']} @ {r['image_size']} px"
                + (f" + middle-stage grid {r['mid_grid']}x{r['mid_grid']}" if r.get("mid_grid") else "")
                + ("" if r["colour_features"] == "none" else f" + {r['colour_features']}"))
        lines.append(f"| {name} | {r['feature_dim']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: prints (and optionally writes) the results, one object per variant."""
    from fashion_retrieval.data import load_retrieval_dataset
    from fashion_retrieval.models.feature_cache import cached_image_features

    p = argparse.ArgumentParser(prog="python -m fashion_retrieval.evaluation.probe", description=__doc__.splitlines()[0])
    p.add_argument("--image-encoder", default="efficientnet_lite0")
    p.add_argument("--colour-features", default="none,lab_fg",
                   help="comma-separated variants: none | lab_fg (see fashion_retrieval.models.colour)")
    p.add_argument("--mid-grid", default="0",
                   help="comma-separated grid sizes of the backbone's middle stage beside its pooled features (0: none)")
    p.add_argument("--image-size", type=int, default=128, help="backbone input size (0: the encoder's own)")
    p.add_argument("--random-weights", action="store_true", help="no pretrained backbone weights")
    p.add_argument("--checkpoint", default=None, help="probe this checkpoint's image features instead")
    p.add_argument("--preset", default="hard", choices=("easy", "hard"))
    p.add_argument("--products", type=int, default=2400, help="catalogue size (the embedded default's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test-split", default="val")
    p.add_argument("--data-root", default=None, help="synthetic catalogue folder (default: under the cache home)")
    p.add_argument("--cache-dir", default=None, help="feature cache (default: <data root>/features)")
    p.add_argument("--attributes", default=",".join(DEFAULT_ATTRIBUTES))
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--readme", default=None, help="write the table into this README (probe markers)")
    args = p.parse_args(argv)
    args.image_size = args.image_size or None
    sets = [load_retrieval_dataset("synthetic", args.data_root, split, preset=args.preset, products=args.products,
                                   seed=args.seed) for split in ("train", args.test_split)]
    cache = args.cache_dir or str(Path(sets[0].root) / "features")
    try:
        grids = [int(g) for g in args.mid_grid.split(",") if g.strip()]
    except ValueError:
        p.error(f"--mid-grid takes comma-separated integers, got {args.mid_grid!r}")
    variants = [(c.strip(), g) for c in args.colour_features.split(",") if c.strip() for g in grids]
    results = []
    for colour, grid in variants:
        model = _model(args, colour, grid)
        feats = [cached_image_features(model, ds.items, cache).float().numpy() for ds in sets]
        results.append({
            "image_encoder": model.config.image_encoder, "colour_features": model.config.colour_features,
            "mid_grid": model.config.mid_grid,
            "image_size": model.transform().size, "feature_dim": int(feats[0].shape[1]),
            "preset": args.preset, "products": args.products, "train_split": "train", "test_split": args.test_split,
            "probes": probe_features(feats[0], sets[0].items, feats[1], sets[1].items,
                                     [a.strip() for a in args.attributes.split(",") if a.strip()]),
        })
        if args.checkpoint:
            break
    print(json.dumps(results, indent=2))
    from fashion_retrieval.io_utils import atomic_write_json, replace_marked_block

    if args.json:
        atomic_write_json(args.json, results)
    table = markdown_table(results)
    print(table)
    if args.readme:
        command = "python -m fashion_retrieval.evaluation.probe " + " ".join(argv if argv is not None else sys.argv[1:])
        replace_marked_block(args.readme, f"{table}\nReproduce: `{command}`", "<!-- probe:start -->", "<!-- probe:end -->")
    return 0


if __name__ == "__main__":
    sys.exit(main())
