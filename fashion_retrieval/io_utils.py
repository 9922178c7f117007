"""Atomic writes: a reader never sees a half-written file or folder, and a crash keeps the old one.

Every file writer goes through a temporary file in the destination's folder (same file
system, so the final ``os.replace`` is atomic), flushed and fsync'ed before the rename; a
folder written beside its destination is swapped in by :func:`swap_dir_into_place`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: str | Path, write: Callable[[Path], None], *, fsync: bool = True) -> Path:
    """Call ``write(tmp_path)`` on a temporary sibling of ``path``, then rename it into place.

    ``fsync=False`` skips the flush to disk (files that can be made again, e.g. rendered
    images: a crash may lose them, never half-write them).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        if fsync:
            with open(tmp, "rb") as f:  # fsync so the rename never exposes unwritten data
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes, *, fsync: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data), fsync=fsync)


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; returns the path."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding=encoding))


def atomic_write_json(path: str | Path, obj: Any, *, indent: int = 2) -> Path:
    """Serialise ``obj`` as JSON (sorted keys kept as given) and write it atomically."""
    text = json.dumps(obj, indent=indent, ensure_ascii=False) + "\n"
    return atomic_write_text(path, text)


def swap_dir_into_place(new: str | Path, dest: str | Path) -> None:
    """Replace folder ``dest`` by ``new`` (a sibling); the old folder is removed only after the rename."""
    new, dest = Path(new), Path(dest)
    if not dest.exists():
        os.replace(new, dest)
        return
    old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
    os.replace(dest, old)
    try:
        os.replace(new, dest)
    except BaseException:
        os.replace(old, dest)  # put the previous good folder back
        raise
    shutil.rmtree(old, ignore_errors=True)


def atomic_save_file(
    tensors: dict[str, Any], path: str | Path, metadata: dict[str, str] | None = None
) -> Path:
    """Save a dict of tensors as safetensors atomically (``safetensors.torch.save_file``)."""
    from safetensors.torch import save_file

    contiguous = {k: v.contiguous() for k, v in tensors.items()}
    return atomic_write(path, lambda tmp: save_file(contiguous, str(tmp), metadata=metadata))


def replace_marked_block(path: str | Path, body: str, start: str, end: str) -> None:
    """Put ``body`` between the ``start`` and ``end`` marker lines of a text file (atomically);
    the block is appended at the end when the markers are absent (a missing file is created)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    block = f"{start}\n{body}\n{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + block + "\n"
    atomic_write_text(path, text)
