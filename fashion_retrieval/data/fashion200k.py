"""Fashion200k, read exactly as released (Han et al. 2017; the TIRG benchmark).

Layout under ``root``::

    labels/<category>_<split>_detect_all.txt   path<TAB>detection score<TAB>caption
    women/dresses/.../12345/12345_0.jpeg       the images, paths relative to root
    test_queries.txt                           "source_path target_path" per line

Training pairs follow TIRG: two images whose captions differ but become the same
"parent" caption when one word is removed; the query text is ``replace X with Y``.
TIRG draws a fresh sibling for every training sample (``SiblingIndex.draw``); the frozen
``generate_pairs`` list gives one pair per source (the training examples' sources, and the
test queries when ``test_queries.txt`` is absent).

Caption clean-up (``caption_cleanup``): ``"tirg"`` (default) is TIRG's own
(``datasets.py``: strip, then ``.`` ``?`` ``&`` ``*`` become ``dotmark`` ``questionmark``
``andmark`` ``starmark``; case and every other character kept), so captions that differ
only by punctuation stay different, as in the published protocol. ``"normalize"`` is the
project's earlier rule (lowercase, punctuation dropped, spaces collapsed), which merges them.
"""

from __future__ import annotations

import os
import random
import re
import string
import warnings
from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path

from fashion_retrieval.data._skips import SkipLog
from fashion_retrieval.data.records import Item, RetrievalDataset, Triplet

SPLITS = ("train", "test")
_LABEL_RE = re.compile(r"^(?P<category>.+)_(?P<split>train|test)_detect_all\.txt$")
_PUNCT = str.maketrans("", "", string.punctuation)


_TIRG_MARKS = ((".", "dotmark"), ("?", "questionmark"), ("&", "andmark"), ("*", "starmark"))


def clean_caption(caption: str) -> str:
    """The ``normalize`` clean-up: lowercase, strip, drop punctuation, collapse spaces."""
    return " ".join(caption.lower().translate(_PUNCT).split())


def tirg_caption(caption: str) -> str:
    """TIRG's caption clean-up: strip, then ``.`` ``?`` ``&`` ``*`` become words.

    ``"red dress."`` -> ``"red dressdotmark"``: nothing else changes (case, commas, spaces
    inside the caption), so two captions stay equal only when TIRG would find them equal.
    """
    caption = caption.strip()
    for mark, word in _TIRG_MARKS:
        caption = caption.replace(mark, word)
    return caption


CAPTION_CLEANUPS: dict[str, Callable[[str], str]] = {"tirg": tirg_caption, "normalize": clean_caption}


def word_difference(source_caption: str, target_caption: str) -> tuple[str, str] | None:
    """``(X, Y)``: the first source word missing from the target and the first target word
    missing from the source; None when either does not exist."""
    source_words, target_words = source_caption.split(), target_caption.split()
    target_set, source_set = set(target_words), set(source_words)
    x = next((w for w in source_words if w not in target_set), None)
    y = next((w for w in target_words if w not in source_set), None)
    return None if x is None or y is None else (x, y)


def modification_text(source_caption: str, target_caption: str) -> str | None:
    """The query text ``replace X with Y`` for a caption pair (None if they share all words)."""
    diff = word_difference(source_caption, target_caption)
    return None if diff is None else f"replace {diff[0]} with {diff[1]}"


def tirg_query_text(source_caption: str, target_caption: str) -> str:
    """``replace X with Y`` as TIRG's ``get_different_word`` (google/tirg ``datasets.py``)
    makes it, for any pair.

    X is the first source word missing from the target and Y the first target word missing
    from the source, each on its own: TIRG's loop that finds no such word ends on the
    caption's last word, so ``"a b c"`` -> ``"a x b c"`` gives ``replace c with x`` and a
    permutation ``replace <last source word> with <last target word>``. An empty caption
    (TIRG fails on it) gives an empty word.
    """
    source_words, target_words = source_caption.split(), target_caption.split()
    target_set, source_set = set(target_words), set(source_words)
    x = next((w for w in source_words if w not in target_set), source_words[-1] if source_words else "")
    y = next((w for w in target_words if w not in source_set), target_words[-1] if target_words else "")
    return f"replace {x} with {y}"


def label_files(root: str | os.PathLike, split: str) -> dict[str, Path]:
    """``{category: label file}`` for ``split``; FileNotFoundError when there are none."""
    labels = Path(root) / "labels"
    if not labels.is_dir():
        raise FileNotFoundError(f"Fashion200k labels folder not found: {labels}")
    found = {}
    for path in sorted(labels.iterdir()):
        m = _LABEL_RE.match(path.name)
        if m and m["split"] == split:
            found[m["category"]] = path
    if not found:
        raise FileNotFoundError(
            f"no Fashion200k label files '<category>_{split}_detect_all.txt' in {labels}"
        )
    return found


def _read_label_file(
    path: Path, category: str, root: Path, log: SkipLog, seen: dict[str, list[str]],
    clean: Callable[[str], str] = tirg_caption, *, keep_duplicates: bool = False,
) -> list[Item]:
    """Parse one label file into items (captions through ``clean``); bad lines are logged
    with file:line and skipped.

    ``seen`` maps every label path read so far to the ids of its rows. A path listed again
    is skipped (``duplicate``), or with ``keep_duplicates`` (TIRG keeps every line) kept as
    one more row, id ``<path>#<n>`` for its n-th line, and noted (``duplicate_row``).
    """
    items = []
    data = path.read_bytes()
    _check_utf8_family(path, data)
    for lineno, raw in enumerate(data.splitlines(), start=1):
        where = f"{path}:{lineno}"
        try:
            line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            log.skip("bad_encoding", where, f"not UTF-8 ({exc.reason} at byte {exc.start})")
            continue
        if not line.strip():
            continue
        fields = line.rstrip("\r\n").split("\t")
        if len(fields) != 3:
            log.skip("bad_fields", where, f"expected 3 tab-separated fields, got {len(fields)}")
            continue
        rel_path, score, caption = fields[0].strip(), fields[1].strip(), clean(fields[2])
        try:
            float(score)
        except ValueError:
            log.skip("bad_score", where, f"detection score {score!r} is not a number")
            continue
        if not rel_path:
            log.skip("bad_fields", where, "empty image path")
            continue
        if not caption:
            log.skip("empty_caption", where, "caption is empty after clean-up")
            continue
        rows = seen.setdefault(rel_path, [])
        if rows and not keep_duplicates:
            log.skip("duplicate", where, f"image {rel_path!r} listed again")
            continue
        row_id = f"{rel_path}#{len(rows) + 1}" if rows else rel_path
        if rows:
            log.note("duplicate_row", where, f"image {rel_path!r} listed again: one more gallery row, {row_id!r}")
        rows.append(row_id)
        items.append(
            Item(id=row_id, path=str(root / rel_path), caption=caption, category=category)
        )
    return items


def _check_utf8_family(path: Path, data: bytes) -> None:
    """Refuse a UTF-16/32 file (BOM or NUL bytes): every line would be garbage."""
    wide = data.startswith((b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")) or b"\x00" in data[:4096]
    if wide:
        raise ValueError(
            f"{path}: looks like UTF-16/UTF-32 text, but Fashion200k label files are UTF-8; "
            f"convert it, e.g. iconv -f UTF-16 -t UTF-8 {path.name} > fixed.txt"
        )


def _drop_missing(items: list[Item], log: SkipLog) -> list[Item]:
    """Keep the items whose image file exists; count the rest as ``missing_image``."""
    kept = [it for it in items if os.path.isfile(it.path)]
    log.add("missing_image", len(items) - len(kept))
    return kept


def _parents(caption: str) -> set[str]:
    """The captions made by removing one word from ``caption``."""
    words = caption.split()
    return {" ".join(words[:i] + words[i + 1 :]) for i in range(len(words))}


def _parent_groups(captions: list[str]) -> dict[str, list[str]]:
    """``{parent caption: sorted child captions}`` for parents with at least two children."""
    children: dict[str, set[str]] = defaultdict(set)
    for c in captions:
        for p in _parents(c):
            children[p].add(c)
    return {p: sorted(ch) for p, ch in children.items() if len(ch) >= 2}


def _pick_target_caption(
    caption: str, parents: list[str], groups: dict[str, list[str]], rng: random.Random
) -> str | None:
    """A sibling caption as TIRG draws it: a random parent, then a random other child.

    A few random draws find a valid sibling almost always; the full scan of a parent's
    children only runs when they share every word with ``caption`` (word permutations).
    """
    parents = list(parents)
    while parents:
        p = rng.choice(parents)
        children = groups[p]
        for _ in range(8):
            cand = rng.choice(children)
            if cand != caption and word_difference(caption, cand) is not None:
                return cand
        valid = [c for c in children if c != caption and word_difference(caption, c) is not None]
        if valid:
            return rng.choice(valid)
        parents.remove(p)
    return None


class SiblingIndex:
    """TIRG's caption index of a split: which images can be modified and into what.

    Captions that become the same "parent" when one word is removed are siblings; a source
    image's training target is an image with a sibling caption (``draw``). Picklable, so a
    DataLoader worker can draw with it.
    """

    def __init__(self, items: list[Item]) -> None:
        self.caption_of = {it.id: it.caption for it in items}
        self.by_caption: dict[str, list[str]] = defaultdict(list)
        for it in items:
            self.by_caption[it.caption].append(it.id)
        self.groups = _parent_groups(list(self.by_caption))
        self.parents_of = {
            c: sorted(p for p in _parents(c) if p in self.groups) for c in self.by_caption
        }

    def draw(self, source_id: str, rng: random.Random) -> tuple[str, str, str] | None:
        """``(target id, "replace X with Y", target caption)`` for ``source_id``, drawn as
        TIRG does (a random parent of its caption, a random other child with a differing
        word, a random image with that caption); None when the source has no sibling."""
        caption = self.caption_of.get(source_id)
        if caption is None:
            return None
        target_caption = _pick_target_caption(caption, self.parents_of[caption], self.groups, rng)
        if target_caption is None:
            return None
        target = rng.choice(self.by_caption[target_caption])
        return target, modification_text(caption, target_caption), target_caption


def generate_pairs(items: list[Item], seed: int = 0) -> list[Triplet]:
    """One (source, target) triplet per source image that has a parent-caption sibling.

    Deterministic: draws come from ``random.Random(seed)`` in item order (a parent caption,
    a sibling caption under it, then an image with that caption).
    """
    index = SiblingIndex(items)
    rng = random.Random(seed)
    triplets = []
    for it in items:
        drawn = index.draw(it.id, rng)
        if drawn is None:
            continue
        target, text, target_caption = drawn
        triplets.append(
            Triplet(it.id, target, text, it.category, (it.caption, target_caption), target_caption)
        )
    return triplets


def read_test_queries(
    path: Path, items: list[Item], log: SkipLog, known: Mapping[str, list[str]], *,
    keep_all: bool = False,
) -> list[Triplet]:
    """Triplets from ``test_queries.txt``, one per line, in file order; lines naming unknown
    images are counted and skipped.

    ``known`` maps every path the label files listed to the ids of its rows, to tell a
    missing image file (``query_missing_image``) from a path that is not in the split at
    all. A path with several rows names its last loaded one, as TIRG's ``file2imgid``
    (``generate_test_queries_``) does: that row is the query's source. A pair whose
    captions share every word is skipped (``no_word_difference``), or with ``keep_all``
    (TIRG's protocol) kept with TIRG's text for it (``tirg_query_text``).
    """
    by_id = {it.id: it for it in items}
    by_path = {}
    for label_path, ids in known.items():
        loaded = [i for i in ids if i in by_id]
        if loaded:
            by_path[label_path] = by_id[loaded[-1]]
    triplets = []
    for lineno, raw in enumerate(path.read_bytes().splitlines(), start=1):
        where = f"{path}:{lineno}"
        try:
            fields = raw.decode("utf-8-sig" if lineno == 1 else "utf-8").split()
        except UnicodeDecodeError as exc:
            log.skip("bad_encoding", where, f"not UTF-8 ({exc.reason} at byte {exc.start})")
            continue
        if not fields:
            continue
        if len(fields) != 2:
            log.skip(
                "bad_fields", where, f"expected 'source_path target_path', got {len(fields)} fields"
            )
            continue
        src, tgt = (by_path.get(f) for f in fields)
        if src is None or tgt is None:
            unknown = fields[0] if src is None else fields[1]
            reason = "query_missing_image" if unknown in known else "unknown_query_path"
            log.skip(reason, where, f"image {unknown!r} is not in the loaded split")
            continue
        text = modification_text(src.caption, tgt.caption)
        if text is None and keep_all:
            text = tirg_query_text(src.caption, tgt.caption)
        elif text is None:
            log.skip("no_word_difference", where, "source and target captions share every word")
            continue
        triplets.append(
            Triplet(src.id, tgt.id, text, src.category, (src.caption, tgt.caption), tgt.caption)
        )
    return triplets


def _published_queries(
    path: Path, items: list[Item], log: SkipLog, known: Mapping[str, list[str]], keep_all: bool, meta: dict
) -> list[Triplet]:
    """``read_test_queries``, with the lines read (``query_lines``) and the queries kept
    without a differing word (``queries_without_word_difference``) recorded in ``meta``."""
    triplets = read_test_queries(path, items, log, known, keep_all=keep_all)
    meta["query_lines"] = sum(1 for raw in path.read_bytes().splitlines() if raw.strip())
    meta["queries_without_word_difference"] = sum(1 for t in triplets if word_difference(*t.captions) is None)
    return triplets


def load_fashion200k(
    root: str | os.PathLike,
    split: str = "train",
    categories: list[str] | None = None,
    *,
    check_images: bool = True,
    seed: int = 0,
    caption_cleanup: str = "tirg",
) -> RetrievalDataset:
    """Read a Fashion200k split into a ``RetrievalDataset`` (protocol ``fashion200k``).

    ``categories`` keeps only those label files (e.g. ``["pants"]``). Items are every
    listed image that exists on disk (``check_images=False`` skips the file checks);
    captions go through ``caption_cleanup`` (``CAPTION_CLEANUPS``: ``"tirg"``, the
    published protocol, or ``"normalize"``). Triplets are TIRG's parent-caption pairs for
    ``train`` and the lines of ``test_queries.txt`` for ``test`` (generated the training
    way, with a warning, when the file is absent); with ``"tirg"`` every line naming two
    loaded images is a query, as in TIRG. An image path listed twice is skipped as a
    ``duplicate``, except in the ``test`` split under ``"tirg"``: TIRG's gallery keeps every
    label line (``datasets.py``), so each repeat is one more gallery row (id
    ``<path>#<n>``) that takes ranks, and a query names the path's last row, the one its
    ranking leaves out (``test_retrieval.py`` excludes that one index only); ``meta``
    counts them in ``duplicate_rows``. Bad lines are logged with file and line, skipped
    and counted in ``dataset.skipped``; ``meta`` records the clean-up, the number of query
    lines read (``query_lines``) and of queries kept without a differing word.
    """
    if split not in SPLITS:
        raise ValueError(f"Fashion200k split must be one of {SPLITS}, got {split!r}")
    if caption_cleanup not in CAPTION_CLEANUPS:
        raise ValueError(
            f"unknown Fashion200k caption_cleanup {caption_cleanup!r}; valid: {', '.join(CAPTION_CLEANUPS)}"
        )
    clean = CAPTION_CLEANUPS[caption_cleanup]
    root = Path(root)
    files = label_files(root, split)
    if categories is not None:
        unknown = sorted(set(categories) - set(files))
        if unknown:
            raise ValueError(
                f"unknown Fashion200k categories {unknown} for split {split!r}; available: {sorted(files)}"
            )
        files = {c: p for c, p in files.items() if c in set(categories)}
    log = SkipLog(f"Fashion200k {split} at {root}")
    seen: dict[str, list[str]] = {}
    keep_duplicates = split == "test" and caption_cleanup == "tirg"
    items = [
        it
        for cat, path in files.items()
        for it in _read_label_file(path, cat, root, log, seen, clean, keep_duplicates=keep_duplicates)
    ]
    if check_images:
        items = _drop_missing(items, log)
    queries_file = root / "test_queries.txt"
    meta: dict = {"categories": sorted(files), "seed": seed, "queries_generated": False,
                  "caption_cleanup": caption_cleanup, "duplicate_rows": log.notes["duplicate_row"]}
    if split == "test" and queries_file.is_file():
        triplets = _published_queries(queries_file, items, log, seen, caption_cleanup == "tirg", meta)
    else:
        if split == "test":
            warnings.warn(
                f"{queries_file} not found: generating test queries from the test captions "
                f"(pairs one word apart, seed={seed}); numbers are not comparable to published ones",
                UserWarning,
                stacklevel=2,
            )
            meta["queries_generated"] = True
        triplets = generate_pairs(items, seed=seed)
    meta["missing_images"] = log.counts["missing_image"]
    log.warn_summary()
    return RetrievalDataset(
        name="fashion200k",
        split=split,
        root=str(root),
        items=items,
        triplets=triplets,
        protocol="fashion200k",
        skipped=log.counts,
        meta=meta,
    )
