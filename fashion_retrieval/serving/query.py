"""Queries from UI input, prepared once before any model sees them.

The rules (``k``, text, picture) and the :class:`~fashion_retrieval.search.query.Query` are
the search layer's (``search/query.py``); here a picture is first identified: a catalogue
item (the same bytes under another path, as web front ends copy the files they serve)
reaches each Retriever as a :class:`~fashion_retrieval.search.query.CatalogueImage`, whose
stored backbone features are used (no decoding, no backbone pass). Any other picture is
decoded and checked once.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import defaultdict
from typing import Any

from fashion_retrieval.search.query import CatalogueImage, Query, make_query
from fashion_retrieval.serving.catalogue import Catalogue

DEFAULT_MAX_K = 50


def _file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
        """The :class:`Query` of a picture (a file path, or None), a text and ``k`` (at most
        ``max_k``); a catalogue picture is left out of its results. Raises
        :class:`~fashion_retrieval.search.query.QueryError` for bad input."""
        source_id = self.identify(image)
        picture = CatalogueImage(source_id, self.catalogue.by_id[source_id].path) if source_id else image
        return make_query(picture, text if allow_text else None, k, max_k=self.max_k, source_id=source_id)
