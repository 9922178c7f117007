"""Models loaded once, from checkpoint folders or Hub repo ids, each with its index of one
catalogue, in one place (:func:`index_dir_for` says where every index lives)."""

from __future__ import annotations

import json
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
    """A Retriever of ``checkpoint`` (or its already loaded ``model``, unchanged since it was
    loaded) over ``catalogue``; its index is kept in :func:`index_dir_for` (checkpoint,
    catalogue) and reused while model and gallery are unchanged. ``features`` (backbone
    features aligned with the items) spare the backbone pass when the index has to be built.
    The model's fingerprint (a hash of every weight) is kept beside the index with the
    stamps of the checkpoint's files, so a start with the same files does not hash again."""
    from fashion_retrieval.checkpoints import load_model
    from fashion_retrieval.search.retriever import Retriever

    if model is None:
        model = load_model(str(checkpoint))
    index_dir = index_dir_for(checkpoint, catalogue.key, home)
    return Retriever(
        model.eval(), catalogue.items, index_dir=index_dir, device=device, features=features,
        model_fp=checkpoint_fingerprint(checkpoint, model, index_dir),
    )


FINGERPRINT_FILE = "model_fingerprint.json"
CHECKPOINT_FILES = ("config.json", "model.safetensors")


def checkpoint_fingerprint(checkpoint: str | os.PathLike, model: Any, index_dir: Path) -> str:
    """``model_fingerprint(model)`` of a model just loaded from the local folder ``checkpoint``:
    read from ``index_dir/model_fingerprint.json`` while the stamps (size, modification time)
    of the checkpoint's config and weights are the ones it was computed for, else computed
    and written there. A Hub checkpoint (no local folder) is hashed each time."""
    from fashion_retrieval.io_utils import atomic_write_json
    from fashion_retrieval.search.gallery_store import file_stamp
    from fashion_retrieval.search.retriever import model_fingerprint

    folder = Path(checkpoint)
    if not folder.is_dir():
        return model_fingerprint(model)
    stamps = [list(file_stamp(folder.resolve() / name)) for name in CHECKPOINT_FILES]
    memo = index_dir / FINGERPRINT_FILE
    try:
        saved = json.loads(memo.read_text(encoding="utf-8"))
        if saved["stamps"] == stamps and all(s[1] >= 0 for s in stamps):
            return str(saved["fingerprint"])
    except (OSError, ValueError, KeyError, TypeError):
        pass  # missing or damaged: hash again
    fingerprint = model_fingerprint(model)
    try:
        index_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(memo, {"stamps": stamps, "fingerprint": fingerprint})
    except OSError:
        pass  # a read-only index folder: hashed again next time
    return fingerprint


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
