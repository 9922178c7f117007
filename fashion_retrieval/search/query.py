"""A query as every model answers it, and the one set of rules that makes one.

:func:`make_query` checks ``k`` once, cleans the text once and decodes and checks the
picture once (a :class:`CatalogueImage` is not decoded: each Retriever uses its stored
features). ``Retriever.search``/``search_batch`` make their queries here, and so does the
serving layer (``serving/query.py``, which also recognises catalogue pictures by their
bytes). Bad input is a :class:`QueryError` whose message a shopper can read.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_TEXT_CHARS = 500
NO_QUERY = "Give a picture, a description, or both."


class QueryError(ValueError):
    """Bad query input; the message is a sentence a shopper can read, shown as is."""


@dataclass(frozen=True)
class CatalogueImage:
    """A query picture that is a gallery item: its stored backbone features are used, so it
    is neither decoded nor passed through the backbone (``path`` is decoded only when a
    Retriever stored no features for it)."""

    id: str
    path: str = ""


@dataclass(frozen=True)
class Query:
    """What every model answers: ``image`` (a decoded RGB picture, a :class:`CatalogueImage`
    or None), ``text`` (cleaned, or None), ``k``; ``exclude``: ids left out of the results;
    ``source_id``: the picture's catalogue id when it is a catalogue item."""

    image: Any
    text: str | None
    k: int
    source_id: str | None = None
    exclude: tuple[str, ...] = ()


def clean_text(text: Any) -> str:
    """``text`` with white space collapsed ("" for None); a non-string or a too long text is
    a QueryError."""
    if text is None:
        return ""
    if not isinstance(text, str):
        raise QueryError(f"The text must be a string, not {type(text).__name__}.")
    text = " ".join(text.split())
    if len(text) > MAX_TEXT_CHARS:
        raise QueryError(f"The text is {len(text)} characters long; keep it under {MAX_TEXT_CHARS}.")
    return text


def check_k(k: Any, max_k: int | None = None) -> int:
    """``k`` as an int from 1 (to ``max_k`` when given), or a QueryError saying what is allowed.
    A whole float (a slider's 4.0) is fine; a string or a bool is not. A Retriever clips a
    ``k`` above its gallery's size to that size."""
    if not (
        isinstance(k, numbers.Real) and not isinstance(k, bool) and math.isfinite(k)
        and k == int(k) and k >= 1 and (max_k is None or k <= max_k)
    ):
        allowed = f"from 1 to {max_k}" if max_k is not None else "of at least 1"
        raise QueryError(f"K must be a whole number {allowed}, not {k!r}.")
    return int(k)


def decode_picture(image: Any) -> Any:
    """A query picture (a path, bytes, PIL, numpy, a file) as RGB PIL (any mode, EXIF, size
    checks); a :class:`CatalogueImage` as it is; None for None or "". A picture that cannot
    be used is a QueryError naming its file by its base name (server paths are not shown)."""
    if image is None or isinstance(image, CatalogueImage) or (isinstance(image, str) and not image):
        return image or None
    from fashion_retrieval.data.images import load_image

    try:
        return load_image(image)
    except (ValueError, OSError, TypeError) as err:
        if not isinstance(image, (str, os.PathLike)):
            raise QueryError(f"Could not use the picture: {err}") from None
        path, name = str(Path(image)), os.path.basename(image)
        reason = str(err).removeprefix(f"{path}: ").replace(path, name)
        raise QueryError(f"Could not use the picture {name!r}: {reason}") from None


def make_query(
    image: Any, text: Any, k: Any, *, max_k: int | None = None, exclude: Iterable[str] = (),
    source_id: str | None = None,
) -> Query:
    """The :class:`Query` of a picture, a text and ``k`` under the rules above; ``exclude``
    (and ``source_id``, the picture's own catalogue id) are left out of its results."""
    k = check_k(k, max_k)
    text = clean_text(text) or None
    picture = decode_picture(image)
    if picture is None and text is None:
        raise QueryError(NO_QUERY)
    return Query(picture, text, k, source_id, (*([source_id] if source_id else []), *exclude))
