"""The model and gallery items the model-facing benchmarks share.

The model is the product default (``ModelConfig()``: efficientnet_lite0 with its offline
ImageNet weights, LSTM text encoder, TIRG, 512-d), so the figures are what a user gets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Texts for the LSTM vocabulary and for the queries.
QUERY_TEXTS = [
    "replace red with blue",
    "make it longer with short sleeves",
    "is darker and has a floral print",
    "replace cotton with silk and add a belt",
]


def default_model(**overrides: Any):
    """The default ``RetrievalModel`` (pretrained offline backbone), in eval mode."""
    from fashion_retrieval.models import ModelConfig, RetrievalModel

    config = ModelConfig(**overrides)
    return RetrievalModel(config, texts=QUERY_TEXTS).eval()


def file_items(paths: list[Path]) -> list:
    """Gallery ``Item`` records for image files."""
    from fashion_retrieval.data.records import Item

    return [
        Item(id=p.stem, path=str(p), caption=f"image {p.stem}", category="bench") for p in paths
    ]


def fake_items(n: int) -> list:
    """``n`` gallery ``Item`` records (no files: for galleries given as embeddings)."""
    from fashion_retrieval.data.records import Item

    return [
        Item(id=str(i), path=f"/gallery/{i}.jpg", caption=f"caption {i % 997}", category="bench")
        for i in range(n)
    ]
