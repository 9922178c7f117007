"""Assemble the Hugging Face Space folder and upload it.

``python -m fashion_retrieval.demo.space --out DIR [--dry-run] [--repo-id USER/NAME]``
writes ``DIR`` = the files of ``hf_space/`` (README.md with the Space header, app.py,
requirements.txt) plus a copy of the ``fashion_retrieval`` package, so the Space needs
nothing else; then, unless ``--dry-run``, creates the Space repo (sdk gradio) and uploads
the folder with huggingface_hub.
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import fashion_retrieval

SPACE_FILES = ("README.md", "app.py", "requirements.txt")
REQUIRED_HEADER = ("title", "sdk", "sdk_version", "app_file")


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
    shutil.copytree(
        package_dir(), out / "fashion_retrieval",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"),
    )
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
    args = p.parse_args(argv)
    if not args.dry_run and not args.repo_id:
        p.error("--repo-id is required unless --dry-run")
    folder = assemble_space(args.out)
    files = sum(1 for f in folder.rglob("*") if f.is_file())
    print(f"assembled the Space in {folder} ({files} files)")
    if args.dry_run:
        return folder
    variables = {"FASHION_RETRIEVAL_CHECKPOINTS": args.checkpoints} if args.checkpoints else None
    url = upload_space(folder, args.repo_id, token=args.token, private=args.private, variables=variables)
    print(f"uploaded to {url}")
    return url


if __name__ == "__main__":
    main()
