"""A query prepared once, before any model sees it.

The picture is identified (is it a catalogue item?) and, only when it is not, decoded and
checked, once; the text is cleaned once; ``k`` is validated once. Every model then answers
the same :class:`Query`: a catalogue pick reaches each Retriever as a
:class:`~fashion_retrieval.search.retriever.CatalogueImage`, whose stored backbone features are
used (no decoding, no backbone pass).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from fashion_retrieval.search.retriever import CatalogueImage
from fashion_retrieval.serving.catalogue import Catalogue

MAX_TEXT_CHARS = 500
DEFAULT_MAX_K = 50


class QueryError(ValueError):
    """Bad user input; the message is a sentence a shopper can read, shown as is."""


@dataclass(frozen=True)
class Query:
    """What every model answers: ``image`` (a decoded picture, a :class:`CatalogueImage`, or
    None), ``text`` (cleaned, or None), ``k`` (validated); ``source_id`` is the catalogue id
    of the picture when it is a catalogue item (left out of the results)."""

    image: Any
    text: str | None
    k: int
    source_id: str | None = None

    @property
    def exclude(self) -> tuple[str, ...]:
        """Ids left out of the results: the query's own catalogue picture."""
        return (self.source_id,) if self.source_id else ()

    @property
    def kind(self) -> str:
        """``composed``, ``image`` or ``text``."""
        if self.image is not None and self.text:
            return "composed"
        return "image" if self.image is not None else "text"


def _file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def clean_text(text: Any) -> str:
    """``text`` with white space collapsed; a non-string or a too long text is a QueryError."""
    if text is None:
        return ""
    if not isinstance(text, str):
        raise QueryError("The text must be a string.")
    text = " ".join(text.split())
    if len(text) > MAX_TEXT_CHARS:
        raise QueryError(f"The text is {len(text)} characters long; keep it under {MAX_TEXT_CHARS}.")
    return text


def check_k(k: Any, max_k: int) -> int:
    """``k`` as an int in 1..max_k, or a QueryError saying what is allowed."""
    try:
        value = float(k)
    except (TypeError, ValueError):
        raise QueryError(f"K must be a whole number from 1 to {max_k}, not {k!r}.") from None
    if value != value or value != int(value) or not 1 <= value <= max_k:
        raise QueryError(f"K must be a whole number from 1 to {max_k}, not {k!r}.")
    return int(value)


def decode_upload(path: Any) -> Any:
    """Decode a query picture (any mode, EXIF, size checks) to RGB PIL, or None for no picture.

    Every decoding problem (not an image, truncated, too many pixels) becomes a QueryError
    naming the file by its base name (server paths are not shown).
    """
    if path is None or path == "":
        return None
    from fashion_retrieval.data.images import load_image

    try:
        return load_image(path)
    except (ValueError, OSError) as err:
        name = os.path.basename(str(path))
        reason = str(err).replace(str(path), name).removeprefix(f"{name}: ")
        raise QueryError(f"Could not use the uploaded image {name!r}: {reason}") from None


class QueryPreparer:
    """Prepares queries against one catalogue: finds catalogue pictures by content (file size
    first, then SHA-256 of the few same-size items, each item hashed at most once)."""

    def __init__(self, catalogue: Catalogue, *, max_k: int = DEFAULT_MAX_K) -> None:
        self.catalogue = catalogue
        self.max_k = int(max_k)
        self._size_index: dict[int, list[str]] | None = None
        self._digests: dict[str, str] = {}
        self._lock = threading.Lock()

    def identify(self, path: Any) -> str | None:
        """The catalogue id of an image file with the same bytes, or None.

        Web front ends copy the files they serve, so a picked catalogue picture arrives as
        another path with the same bytes.
        """
        if not isinstance(path, (str, os.PathLike)) or not path or not os.path.isfile(path):
            return None
        with self._lock:
            if self._size_index is None:
                index: dict[int, list[str]] = defaultdict(list)
                for it in self.catalogue.items:
                    try:
                        index[os.path.getsize(it.path)].append(it.id)
                    except OSError:
                        continue
                self._size_index = index
            candidates = self._size_index.get(os.path.getsize(path), [])
        if not candidates:
            return None
        digest = _file_digest(str(path))
        for item_id in candidates:
            known = self._digests.get(item_id)
            if known is None:
                known = self._digests[item_id] = _file_digest(self.catalogue.by_id[item_id].path)
            if known == digest:
                return item_id
        return None

    def prepare(self, image: Any, text: Any, k: Any, *, allow_text: bool = True) -> Query:
        """The :class:`Query` of a picture (a file path, or None), a text and ``k``.

        A picture that is a catalogue item becomes a :class:`CatalogueImage` (never decoded);
        any other is decoded and checked here. Raises :class:`QueryError` for bad input.
        """
        k = check_k(k, self.max_k)
        text = clean_text(text) if allow_text else ""
        source_id = self.identify(image) if image is not None and image != "" else None
        if source_id is not None:
            picture: Any = CatalogueImage(source_id, self.catalogue.by_id[source_id].path)
        else:
            picture = decode_upload(image)
        if picture is None and not text:
            raise QueryError("Give a picture, a description, or both.")
        return Query(picture, text or None, k, source_id)
