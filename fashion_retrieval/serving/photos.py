"""Any folder of photos as a catalogue: JPEG, PNG and WebP files, nested folders, no captions.

``scan_photo_folder(root)`` walks the folder in a fixed order and makes one gallery item per
readable photo: its id is the path relative to ``root`` (POSIX slashes, so ids are the same
on every machine and across restarts), its category the first folder under ``root``
("photos" for files at the top), its caption empty. Hidden files and folders and the
project's own index folders are skipped; unreadable photos are listed (relative path,
reason) for the log and the UI, never indexed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fashion_retrieval.data.records import Item

PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
TOP_CATEGORY = "photos"  # the category of files directly under the root
SHOWN_UNREADABLE = 10  # unreadable files named in the one log line (all are kept in the scan)


@dataclass(frozen=True)
class PhotoScan:
    """What a scan found: the readable photos as items, and the unreadable ones with why."""

    root: Path
    items: list[Item]
    unreadable: list[tuple[str, str]] = field(default_factory=list)

    def unreadable_line(self) -> str:
        """One line naming the skipped files (the first few) and how many there are."""
        if not self.unreadable:
            return ""
        shown = "; ".join(f"{p} ({why})" for p, why in self.unreadable[:SHOWN_UNREADABLE])
        more = len(self.unreadable) - SHOWN_UNREADABLE
        extra = f"; and {more} more" if more > 0 else ""
        return f"skipped {len(self.unreadable)} unreadable photo(s) in {self.root}: {shown}{extra}"


def is_photo(name: str) -> bool:
    """Whether a file name has a photo extension (case-insensitive) and is not hidden."""
    return not name.startswith(".") and name.lower().endswith(PHOTO_EXTENSIONS)


def _is_index_folder(path: Path) -> bool:
    """A folder the project wrote: a gallery index (``index.faiss``) or the cache home."""
    from fashion_retrieval.paths import fashion_home
    from fashion_retrieval.search.index import INDEX_FILE

    if (path / INDEX_FILE).is_file():
        return True
    try:
        return path.resolve() == fashion_home().resolve()
    except OSError:
        return False


def _walk(root: Path) -> list[str]:
    """Relative POSIX paths of every photo file under ``root``, sorted; hidden folders,
    index folders and symlinked folders (no cycles) are not entered."""
    found: list[str] = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = sorted(
            d for d in dirs
            if not d.startswith(".") and d != "__pycache__" and not _is_index_folder(here / d)
        )
        rel = here.relative_to(root)
        found.extend((rel / f).as_posix() for f in files if is_photo(f))
    return sorted(found)


def check_photo(path: str | os.PathLike) -> str | None:
    """Why the photo at ``path`` cannot be used (the loader's reason), or None when it decodes."""
    from fashion_retrieval.data.images import ImageLoadError, load_image

    try:
        load_image(path)
    except ImageLoadError as err:
        reason = str(err)
        prefix = f"{path}: "
        return reason[len(prefix):] if reason.startswith(prefix) else reason
    return None


def scan_cache_path(root: str | os.PathLike, home: str | os.PathLike | None = None) -> Path:
    """Where the scan of a photo folder records the photos that decoded:
    ``<home>/photo_scans/<gallery key of the folder>.json``."""
    from fashion_retrieval.paths import fashion_home, gallery_key

    folder = Path(root).expanduser().resolve()
    return fashion_home(home) / "photo_scans" / f"{gallery_key(str(folder))}.json"


def _read_cache(cache: str | os.PathLike | None, folder: Path) -> dict[str, tuple[int, int]]:
    """Stamps of photos that decoded in an earlier scan of ``folder`` ({} when none or damaged)."""
    if cache is None:
        return {}
    try:
        data = json.loads(Path(cache).read_text(encoding="utf-8"))
        if data.get("root") != str(folder):
            return {}
        return {str(k): (int(v[0]), int(v[1])) for k, v in data["readable"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError):
        return {}


def _write_cache(cache: str | os.PathLike, folder: Path, readable: dict[str, tuple[int, int]]) -> None:
    """Record the stamps of the photos that decoded (atomically; a failed write is ignored)."""
    from fashion_retrieval.io_utils import atomic_write_json

    try:
        atomic_write_json(cache, {"root": str(folder), "readable": readable}, indent=0)
    except OSError:  # a read-only cache folder only costs the next scan its decode checks
        pass


def scan_photo_folder(
    root: str | os.PathLike,
    *,
    known: Mapping[str, tuple[int, int]] | None = None,
    cache: str | os.PathLike | None = None,
    log: Callable[[str], None] | None = None,
) -> PhotoScan:
    """Every readable photo under ``root`` as an :class:`Item`, in a deterministic order.

    Each photo is decoded once to check it (``load_image``), except those whose
    ``(size, mtime_ns)`` equals ``known[id]`` (e.g.
    :func:`~fashion_retrieval.search.gallery_store.stored_stamps` of a gallery store that indexed
    them: they decoded then) or the stamp recorded in ``cache``, a JSON file this scan reads
    and rewrites (the stamps of the photos that decoded). Unreadable photos are left out and
    listed in ``PhotoScan.unreadable``; ``log`` (when given) receives one line naming them.

    Raises ``FileNotFoundError`` for a missing folder and ``ValueError`` naming the folder
    when it holds no photo, or only unreadable ones.
    """
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"photo folder {folder} does not exist or is not a folder")
    folder = folder.resolve()
    names = _walk(folder)
    if not names:
        raise ValueError(
            f"the photo folder {folder} holds no photo ({', '.join(PHOTO_EXTENSIONS)} files, "
            "hidden ones skipped)"
        )
    known = {**_read_cache(cache, folder), **(known or {})}
    checked: dict[str, tuple[int, int]] = {}
    items: list[Item] = []
    unreadable: list[tuple[str, str]] = []
    for rel in names:
        path = folder / rel
        try:
            st = path.stat()
        except OSError as err:
            unreadable.append((rel, f"cannot read file ({err.strerror or err})"))
            continue
        if known.get(rel) != (st.st_size, st.st_mtime_ns):
            reason = check_photo(path)
            if reason is not None:
                unreadable.append((rel, reason))
                continue
        checked[rel] = (st.st_size, st.st_mtime_ns)
        top, sep, _ = rel.partition("/")
        items.append(Item(rel, str(path), "", top if sep else TOP_CATEGORY))
    scan = PhotoScan(folder, items, unreadable)
    if cache is not None:
        _write_cache(cache, folder, checked)
    if unreadable and log is not None:
        log(scan.unreadable_line())
    if not items:
        raise ValueError(
            f"the photo folder {folder} holds no readable photo: {scan.unreadable_line()}"
        )
    return scan
