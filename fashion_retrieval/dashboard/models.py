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
    """Which gallery: a data set name from ``DATASETS``, ``"photos"`` or ``""`` (detected from
    the folder), a root (a folder, or a Hub dataset repo id for ``published``) and a split
    (``""``: the data set's evaluation split)."""

    dataset: str
    root: str
    split: str

    def describe(self) -> str:
        """A one-line description for the page."""
        split = f" ({self.split} split)" if self.split else ""
        return f"{self.dataset or 'gallery'} at {self.root}{split}"


def load_checkpoint(path: str | Path) -> Any:
    """A ``RetrievalModel`` from a local checkpoint folder or Hub repo id, in eval mode."""
    from ..checkpoints import load_model

    model = load_model(str(path))
    model.eval()
    return model


def load_gallery(spec: GallerySpec) -> Any:
    """The :class:`~fashion_retrieval.serving.catalogue.Catalogue` a ``GallerySpec`` names, read
    through the serving layer as the demo reads it (a rendered synthetic catalogue is read
    back as it is, never rendered again)."""
    from ..serving.catalogue import open_catalogue

    try:
        return open_catalogue(spec.root, dataset=spec.dataset or None, split=spec.split or None)
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"{err} (build the embedded default with `python app.py`, or give a data folder)"
        ) from None


def build_retriever(checkpoint: str | Path, model: Any, catalogue: Any) -> Any:
    """A ``Retriever`` of ``model`` over ``catalogue``; its index is kept where the demo keeps
    it (``paths.index_dir_for``), so both reuse it."""
    from ..serving.models import load_retriever

    return load_retriever(checkpoint, catalogue, model=model)


def gallery_embeddings(retriever: Any, items: list[Any]) -> np.ndarray:
    """``(N, D)`` target embeddings of ``items`` under the retriever's model, as float32."""
    emb = retriever.embed_items(items)  # (N, D) torch tensor
    return np.asarray(emb.detach().cpu().numpy(), dtype=np.float32)


def train_gallery(checkpoint: str | Path) -> GallerySpec | None:
    """The gallery a checkpoint was trained on, from the training config saved with it."""
    import json

    path = Path(checkpoint) / "train_config.json"
    if not path.is_file():
        return None
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    dataset, root = cfg.get("dataset"), cfg.get("data_root")
    if isinstance(dataset, str) and isinstance(root, str) and root:
        return GallerySpec(dataset, root, str(cfg.get("eval_split") or ""))
    return None
