"""Small helpers shared by tests: tiny stand-in images, data layouts and a Hub client double."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
from PIL import Image


def solid_image(
    size: int = 32, color: tuple[int, int, int] = (200, 30, 30), mode: str = "RGB"
) -> Image.Image:
    """A ``size`` x ``size`` image of one colour, in ``mode``."""
    return Image.new("RGB", (size, size), color).convert(mode)


def write_standin_images(
    root: str | os.PathLike,
    ids: Iterable[str],
    size: int = 32,
    ext: str = ".png",
    link: bool = False,
) -> list[Path]:
    """Write a small image for every id under ``root`` (ids may contain sub-folders).

    Each image gets a colour derived from its position, so images differ. With
    ``link=True`` one image is written and hard-linked to every name: thousands of
    files in well under a second (they all look the same).
    """
    root = Path(root)
    paths, first = [], None
    for i, image_id in enumerate(ids):
        path = root / f"{image_id}{ext}" if not Path(image_id).suffix else root / image_id
        path.parent.mkdir(parents=True, exist_ok=True)
        if link and first is not None:
            os.link(first, path)
        else:
            rng = np.random.default_rng(i)
            color = tuple(int(c) for c in rng.integers(0, 256, size=3))
            Image.new("RGB", (size, size), color).save(path)
            first = path
        paths.append(path)
    return paths


def link_fashioniq_annotations(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Make ``dst`` a FashionIQ root whose captions/ and image_splits/ point at ``src``'s."""
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("captions", "image_splits"):
        (dst / name).symlink_to(Path(src) / name, target_is_directory=True)
    return dst


HUB = "https://huggingface.co"


def _repo_url(repo_id: str, repo_type: str | None) -> str:
    prefix = {"space": "spaces/", "dataset": "datasets/"}.get(repo_type or "model", "")
    return f"{HUB}/{prefix}{repo_id}"


def autospec_hf_api(monkeypatch: Any) -> mock.MagicMock:
    """Replace ``huggingface_hub.HfApi`` with an autospec of the real class; returns the class mock.

    Only the network is faked: a keyword (or argument) that the installed client's
    ``HfApi(...)``, ``create_repo``, ``upload_folder`` or ``add_space_variable`` does not take
    raises ``TypeError``, and each returns the real type (``RepoUrl``, ``CommitInfo``,
    ``dict[str, SpaceVariable]``). The client is ``mock.return_value``; every call is in
    ``mock.mock_calls``.
    """
    import huggingface_hub
    from huggingface_hub import CommitInfo, HfApi, RepoUrl, SpaceVariable

    cls = mock.create_autospec(HfApi)
    api = cls.return_value

    def create_repo(repo_id, *, repo_type=None, **_):
        return RepoUrl(_repo_url(repo_id, repo_type))

    def upload_folder(*, repo_id, folder_path, repo_type=None, commit_message=None, **_):
        files = sorted(p.name for p in Path(folder_path).iterdir())  # a missing folder fails here
        oid = hashlib.sha1(repr(files).encode()).hexdigest()
        return CommitInfo(commit_url=f"{_repo_url(repo_id, repo_type)}/commit/{oid}",
                          commit_message=commit_message or "", commit_description="", oid=oid)

    def add_space_variable(repo_id, key, value, *, description=None, **_):
        return {key: SpaceVariable(key, {"value": value, "description": description})}

    api.create_repo.side_effect = create_repo
    api.upload_folder.side_effect = upload_folder
    api.add_space_variable.side_effect = add_space_variable
    monkeypatch.setattr(huggingface_hub, "HfApi", cls)
    return cls


def top_modules_after_loading(checkpoint: str | os.PathLike, use: str, names: tuple[str, ...]) -> list[str]:
    """The top-level packages among ``names`` that a fresh Python process has imported after
    ``load_model(checkpoint)`` and the statement ``use`` (which may read the model as ``m``)."""
    import json
    import subprocess
    import sys

    code = (
        "import json, sys, torch\n"
        "from fashion_retrieval.checkpoints import load_model\n"
        f"m = load_model({str(checkpoint)!r})\n"
        f"with torch.no_grad(): {use}\n"
        f"print(json.dumps(sorted({{k.split('.')[0] for k in sys.modules}} & set({list(names)!r}))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])
