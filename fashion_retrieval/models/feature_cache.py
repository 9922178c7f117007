"""On-disk cache of frozen-backbone image features, so head-only training skips the backbone.

The key hashes the backbone name, a fingerprint of its weights, the preprocessing and, for
every image, its path, size and modification time: change any of them and the features
are recomputed. Files are safetensors written atomically, with a checksum of the features
in their metadata; a corrupt or truncated file is detected, reported and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..io_utils import atomic_save_file


def weights_fingerprint(module: torch.nn.Module) -> str:
    """sha256 over every parameter and buffer of ``module`` (names, shapes, values)."""
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _path_of(item: Any) -> str:
    """The file path of a path-like or of an ``Item`` (anything with ``.path``)."""
    return str(getattr(item, "path", item))


def cache_key(model, paths: Sequence[Any], mixed_precision: str = "no") -> str:
    """The cache key of ``model``'s image features for ``paths`` (computed under ``mixed_precision``)."""
    entries = []
    for p in map(_path_of, paths):
        try:
            st = os.stat(p)
        except OSError as e:
            raise FileNotFoundError(f"image {p} cannot be read for the feature cache: {e.strerror}") from e
        entries.append([os.path.abspath(p), st.st_size, st.st_mtime_ns])
    payload = {
        "backbone": model.config.image_encoder,
        "colour": [model.config.colour_features, getattr(model.colour, "settings", {})],
        "weights": weights_fingerprint(model.image_encoder),
        "preprocess": model.transform(train=False).config(),
        "images": entries,
    }
    if mixed_precision != "no":  # fp16/bf16 features differ from fp32 ones; "no" keeps the old keys
        payload["mixed_precision"] = mixed_precision
    if model.config.mid_grid:  # likewise: features without the grid keep their keys
        payload["mid_grid"] = model.config.mid_grid
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _checksum(features: torch.Tensor) -> str:
    """sha256 of the feature values."""
    return hashlib.sha256(features.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()).hexdigest()


def _read(file: Path, key: str, n: int) -> torch.Tensor:
    """Read and verify a cache file; raises ``ValueError`` saying what is wrong."""
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt") as f:
            meta = f.metadata() or {}
            features = f.get_tensor("features")
    except Exception as e:  # truncated header, wrong format, missing tensor
        raise ValueError(f"unreadable ({type(e).__name__}: {e})") from e
    if meta.get("key") != key:
        raise ValueError("its key does not match its name")
    if features.dim() != 2 or features.shape[0] != n:
        raise ValueError(f"shape {tuple(features.shape)} does not fit {n} images")
    if meta.get("sha256") != _checksum(features):
        raise ValueError("checksum mismatch")
    return features


def cached_image_features(
    model, paths: Sequence[Any], cache_dir: str | Path, *, batch_size: int = 64, num_workers: int = 0,
    device: str | torch.device | None = None, mixed_precision: str = "no",
) -> torch.Tensor:
    """Backbone features ``(N, Dimg)`` of the images at ``paths`` (paths or ``Item``s), from the
    cache under ``cache_dir`` when valid, else computed with :func:`embed_images` and stored.

    A miss runs the backbone on ``device`` (the model is moved there; default: where it is)
    under ``mixed_precision`` autocast, with ``num_workers`` DataLoader workers decoding.
    The features come back float32 on the CPU.
    """
    from . import embedding

    paths = list(paths)
    key = cache_key(model, paths, mixed_precision)
    name = model.config.image_encoder.replace(":", "_").replace("/", "_")
    return _cached(Path(cache_dir) / f"{name}-{key[:24]}.safetensors", key, len(paths), lambda: embedding.embed_images(
        model, [_path_of(p) for p in paths], batch_size=batch_size, num_workers=num_workers, target=False,
        device=device, mixed_precision=mixed_precision,
    ), f"image features of {len(paths)} images ({model.config.image_encoder})")  # (N, Dimg)


def _cached(file: Path, key: str, n: int, compute, what: str) -> torch.Tensor:
    """The features in ``file`` when it is valid for ``key`` and ``n`` rows, else ``compute()``,
    stored atomically there (a corrupt file is reported and rebuilt). A computation logs
    ``[features] <what>: <seconds> s`` on stderr (the start-up benchmark reads these lines)."""
    if file.exists():
        try:
            return _read(file, key, n)
        except ValueError as e:
            warnings.warn(f"feature cache {file} is corrupt ({e}); rebuilding it", stacklevel=3)
    start = time.perf_counter()
    features = compute().contiguous()
    print(f"[features] {what}: {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    atomic_save_file({"features": features}, file,
                     metadata={"key": key, "sha256": _checksum(features), "n": str(n)})
    return features


def cached_text_features(
    model, texts: Sequence[str], cache_dir: str | Path, *, batch_size: int = 128,
    device: str | torch.device | None = None, mixed_precision: str = "no",
) -> torch.Tensor:
    """Frozen text-encoder features ``(T, Dtxt)`` of ``texts``, from a bank under ``cache_dir``:
    one file per encoder (name, options, weights, colour lexicon, precision) holding every text
    encoded so far. Texts not in it are encoded and added: distinct ones only, in batches of
    similar length (less padding than batches in the callers' order), so models trained on one
    catalogue with one frozen encoder (the embedded default's five) pay for a large encoder
    such as MiniLM once per distinct text. A miss runs the encoder on ``device`` (the model is
    moved there) under ``mixed_precision``; a corrupt bank is reported and rebuilt.
    """
    from ..devices import autocast, module_device

    texts = list(texts)
    payload = {"encoder": model.config.text_encoder, "options": model.config.text_kwargs,
               "weights": weights_fingerprint(model.text_encoder), "bank": 1}
    if mixed_precision != "no":
        payload["mixed_precision"] = mixed_precision
    if getattr(model.text_encoder, "colour_words", None) is not None:  # features depend on its lexicon
        from .words import lexicon_fingerprint

        payload["colour_lexicon"] = lexicon_fingerprint()
    key = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    name = model.config.text_encoder.replace(":", "_").replace("/", "_")
    file = Path(cache_dir) / f"text-{name}-{key[:24]}.safetensors"
    known, features = _read_bank(file, key)
    row = {t: i for i, t in enumerate(known)}
    todo = sorted({t for t in texts if t not in row}, key=lambda t: (len(t), t))  # similar lengths together
    if todo:
        dev = module_device(model.text_encoder) if device is None else torch.device(device)
        if device is not None:
            model.to(dev)  # the whole model, never split across devices
        was_training = model.text_encoder.training
        model.text_encoder.eval()
        start = time.perf_counter()
        try:
            with torch.inference_mode(), autocast(dev, mixed_precision):
                new = torch.cat([model.text_encoder(todo[i : i + batch_size]).float().cpu()
                                 for i in range(0, len(todo), batch_size)])  # (len(todo), Dtxt)
        finally:
            model.text_encoder.train(was_training)
        print(f"[features] text features of {len(todo)} texts ({model.config.text_encoder}): "
              f"{time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
        features = new if features is None else torch.cat([features, new])
        row.update((t, len(known) + i) for i, t in enumerate(todo))
        known += todo
        atomic_save_file({"features": features.contiguous()}, file, metadata={
            "key": key, "sha256": _checksum(features), "n": str(len(known)), "texts": json.dumps(known),
            "texts_sha256": hashlib.sha256(json.dumps(known).encode()).hexdigest(),
        })
    if not texts:
        return torch.empty(0, model.text_encoder.output_dim)
    return features[torch.tensor([row[t] for t in texts])]  # (T, Dtxt), in the order asked


def _read_bank(file: Path, key: str) -> tuple[list[str], torch.Tensor | None]:
    """The texts and features ``(N, Dtxt)`` of a text bank; ``([], None)`` when there is none
    (a corrupt one is reported, then rebuilt by the caller)."""
    from safetensors import safe_open

    if not file.exists():
        return [], None
    try:
        with safe_open(str(file), framework="pt") as f:
            meta = f.metadata() or {}
            features = f.get_tensor("features")
        texts = json.loads(meta["texts"])
        problem = ("its key does not match its name" if meta.get("key") != key
                   else f"{features.shape[0]} rows for {len(texts)} texts" if features.shape[0] != len(texts)
                   else "checksum mismatch" if meta.get("sha256") != _checksum(features)
                   or meta.get("texts_sha256") != hashlib.sha256(meta["texts"].encode()).hexdigest() else None)
    except Exception as e:  # truncated header, wrong format, missing tensor or texts
        problem = f"unreadable ({type(e).__name__}: {e})"
    if problem is None:
        return list(texts), features
    warnings.warn(f"feature cache {file} is corrupt ({problem}); rebuilding it", stacklevel=3)
    return [], None
