"""Where the project keeps what it builds: one home, and every folder below it, in one place.

``$FASHION_RETRIEVAL_HOME`` (default ``~/.cache/fashion_retrieval``)::

    default/            the embedded default (catalogue, features, models, their indexes)
    synthetic/<name>/   catalogues rendered by ``load_synthetic`` without a root
    published/<slug>/   gallery images of a published (Hub) data set, written once
    indexes/<slug>/     gallery indexes of checkpoints whose own folder is not writable

A checkpoint folder that is writable keeps its indexes beside its weights (``index/``).
Nothing here imports anything heavy: every layer may use it.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

HOME_ENV = "FASHION_RETRIEVAL_HOME"


def fashion_home(home: str | os.PathLike | None = None) -> Path:
    """``home``, else ``$FASHION_RETRIEVAL_HOME``, else ``~/.cache/fashion_retrieval``."""
    if home is not None and str(home).strip():
        return Path(home).expanduser()
    env = os.environ.get(HOME_ENV, "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "fashion_retrieval"


def slug(text: str) -> str:
    """A file-name-safe version of ``text`` (a repo id, a path, a split name)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "--", text.strip("/")).strip("-") or "_"


def default_dir(home: str | os.PathLike | None = None) -> Path:
    """The embedded default's folder: ``<home>/default``."""
    return fashion_home(home) / "default"


def synthetic_dir(name: str, home: str | os.PathLike | None = None) -> Path:
    """Where a synthetic catalogue rendered without a root lives: ``<home>/synthetic/<name>``."""
    return fashion_home(home) / "synthetic" / slug(name)


def published_dir(name: str, home: str | os.PathLike | None = None) -> Path:
    """Where a published data set's gallery images are written: ``<home>/published/<name>``."""
    return fashion_home(home) / "published" / slug(name)


def gallery_key(description: str) -> str:
    """A short, stable folder name for a gallery (its source, data set and split)."""
    digest = hashlib.sha1(description.encode()).hexdigest()[:10]
    return f"{slug(description)[-40:]}-{digest}"


def index_dir_for(
    checkpoint: str | os.PathLike, gallery: str | None = None, home: str | os.PathLike | None = None
) -> Path:
    """Where a checkpoint's gallery index lives: the one rule.

    Beside a writable local checkpoint (``<checkpoint>/index``), else under
    ``<home>/indexes/<slug of the checkpoint>`` (Hub repo ids, read-only folders). With
    ``gallery`` (a :func:`gallery_key`) each gallery gets its own sub-folder, so one model can
    serve several catalogues without rebuilding.
    """
    path = Path(checkpoint)
    if path.is_dir() and os.access(path, os.W_OK):
        base = path / "index"
    else:
        base = fashion_home(home) / "indexes" / slug(str(checkpoint))
    return base / gallery if gallery else base
