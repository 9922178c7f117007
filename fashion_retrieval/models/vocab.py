"""Word tokenisation and the word vocabulary of the LSTM text encoder (TIRG's)."""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

PAD, UNK = "<pad>", "<unk>"
MAX_WORDS = 128  # longer texts are cut: captions are short, and this bounds memory
_WORD = re.compile(r"\w+(?:'\w+)*", re.UNICODE)


def tokenize(text: str, max_words: int = MAX_WORDS) -> list[str]:
    """Lower-cased, NFKC-normalised words of ``text``; punctuation, symbols and emoji dropped.

    Never raises on odd input (control characters, non-Latin scripts, very long text);
    returns at most ``max_words`` words.
    """
    if not isinstance(text, str):
        raise TypeError(f"tokenize expects a str, got {type(text).__name__}")
    text = unicodedata.normalize("NFKC", text).casefold()
    words: list[str] = []
    for match in _WORD.finditer(text):
        words.append(match.group(0).replace("_", ""))
        if len(words) >= max_words:
            break
    return [w for w in words if w]


class Vocabulary:
    """A word -> index map; index 0 is ``<pad>``, 1 is ``<unk>``."""

    def __init__(self, words: list[str]) -> None:
        if words[:2] != [PAD, UNK]:
            raise ValueError(f"a vocabulary must start with {PAD!r}, {UNK!r}; got {words[:2]}")
        if len(set(words)) != len(words):
            dupes = sorted(w for w, c in Counter(words).items() if c > 1)[:5]
            raise ValueError(f"vocabulary has duplicate words: {dupes}")
        self.words = list(words)
        self.index = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def build(cls, texts: Iterable[str], min_count: int = 1) -> Vocabulary:
        """Vocabulary of the words seen at least ``min_count`` times, most frequent first."""
        counts = Counter(w for t in texts for w in tokenize(t))
        kept = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        return cls([PAD, UNK, *kept])

    def __len__(self) -> int:
        return len(self.words)

    @property
    def pad_id(self) -> int:
        """Index of ``<pad>``."""
        return 0

    @property
    def unk_id(self) -> int:
        """Index of ``<unk>``."""
        return 1

    def encode(self, text: str) -> list[int]:
        """Word indices of ``text``; unknown words -> ``<unk>``; empty text -> ``[<unk>]``."""
        ids = [self.index.get(w, self.unk_id) for w in tokenize(text)]
        return ids or [self.unk_id]

    def to_json(self) -> str:
        """The vocabulary as a JSON string (a list of words)."""
        return json.dumps({"words": self.words}, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Vocabulary:
        """Inverse of :meth:`to_json`."""
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("words"), list):
            raise ValueError("vocabulary JSON must be an object with a 'words' list")
        return cls(data["words"])

    def save(self, path: str | Path) -> Path:
        """Write the vocabulary as JSON to ``path`` (atomically)."""
        from ..io_utils import atomic_write_text

        return atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        """Read a vocabulary written by :meth:`save`."""
        try:
            return cls.from_json(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot read vocabulary {path}: {e}") from e
