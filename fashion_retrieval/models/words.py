"""Word knowledge a small frozen sentence encoder lacks: colour names, and spelling.

Measured on the held-out phrasing (``fashion_retrieval/data/synthetic/phrasing.py``): the
offline all-MiniLM-L6-v2 places "crimson" nearest "purple" and "emerald" nearest
"orange"; a linear probe trained on its sentence embeddings of the training colour words
named the colour of only about a third of the held-out colour synonyms (a one-off check
while choosing; ``python -m fashion_retrieval.training.compare --no-word-knowledge``
measures what the additions below bring). And a typo such as "crimosn"
falls apart into word pieces ("cr", "##imo", "##s", "##n") that mean nothing.

Two weight-free additions, both options of a ``transformers`` text encoder
(``colour_words``, ``spelling``), saved in the checkpoint's config:

- :class:`ColourWords`: the colours a text names, looked up in the xkcd colour survey's
  949 names (what people call colours, shipped by matplotlib) and the 148 CSS colour names,
  each placed in CIE Lab, voted softly onto the same lattice of Lab centres as the image
  colour descriptor (``lab_fg``), so that a model sees a named colour and a seen colour in
  the same bins. It is a feature the model learns to use, like a word vector grounded in
  colour, not a rule that bypasses it: which bins matter, and what they mean for the
  garment, is learned from the training pairs.
- :class:`SpellingCorrector`: a word the text encoder does not know, that its tokenizer
  breaks into three pieces or more, is replaced by the most frequent known word one edit
  away (a deletion, insertion, substitution or swap of neighbours), when there is one.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterable
from functools import lru_cache

import torch

from .colour import LAB_BINS, lab_votes, rgb_to_lab

_WORD = re.compile(r"[a-z]+")
MAX_NAME_WORDS = 4  # the longest colour name looked up ("blue with a hint of purple" is longer: skipped)


@lru_cache(maxsize=1)
def colour_lexicon() -> dict[str, tuple[float, float, float]]:
    """Colour name (lower case, words separated by one space) -> CIE Lab, from xkcd and CSS.

    xkcd names win over CSS ones (they come from a survey of how people name colours).
    Single words that only ever modify other names ("dark", "pale") are left out: alone
    they name no colour a shopper means.
    """
    try:
        from matplotlib import _color_data
    except ImportError as e:  # pragma: no cover - matplotlib is in requirements.txt
        raise ImportError("colour_words needs `pip install matplotlib` (see requirements.txt)") from e

    hex_by_name: dict[str, str] = {}
    for name, hex_code in _color_data.CSS4_COLORS.items():
        hex_by_name[name.lower()] = hex_code
    for name, hex_code in _color_data.XKCD_COLORS.items():
        key = " ".join(_WORD.findall(name.split(":", 1)[1].lower()))
        if 0 < len(key.split()) <= MAX_NAME_WORDS:
            hex_by_name[key] = hex_code
    last_words = {n.split()[-1] for n in hex_by_name if " " in n}
    first_words = {n.split()[0] for n in hex_by_name if " " in n}
    names = [n for n in hex_by_name if " " in n or n in last_words or n not in first_words]
    rgb = torch.tensor([[int(hex_by_name[n][i:i + 2], 16) / 255 for i in (1, 3, 5)] for n in names])
    lab = rgb_to_lab(rgb.view(-1, 3, 1, 1)).view(-1, 3)
    return {n: tuple(float(x) for x in row) for n, row in zip(names, lab, strict=True)}


def named_colours(text: str, lexicon: dict[str, tuple[float, float, float]] | None = None) -> list[str]:
    """The colour names in ``text``, longest match first, left to right ("light grey", not "grey")."""
    lexicon = colour_lexicon() if lexicon is None else lexicon
    words = _WORD.findall(text.lower().replace("-", " "))
    found, i = [], 0
    while i < len(words):
        for n in range(min(MAX_NAME_WORDS, len(words) - i), 0, -1):
            name = " ".join(words[i:i + n])
            if name in lexicon:
                found.append(name)
                i += n
                break
        else:
            i += 1
    return found


class ColourWords:
    """Texts -> ``(B, LAB_BINS + 1)``: the soft Lab histogram of the colours each names, then a flag.

    The histogram is the mean of the named colours' votes, square-rooted and multiplied by
    ``scale`` (as the image descriptor's is); the last column is ``scale`` when the text
    names no colour, else 0.
    """

    output_dim = LAB_BINS + 1

    def __init__(self, sigma: float = 11.0, scale: float = 4.0) -> None:
        self.sigma, self.scale = sigma, scale
        self.lexicon = colour_lexicon()

    def __call__(self, texts: list[str]) -> torch.Tensor:
        out = torch.zeros(len(texts), self.output_dim)
        for row, text in enumerate(texts):
            names = named_colours(text, self.lexicon)
            if not names:
                out[row, -1] = self.scale
                continue
            votes = lab_votes(torch.tensor([self.lexicon[n] for n in names]), self.sigma)  # (N, K)
            out[row, :-1] = self.scale * votes.mean(0).sqrt()
        return out


def _edits(word: str) -> set[str]:
    """Every string one deletion, swap of neighbours, substitution or insertion from ``word``."""
    letters = string.ascii_lowercase
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    out = {a + b[1:] for a, b in splits if b}
    out |= {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
    out |= {a + c + b[1:] for a, b in splits if b for c in letters}
    out |= {a + c + b for a, b in splits for c in letters}
    out.discard(word)
    return out


class SpellingCorrector:
    """Replace unknown, fragmented words by the most frequent known word one edit away.

    ``vocabulary`` maps known words to a rank (lower is more frequent; a BERT vocabulary's
    ids are close to that); ``pieces`` counts the word pieces the encoder's tokenizer makes
    of a word. Only a word of ``min_length`` letters or more, not in the vocabulary, that
    falls apart into ``min_pieces`` pieces or more is changed ("stripy" -> "strip" + "##y"
    is two pieces: it stays), and only when a known word is one edit away.
    """

    def __init__(self, vocabulary: dict[str, int], pieces: Callable[[str], int],
                 min_length: int = 5, min_pieces: int = 3) -> None:
        self.vocabulary, self.pieces = vocabulary, pieces
        self.min_length, self.min_pieces = min_length, min_pieces
        self._memo: dict[str, str] = {}

    @classmethod
    def for_tokenizer(cls, tokenizer, extra_words: Iterable[str] = ()) -> SpellingCorrector:
        """Known words: the tokenizer's whole-word entries (by id), then ``extra_words``."""
        vocab = {w: i for w, i in tokenizer.get_vocab().items() if w.isalpha() and w.islower() and len(w) > 1}
        top = max(vocab.values(), default=0) + 1
        for w in extra_words:
            vocab.setdefault(w, top)
        return cls(vocab, lambda w: len(tokenizer.tokenize(w)))

    def word(self, word: str) -> str:
        """``word``, or its correction."""
        if word in self._memo:
            return self._memo[word]
        out = word
        if (len(word) >= self.min_length and word.isalpha() and word not in self.vocabulary
                and self.pieces(word) >= self.min_pieces):
            known = [w for w in _edits(word) if w in self.vocabulary]
            if known:
                out = min(known, key=lambda w: (self.vocabulary[w], w))
        if len(self._memo) >= 100_000:  # bounded: a server sees endless new words
            self._memo.clear()
        self._memo[word] = out
        return out

    def __call__(self, text: str) -> str:
        """``text`` (lower-cased) with each unknown, fragmented word corrected."""
        return re.sub(r"[a-z]+", lambda m: self.word(m.group(0)), text.lower())
