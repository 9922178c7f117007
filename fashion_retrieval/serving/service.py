"""``open_service``: what ``python app.py``, the Space and the dashboard call to get their
models and catalogue, from checkpoints or the embedded default, over any gallery."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from fashion_retrieval.paths import fashion_home
from fashion_retrieval.serving.catalogue import Log, open_catalogue
from fashion_retrieval.serving.default import (
    DefaultSpec,
    default_catalogue,
    default_checkpoints,
    load_default,
)
from fashion_retrieval.serving.models import Service, load_models


def open_service(
    checkpoints: Sequence[str | os.PathLike] = (),
    *,
    gallery: str | os.PathLike | None = None,
    dataset: str | None = None,
    split: str | None = None,
    home: str | os.PathLike | None = None,
    device: Any = None,
    default_spec: DefaultSpec | None = None,
    log: Log = print,
) -> Service:
    """The models and catalogue a front end serves.

    Models: ``checkpoints`` (folders or Hub repo ids), or when there are none the embedded
    default's (built first if needed). Catalogue: ``gallery`` (a data folder, a photo folder
    or, with ``dataset="published"``, a Hub dataset; see :func:`open_catalogue`), or when
    None the embedded default's. Each model indexes the catalogue once; later starts reuse
    the saved index.
    """
    from fashion_retrieval.devices import resolve_device

    dev = resolve_device(device)  # an unavailable device fails before anything is built
    spec = default_spec or DefaultSpec()
    if not checkpoints and gallery is None:
        return load_default(home, spec, log=log, device=dev)
    t0 = time.perf_counter()
    names: list[str] | None = None
    if not checkpoints:  # the default's models over another gallery
        named = default_checkpoints(home, spec, log=log)
        names, checkpoints = list(named), list(named.values())
    if gallery is None:
        catalogue = default_catalogue(home, spec)
    else:
        catalogue = open_catalogue(gallery, dataset=dataset, split=split, log=log)
    log(f"[serving] gallery: {catalogue.describe()}, {len(catalogue.items)} images")
    models = load_models(checkpoints, catalogue, names=names, home=home, device=dev, log=log)
    return Service(models, catalogue, fashion_home(home), {"load_s": time.perf_counter() - t0})
