"""Loading what the embedding map and query browser need: checkpoints, galleries, retrievers.

Heavy modules (torch, the model zoo, faiss) are imported inside the functions, so importing
the dashboard stays cheap; the Streamlit page caches the results.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class GallerySpec:
    """Which data set split is the gallery: a name from ``DATASETS``, a root and a split.

    For ``published`` the root is a ``publish --out`` folder or a Hub dataset repo id, and an
    empty split is the data set's own evaluation split."""

    dataset: str
    root: str
    split: str

    def describe(self) -> str:
        """A one-line description for the page."""
        return f"{self.dataset} at {self.root} ({self.split} split)"


def load_checkpoint(path: str | Path) -> Any:
    """A ``RetrievalModel`` from a local checkpoint folder or Hub repo id, in eval mode."""
    from ..hub import load_model

    model = load_model(str(path))
    model.eval()
    return model


def load_gallery(spec: GallerySpec) -> Any:
    """The ``RetrievalDataset`` a ``GallerySpec`` names (its items and test queries).

    Read-only: a synthetic catalogue is read as the FashionIQ layout it is written in, never
    rendered (``load_synthetic`` would re-render, and replace, a catalogue whose parameters
    differ from its arguments, such as the embedded default's).
    """
    import dataclasses

    from ..data import load_retrieval_dataset

    if spec.dataset == "published":  # a `publish --out` folder or a Hub dataset repo id, streamed
        return load_retrieval_dataset("published", spec.root, spec.split or None)
    root = Path(spec.root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(
            f"gallery folder {root} does not exist (build the embedded default with "
            "`python app.py`, or give a data folder)"
        )
    if spec.dataset == "synthetic":
        ds = load_retrieval_dataset("fashioniq", str(root), spec.split)
        return dataclasses.replace(ds, name="synthetic", protocol="synthetic")
    return load_retrieval_dataset(spec.dataset, str(root), spec.split)


def build_retriever(checkpoint: str | Path, model: Any, items: list[Any]) -> Any:
    """A ``Retriever`` over ``items``; its index is kept where the demo keeps it (beside a
    writable checkpoint, else under ``$FASHION_RETRIEVAL_HOME/indexes``), so both reuse it."""
    from ..demo.loading import index_dir_for
    from ..retriever import Retriever

    return Retriever(model, items, index_dir=index_dir_for(str(checkpoint)))


def gallery_embeddings(retriever: Any, items: list[Any]) -> np.ndarray:
    """``(N, D)`` target embeddings of ``items`` under the retriever's model, as float32."""
    emb = retriever.embed_items(items)  # (N, D) torch tensor
    return np.asarray(emb.detach().cpu().numpy(), dtype=np.float32)


def train_gallery(checkpoint: str | Path) -> GallerySpec | None:
    """The gallery a checkpoint was trained on, from its saved training config, if known."""
    for name in ("train_config.json", "training_config.json"):
        path = Path(checkpoint) / name
        if path.is_file():
            import json

            try:
                cfg = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return None
            dataset, root = cfg.get("dataset"), cfg.get("data_root")
            if isinstance(dataset, str) and isinstance(root, str) and root:
                return GallerySpec(dataset, root, str(cfg.get("eval_split") or "test"))
    return None
