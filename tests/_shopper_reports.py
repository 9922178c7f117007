"""Shopper reports of the exact shape the project writes, for the dashboard tests.

``comparison_report`` is a real (older: no phrasing parts) ``python -m fashion_retrieval.training.compare --models
tirg,image_only --steps 5 --products 50 --preset hard --generated-pairs 200
--control-queries 20`` output (checkpoint paths shortened); ``quality_report`` has the shape
of ``python -m fashion_retrieval.serving.quality`` (see fashion_retrieval/serving/quality.py),
with made-up figures.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any


def _control(both: float, exact: float, type_: float, others: float, queries: int = 20) -> dict:
    """A ``composition_control`` dict: each share beside its ceiling and % of ceiling."""
    shares = {"type": type_, "others": others, "asked": both, "both": both, "exact": exact}
    ceilings = {"type": 100.0, "others": 58.0, "asked": 36.0, "both": 36.0, "exact": 9.0}
    out: dict[str, Any] = {"k": 5, "queries": queries, "phrasing": "heldout", "gallery": 24}
    for s, v in shares.items():
        out[s] = v
        out[f"{s}_ceiling"] = ceilings[s]
        out[f"{s}_of_ceiling"] = round(100 * v / ceilings[s], 2)
    return out


_COMPARISON = {
    "dataset": "synthetic", "preset": "hard", "split": "val", "protocol": "synthetic",
    "image_encoder": "efficientnet_lite0 (frozen) at 128 px + lab_fg", "text_encoder": "lstm",
    "steps": 5, "batch_size": 64, "seed": 0, "products": 50, "generated_pairs": 200,
    "prepare_seconds": 13.5, "train_triplets": 84, "train_images": 105, "eval_queries": 18,
    "eval_images": 24,
    "results": [
        {
            "model": "tirg", "loss": "batch_classification",
            "recall": {"R@1": 16.6667, "R@10": 94.4444, "R@50": 100.0},
            "categories": {"skirt": {"R@1": 16.6667, "R@10": 94.4444, "R@50": 100.0}},
            "one_gallery": {"R@1": 16.6667, "R@10": 94.4444, "R@50": 100.0},
            "control": _control(7.0, 1.0, 100.0, 21.0),
            "phrasing": {"train": {"R@1": 16.6667, "R@10": 94.4444},
                         "heldout": {"R@1": 16.6667, "R@10": 94.4444}, "gap_R@10": 0.0, "queries": 18},
            "train_seconds": 6.5, "checkpoint": "runs/tirg/final",
        },
        {
            "model": "image_only", "loss": "batch_classification",
            "recall": {"R@1": 27.7778, "R@10": 83.3333, "R@50": 100.0},
            "categories": {"skirt": {"R@1": 27.7778, "R@10": 83.3333, "R@50": 100.0}},
            "one_gallery": {"R@1": 27.7778, "R@10": 83.3333, "R@50": 100.0},
            "control": _control(13.0, 2.0, 100.0, 32.0),
            "phrasing": {"train": {"R@1": 27.7778, "R@10": 83.3333},
                         "heldout": {"R@1": 22.2222, "R@10": 77.7778}, "gap_R@10": 5.56, "queries": 18},
            "train_seconds": 4.1, "checkpoint": "runs/image_only/final",
        },
    ],
    "ordering": {"tirg_above_baselines_on_control": False, "holds": False},
}


def _quality_model(r1: float, both: float, color: float, pattern: float) -> dict[str, Any]:
    """One model's ``shopper_metrics(..., text_queries=True)``."""
    return {
        "one_gallery": {"R@10": r1 * 3, "R@1": r1, "R@50": min(100.0, r1 * 5)},  # unordered on purpose
        "control": _control(both, both / 4, 80.0, 20.0, queries=400),
        "phrasing": {"train": {"R@1": r1, "R@10": 3 * r1},
                     "heldout": {"R@1": r1 - 2, "R@10": 3 * r1 - 6}, "gap_R@10": 6.0, "queries": 300,
                     "plain": {"R@1": r1, "R@10": 3 * r1 - 1}, "heldout_words": {"R@1": r1, "R@10": 3 * r1 - 4},
                     "dev": {"R@1": r1, "R@10": 3 * r1 - 3}},
        "words_to_image": {"k": 4, "color": {"share": color, "queries": 96},
                           "pattern": {"share": pattern, "queries": 48}},
    }


_QUALITY = {
    "spec": {"products": 3000, "preset": "hard", "image_size": 128},
    "gallery_images": 2400, "queries": 1500, "seed": 0,
    "models": {
        "tirg": _quality_model(12.0, 30.0, 55.5, 70.25),
        "text_only": _quality_model(5.0, 18.0, 60.0, 65.0),
    },
}


def comparison_report() -> dict[str, Any]:
    """A fresh copy of the comparison report."""
    return copy.deepcopy(_COMPARISON)


def quality_report() -> dict[str, Any]:
    """A fresh copy of the default-quality report."""
    return copy.deepcopy(_QUALITY)


def write_json(path: Path, data: Any) -> Path:
    """``data`` as JSON at ``path`` (folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path
