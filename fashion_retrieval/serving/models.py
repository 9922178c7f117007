"""Models loaded once, from checkpoint folders or Hub repo ids, each with its index of one
catalogue, in one place (:func:`index_dir_for` says where every index lives)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fashion_retrieval.paths import index_dir_for
from fashion_retrieval.serving.catalogue import Catalogue

Log = Callable[[str], None]


@dataclass
class Service:
    """What a front end serves: Retrievers by display name over one catalogue.

    ``root`` is the folder it is cached in (the embedded default's, else the home);
    ``timings`` what building and loading took (seconds).
    """

    models: dict[str, Any]
    catalogue: Catalogue
    root: Path
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def dataset(self) -> Any:
        """The catalogue's data set with its ground truth (None for a photo folder)."""
        return self.catalogue.dataset


def model_name_for(checkpoint: str | os.PathLike) -> str:
    """A short display name: the folder name (``final`` is skipped) or the repo name."""
    path = Path(checkpoint)
    if path.exists():
        parts = [p for p in path.resolve().parts if p not in ("final", "")]
        return parts[-1] if parts else str(path)
    return str(checkpoint).rstrip("/").split("/")[-1]


def unique_names(names: Sequence[str]) -> list[str]:
    """``names`` with repeats numbered (``tirg``, ``tirg-2``)."""
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}-{seen[n]}")
    return out


def load_retriever(
    checkpoint: str | os.PathLike,
    catalogue: Catalogue,
    *,
    home: str | os.PathLike | None = None,
    device: Any = None,
    model: Any = None,
    features: Any = None,
) -> Any:
    """A Retriever of ``checkpoint`` (or the already loaded ``model``) over ``catalogue``;
    its index is kept in :func:`index_dir_for` (checkpoint, catalogue) and reused while
    model and gallery are unchanged. ``features`` (backbone features aligned with the
    items) spare the backbone pass when the index has to be built."""
    from fashion_retrieval.checkpoints import load_model
    from fashion_retrieval.search.retriever import Retriever

    if model is None:
        model = load_model(str(checkpoint))
    return Retriever(
        model.eval(), catalogue.items, index_dir=index_dir_for(checkpoint, catalogue.key, home),
        device=device, features=features,
    )


def load_models(
    checkpoints: Sequence[str | os.PathLike],
    catalogue: Catalogue,
    *,
    names: Sequence[str] | None = None,
    home: str | os.PathLike | None = None,
    device: Any = None,
    log: Log = print,
) -> dict[str, Any]:
    """Retrievers by display name for ``checkpoints`` over ``catalogue``."""
    if not checkpoints:
        raise ValueError("give at least one checkpoint (a local folder or a Hub repo id)")
    names = list(names) if names is not None else unique_names([model_name_for(c) for c in checkpoints])
    models: dict[str, Any] = {}
    for name, ckpt in zip(names, checkpoints, strict=True):
        log(f"[serving] loading {ckpt} as {name!r}; indexing {len(catalogue.items)} images if needed")
        models[name] = load_retriever(ckpt, catalogue, home=home, device=device)
    return models
