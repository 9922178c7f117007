"""Assemble the Hugging Face Space folder and upload it.

``python -m fashion_retrieval.demo.space --out DIR [--with-default] [--dry-run] [--repo-id USER/NAME]``
writes ``DIR`` = the files of ``hf_space/`` (README.md with the Space header, app.py,
requirements.txt) plus copies of the ``fashion_retrieval`` package and of ``training/configs``
(the recipes it reads), so the Space needs nothing else; then, unless ``--dry-run``, creates the Space repo (sdk gradio) and uploads
the folder with huggingface_hub.

``--with-default`` also puts the built embedded default in ``DIR/default`` (built first if
absent): its checkpoints without the weights the Space's pip packages give (the frozen
encoders, rebuilt and checked at install), its gallery's images and the models' stored
gallery rows, no training files. The Space's app.py installs it into an empty home at start
(:func:`install_bundled_default`), so a fresh Space serves without training or embedding.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import fashion_retrieval

SPACE_FILES = ("README.md", "app.py", "requirements.txt")
REQUIRED_HEADER = ("title", "sdk", "sdk_version", "app_file")
BUNDLE_FILE = "BUNDLE.json"  # in <space>/default: the models and the gallery images' hashes
BUNDLED_INDEX = "bundled"  # a model's stored rows in the bundle, re-keyed when installed
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
SHARED_WEIGHTS = "shared.safetensors"  # in the bundle: tensors every model holds alike, once
GALLERY_FEATURES = "gallery_features"  # in the bundle: the gallery's backbone rows, once per backbone
EMBEDDINGS = "embeddings.npy"  # in a model's bundled index: its gallery embeddings


def package_dir() -> Path:
    """The folder of the installed ``fashion_retrieval`` package."""
    return Path(fashion_retrieval.__file__).resolve().parent


def space_template_dir() -> Path:
    """The repository's ``hf_space/`` folder (beside the package in a source checkout)."""
    path = package_dir().parent / "hf_space"
    if not path.is_dir():
        raise FileNotFoundError(
            f"{path} not found: assemble the Space from a source checkout of the project "
            "(pip install -e .), where hf_space/ sits beside fashion_retrieval/"
        )
    return path


def read_header(readme: Path) -> dict[str, str]:
    """The ``key: value`` pairs of a README's YAML front matter (between ``---`` lines)."""
    lines = readme.read_text(encoding="utf-8").splitlines()
    if not lines or lines[0].strip() != "---" or "---" not in [s.strip() for s in lines[1:]]:
        raise ValueError(f"{readme}: line 1 must open a '---' YAML header, closed by another '---'")
    end = [s.strip() for s in lines[1:]].index("---") + 1
    header = {}
    for number, line in enumerate(lines[1:end], start=2):
        key, sep, value = line.partition(":")
        if not sep:
            raise ValueError(f"{readme}:{number}: expected 'key: value', got {line!r}")
        header[key.strip()] = value.strip()
    return header


def assemble_space(out: str | Path, *, template: str | Path | None = None) -> Path:
    """Write the self-contained Space folder to ``out`` (replacing what was there)."""
    src = Path(template) if template is not None else space_template_dir()
    out = Path(out)
    for name in SPACE_FILES:
        if not (src / name).is_file():
            raise FileNotFoundError(f"the Space template {src} lacks {name}")
    header = read_header(src / "README.md")
    missing = [key for key in REQUIRED_HEADER if key not in header]
    if missing or header.get("sdk") != "gradio":
        raise ValueError(f"{src / 'README.md'}: the header needs sdk: gradio and {', '.join(REQUIRED_HEADER)}; missing {missing}")
    if out.exists():
        if out.resolve() in (src.resolve(), package_dir().parent.resolve()):
            raise ValueError(f"refusing to overwrite {out}: choose an empty output folder")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name in SPACE_FILES:
        shutil.copy2(src / name, out / name)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")
    shutil.copytree(package_dir(), out / "fashion_retrieval", ignore=skip)
    # the training configs the package reads (the default's recipe), where it looks for them
    shutil.copytree(package_dir().parent / "training" / "configs", out / "training" / "configs", ignore=skip)
    return out


def upload_space(
    folder: str | Path,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = False,
    variables: dict[str, str] | None = None,
) -> str:
    """Create (if needed) the Space ``repo_id`` and upload ``folder``; returns its URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    url = api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
    for key, value in (variables or {}).items():
        api.add_space_variable(repo_id, key, value)
    api.upload_folder(
        folder_path=str(folder), repo_id=repo_id, repo_type="space",
        commit_message="Update the fashion retrieval demo",
    )
    return str(url)


def _place(src: Path, dst: Path) -> None:
    """Hard-link ``src`` at ``dst`` where the file system allows, else copy it (the project
    replaces files atomically, never in place, so a link is never written through)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _fresh_state(checkpoint: Path, seed: int) -> dict[str, Any]:
    """The state dict of a fresh build of ``checkpoint``'s config with pretrained weights
    (the frozen encoders' weights come from the installed packages)."""
    import dataclasses

    import torch

    from fashion_retrieval.models.retrieval import ModelConfig, RetrievalModel

    config = ModelConfig.from_dict(json.loads((checkpoint / "config.json").read_text(encoding="utf-8")))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return RetrievalModel(dataclasses.replace(config, pretrained=True)).state_dict()


def _fingerprints(tensors: dict[str, Any]) -> dict[str, str]:
    """sha256 of ``tensors`` by the module that holds them (``text_encoder``, ...)."""
    from safetensors.torch import save

    parts: dict[str, dict[str, Any]] = {}
    for key, t in tensors.items():
        parts.setdefault(key.split(".")[0], {})[key] = t.detach().clone().contiguous()
    return {part: hashlib.sha256(save(group)).hexdigest() for part, group in sorted(parts.items())}


def _bundle_weights(weights: dict[str, Path], dest: Path) -> dict[str, dict[str, str]]:
    """Write each model's weights file (by folder relative to ``dest``) without the tensors
    a fresh pretrained build gives alike under two seeds (the frozen encoders, from pip
    packages); of the rest, those every model holds alike go once to ``SHARED_WEIGHTS``.
    Returns each model's fingerprints of the omitted tensors."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from fashion_retrieval.checkpoints import WEIGHTS_FILE

    loaded = {rel: load_file(path) for rel, path in weights.items()}
    omitted = {}
    for rel, tensors in loaded.items():
        gone: dict[str, Any] = {}
        if json.loads((weights[rel].parent / "config.json").read_text(encoding="utf-8")).get("pretrained"):
            fresh = [_fresh_state(weights[rel].parent, seed) for seed in (0, 1)]
            gone = {k: t for k, t in tensors.items() if all(
                k in f and f[k].dtype == t.dtype and f[k].shape == t.shape and torch.equal(f[k], t) for f in fresh)}
        omitted[rel] = _fingerprints(gone)
        loaded[rel] = {k: t for k, t in tensors.items() if k not in gone}
    first = next(iter(loaded.values()))

    def alike(key: str, t: Any) -> bool:
        return all(key in o and o[key].shape == t.shape and torch.equal(o[key], t) for o in loaded.values())

    shared = {k: t for k, t in first.items() if alike(k, t)} if len(loaded) > 1 else {}
    save_file(shared, dest / SHARED_WEIGHTS)
    for rel, tensors in loaded.items():
        with safe_open(weights[rel], "pt") as f:
            metadata = f.metadata()
        save_file({k: t for k, t in tensors.items() if k not in shared}, dest / rel / WEIGHTS_FILE, metadata)
    return omitted


def _unbundle_weights(src: Path, rel: str, dest: Path, omitted: dict[str, str], verified: dict) -> None:
    """A model's full weights file at ``dest/rel``: its bundled part, the shared tensors, and
    the omitted ones rebuilt from the installed packages (their fingerprints checked), or
    taken from ``verified`` ({(part, fingerprint): tensors}, filled here) when built already."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from fashion_retrieval.checkpoints import WEIGHTS_FILE

    with safe_open(src / rel / WEIGHTS_FILE, "pt") as f:
        metadata = f.metadata()
    tensors = {**load_file(src / SHARED_WEIGHTS), **load_file(src / rel / WEIGHTS_FILE)}
    if omitted and all(part in verified for part in omitted.items()):
        tensors.update(t for part in omitted.items() for t in verified[part].items())
    elif omitted:
        rebuilt = {k: t for k, t in _fresh_state(src / rel, 0).items() if k not in tensors}
        got = _fingerprints(rebuilt)
        bad = sorted(part for part in {*got, *omitted} if got.get(part) != omitted.get(part))
        if bad:
            config = json.loads((src / rel / "config.json").read_text(encoding="utf-8"))
            names = ", ".join(f"{part} ({config[part]})" if isinstance(config.get(part), str) else part
                              for part in bad)
            raise ValueError(
                f"the default bundled in {src} does not fit the installed packages: {rel}'s {names} "
                "weights rebuilt from them differ from those it was trained with (another package "
                "version?); bundle the default again with these packages (python -m "
                "fashion_retrieval.demo.space --with-default), or remove default/ from the Space "
                "folder to build the default at start")
        tensors.update(rebuilt)
        verified.update({(p, h): {k: t for k, t in rebuilt.items() if k.split(".")[0] == p} for p, h in got.items()})
    save_file(tensors, dest / rel / WEIGHTS_FILE, metadata)


def folder_bytes(folder: str | Path) -> int:
    """The total size of the files under ``folder``."""
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())


def bundle_default(out: str | Path, home: str | Path | None = None, spec: Any = None, *, log: Any = print) -> Path:
    """Put what serving the embedded default needs in ``out/default`` (built first if absent).

    Kept: the build marker, the catalogue's metadata and gallery images, each model's
    checkpoint and stored gallery rows (backbone features once per backbone, embeddings per
    model). Left out: the training split's images, the backbone feature cache, optimizer
    states, the faiss files (rebuilt from the stored rows at install, without the backbone)
    and the weights a pretrained build gives (fingerprinted, rebuilt at install).
    """
    from fashion_retrieval.checkpoints import WEIGHTS_FILE
    from fashion_retrieval.io_utils import atomic_write_json
    from fashion_retrieval.paths import default_dir, index_dir_for
    from fashion_retrieval.search.gallery_store import STORE_META, GalleryStore
    from fashion_retrieval.serving.default import (
        MARKER,
        DefaultSpec,
        default_catalogue,
        default_checkpoints,
    )

    spec = spec or DefaultSpec()
    checkpoints = default_checkpoints(home, spec, log=log)  # builds the default if absent
    root, dest = default_dir(home), default_dir(out)
    catalogue = default_catalogue(home, spec)
    gallery = {Path(it.path).resolve() for it in catalogue.items}
    for f in sorted((root / "data").rglob("*")):
        if f.is_file() and (f.suffix.lower() not in IMAGE_SUFFIXES or f.resolve() in gallery):
            _place(f, dest / f.relative_to(root))
    models = {}
    for name, checkpoint in checkpoints.items():
        models[name] = rel = checkpoint.relative_to(root).as_posix()
        for f in checkpoint.rglob("*"):
            if f.is_file() and f.relative_to(checkpoint).parts[0] not in ("index", WEIGHTS_FILE):
                _place(f, dest / rel / f.relative_to(checkpoint))
        store = GalleryStore.load(index_dir_for(checkpoint, catalogue.key, home))
        array = store.features  # the backbone's rows: alike in the models that share it, stored once
        features = hashlib.sha256(f"{array.dtype}{array.shape}".encode() + array.tobytes()).hexdigest()[:16]
        if not (dest / GALLERY_FEATURES / f"{features}.npy").is_file():
            (dest / GALLERY_FEATURES).mkdir(parents=True, exist_ok=True)
            np.save(dest / GALLERY_FEATURES / f"{features}.npy", array)
        bundled = dest / rel / "index" / BUNDLED_INDEX
        bundled.mkdir(parents=True, exist_ok=True)
        np.save(bundled / EMBEDDINGS, store.embeddings)
        atomic_write_json(bundled / STORE_META, {"key": store.key, "ids": store.ids, "features": features}, indent=0)
    omitted = _bundle_weights({rel: root / rel / WEIGHTS_FILE for rel in models.values()}, dest)
    images = {it.id: _sha256(it.path) for it in catalogue.items}
    atomic_write_json(dest / BUNDLE_FILE, {"models": models, "omitted": omitted, "images": images}, indent=0)
    shutil.copy2(root / MARKER, dest / MARKER)
    log(f"[space] bundled the default ({len(models)} models, {len(images)} gallery images, "
        f"{folder_bytes(dest) / 1e6:.1f} MB) in {dest}")
    return dest


def install_bundled_default(
    space_dir: str | Path, home: str | Path | None = None, spec: Any = None, *, log: Any = print
) -> bool:
    """Install the default bundled in ``space_dir/default`` into ``home`` (replacing what is
    there), unless the bundle is of another spec or already installed; returns whether it did.

    Files are hard-linked where possible, else copied; each model's weights file is joined
    from its own tensors, the shared ones and those rebuilt from the installed packages (a
    ``ValueError`` naming the encoder when their fingerprint differs). Each model's stored
    rows go to the index folder of the installed catalogue, stamped with the installed
    images whose bytes match the bundled hashes (any other image is embedded again), so
    serving it trains and embeds nothing: it only indexes the stored rows.
    """
    from fashion_retrieval.checkpoints import WEIGHTS_FILE
    from fashion_retrieval.paths import default_dir, index_dir_for
    from fashion_retrieval.search.gallery_store import STORE_META, GalleryStore, file_stamp
    from fashion_retrieval.serving.default import (
        MARKER,
        DefaultSpec,
        default_catalogue,
        is_complete,
    )

    spec = spec or DefaultSpec()
    src, dest = default_dir(space_dir), default_dir(home)
    if not (src / BUNDLE_FILE).is_file():
        return False
    if not is_complete(space_dir, spec):
        log(f"[space] the default bundled in {src} has another spec: not used")
        return False
    if (dest / MARKER).is_file() and (dest / MARKER).read_bytes() == (src / MARKER).read_bytes():
        return False  # this very build is installed already
    t0 = time.perf_counter()
    shutil.rmtree(dest, ignore_errors=True)  # an unfinished build, or another spec's
    for f in sorted(src.rglob("*")):
        parts = f.relative_to(src).parts
        if f.is_file() and f.name not in (MARKER, BUNDLE_FILE, SHARED_WEIGHTS, WEIGHTS_FILE) and not (
                parts[0] == GALLERY_FEATURES or BUNDLED_INDEX in parts):
            _place(f, dest / f.relative_to(src))
    bundle = json.loads((src / BUNDLE_FILE).read_text(encoding="utf-8"))
    verified: dict = {}  # the models share their encoders: each is rebuilt and checked once
    for rel in bundle["models"].values():
        _unbundle_weights(src, rel, dest, bundle["omitted"][rel], verified)
    catalogue = default_catalogue(home, spec)
    stamps = {it.id: list(file_stamp(it.path)) if bundle["images"].get(it.id) == _sha256(it.path)
              else [str(it.path), -1, -1] for it in catalogue.items}
    features: dict[str, Any] = {}
    for rel in bundle["models"].values():
        bundled = src / rel / "index" / BUNDLED_INDEX
        meta = json.loads((bundled / STORE_META).read_text(encoding="utf-8"))
        if meta["features"] not in features:
            features[meta["features"]] = np.load(src / GALLERY_FEATURES / f"{meta['features']}.npy")
        index = index_dir_for(dest / rel, catalogue.key, home)
        shutil.rmtree(index, ignore_errors=True)
        GalleryStore(meta["key"], meta["ids"], [tuple(stamps.get(i, ("", -1, -1))) for i in meta["ids"]],
                     features[meta["features"]], np.load(bundled / EMBEDDINGS)).save(index)
    shutil.copy2(src / MARKER, dest / MARKER)  # last: marks a complete install
    log(f"[space] installed the bundled default in {dest} ({time.perf_counter() - t0:.1f} s)")
    return True


def main(argv: Sequence[str] | None = None) -> Any:
    """CLI: assemble the Space folder, then upload it unless --dry-run."""
    p = argparse.ArgumentParser(prog="python -m fashion_retrieval.demo.space", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder to write the Space into (replaced)")
    p.add_argument("--repo-id", help="the Space to create/update, e.g. USER/fashion-retrieval")
    p.add_argument("--dry-run", action="store_true", help="only write the folder")
    p.add_argument("--private", action="store_true", help="create the Space as private")
    p.add_argument("--token", default=None, help="Hub token (default: the logged-in one / $HF_TOKEN)")
    p.add_argument("--checkpoints", default=None,
                   help="comma-separated checkpoint repo ids, stored as the Space variable FASHION_RETRIEVAL_CHECKPOINTS")
    p.add_argument("--with-default", action="store_true",
                   help="bundle the built embedded default (built first if absent), so the Space never builds")
    p.add_argument("--default-spec", default=None, metavar="JSON_OR_FILE",
                   help="fields of the embedded default to change, as for python app.py (with --with-default)")
    p.add_argument("--home", default=None, help="cache folder holding the default (default: $FASHION_RETRIEVAL_HOME)")
    args = p.parse_args(argv)
    if not args.dry_run and not args.repo_id:
        p.error("--repo-id is required unless --dry-run")
    if args.default_spec and not args.with_default:
        p.error("--default-spec needs --with-default")
    spec = None
    if args.with_default:
        from fashion_retrieval.serving.default import DefaultSpec

        try:
            spec = DefaultSpec.from_overrides(args.default_spec)
        except (ValueError, TypeError) as err:
            p.error(f"--default-spec: {err}")
    folder = assemble_space(args.out)
    if spec is not None:
        bundle_default(folder, args.home, spec)
    files = sum(1 for f in folder.rglob("*") if f.is_file())
    print(f"assembled the Space in {folder} ({files} files, {folder_bytes(folder) / 1e6:.1f} MB)")
    if args.dry_run:
        return folder
    variables = {"FASHION_RETRIEVAL_CHECKPOINTS": args.checkpoints} if args.checkpoints else None
    url = upload_space(folder, args.repo_id, token=args.token, private=args.private, variables=variables)
    print(f"uploaded to {url}")
    return url


if __name__ == "__main__":
    main()
