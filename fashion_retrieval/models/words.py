"""Word knowledge a small frozen sentence encoder lacks: colour names, spelling, synonyms.

Measured on the held-out phrasing (``fashion_retrieval/data/synthetic/phrasing.py``): the
offline all-MiniLM-L6-v2 places "crimson" nearest "purple" and "emerald" nearest
"orange"; a linear probe trained on its sentence embeddings of the training colour words
named the colour of only about a third of the held-out colour synonyms (a one-off check
while choosing; ``python -m fashion_retrieval.training.compare --no-word-knowledge``
measures what the additions below bring). And a typo such as "crimosn"
falls apart into word pieces ("cr", "##imo", "##s", "##n") that mean nothing.

Three weight-free additions, options of a ``transformers`` text encoder
(``colour_words``, ``spelling``, ``thesaurus``), saved with the checkpoint (its training words apart):

- :class:`ColourWords`: the colours a text names, looked up in the xkcd colour survey's
  949 names (what people call colours, shipped by matplotlib) and the 148 CSS colour names,
  each placed in CIE Lab, voted softly onto the same lattice of Lab centres as the image
  colour descriptor (``lab_fg``), so that a model sees a named colour and a seen colour in
  the same bins. It is a feature the model learns to use, like a word vector grounded in
  colour, not a rule that bypasses it: which bins matter, and what they mean for the
  garment, is learned from the training pairs.
- :class:`SpellingCorrector`: a word that neither the model's training texts nor the text
  encoder's vocabulary holds is replaced by a training word one edit away (a deletion,
  insertion, substitution or swap of neighbours), or, when the tokenizer breaks it into
  three pieces or more, by the most frequent known word one edit away.
- :class:`Thesaurus`: a word outside the training texts ("tartan", "unpatterned") is
  followed by the training word that WordNet 3.0 relates to it most, through its synonyms
  ("plaid", "plain") and its definitions ("gingham": "a clothing fabric in a plaid weave").
  Training texts never change, so it costs no training and no cache.
"""

from __future__ import annotations

import functools
import math
import re
import string
from collections import Counter
from collections.abc import Callable, Iterable
from functools import lru_cache

import torch

from .colour import LAB_BINS, lab_votes, rgb_to_lab

_WORD = re.compile(r"[a-z]+")
MAX_NAME_WORDS = 4  # the longest colour name looked up ("blue with a hint of purple" is longer: skipped)
MODIFIER_NAMES = 10  # a single word that begins this many colour names or more is a modifier ("dark")


@lru_cache(maxsize=1)
def colour_lexicon() -> dict[str, tuple[float, float, float]]:
    """Colour name (lower case, words separated by one space) -> CIE Lab, from xkcd and CSS.

    xkcd names win over CSS ones (they come from a survey of how people name colours).
    Single words that modify many other names ("dark", "pale": each begins
    ``MODIFIER_NAMES`` or more) are left out: alone they name no colour a shopper means.
    A word that begins a name or two ("cerulean", "jade") is a colour of its own.
    """
    try:
        from matplotlib.colors import CSS4_COLORS, XKCD_COLORS  # public: the same tables as before
    except ImportError as e:  # pragma: no cover - matplotlib is in requirements.txt
        raise ImportError("colour_words needs `pip install matplotlib` (see requirements.txt)") from e

    hex_by_name: dict[str, str] = {}
    for name, hex_code in CSS4_COLORS.items():
        hex_by_name[name.lower()] = hex_code
    for name, hex_code in XKCD_COLORS.items():
        key = " ".join(_WORD.findall(name.split(":", 1)[1].lower()))
        if 0 < len(key.split()) <= MAX_NAME_WORDS:
            hex_by_name[key] = hex_code
    last_words = {n.split()[-1] for n in hex_by_name if " " in n}
    starts = Counter(n.split()[0] for n in hex_by_name if " " in n)
    names = [n for n in hex_by_name if " " in n or n in last_words or starts[n] < MODIFIER_NAMES]
    rgb = torch.tensor([[int(hex_by_name[n][i:i + 2], 16) / 255 for i in (1, 3, 5)] for n in names])
    lab = rgb_to_lab(rgb.view(-1, 3, 1, 1)).view(-1, 3)
    return {n: tuple(float(x) for x in row) for n, row in zip(names, lab, strict=True)}


@lru_cache(maxsize=1)
def lexicon_fingerprint() -> str:
    """A short hash of :func:`colour_lexicon` (names and Lab), for the caches that depend on it."""
    import hashlib

    rows = sorted(f"{n}:{a:.3f},{b:.3f},{c:.3f}" for n, (a, b, c) in colour_lexicon().items())
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]


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
        self._rows: dict[tuple[str, ...], torch.Tensor] = {}

    def __call__(self, texts: list[str]) -> torch.Tensor:
        out = torch.zeros(len(texts), self.output_dim)
        for row, text in enumerate(texts):
            names = named_colours(text, self.lexicon)
            if not names:
                out[row, -1] = self.scale
                continue
            key = tuple(names)
            if key not in self._rows:  # one histogram per distinct set of colour names
                votes = lab_votes(torch.tensor([self.lexicon[n] for n in names]), self.sigma)  # (N, K)
                self._rows[key] = self.scale * votes.mean(0).sqrt()
            out[row, :-1] = self._rows[key]
        return out


def _remember(memo: dict, key: str, value):
    """``memo[key] = value``, emptying ``memo`` first when it is full (a server sees endless new words)."""
    if len(memo) >= 100_000:
        memo.clear()
    memo[key] = value
    return value


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
    """Replace a misspelt word by the known word one edit away: the model's own words first.

    ``vocabulary`` maps known words to a rank (lower is more frequent; a BERT vocabulary's
    ids are close to that); ``domain`` is the model's own vocabulary (its training texts'
    words and the colour names); ``pieces`` counts the word pieces the encoder's tokenizer
    makes of a word. Only a word of ``min_length`` letters or more that neither knows is
    changed:

    - to a ``domain`` word one edit away, when there is one ("geren" -> "green", "corpped"
      -> "cropped": a typo of a word the model was trained on);
    - else, when the tokenizer breaks it into ``min_pieces`` pieces or more, to the most
      frequent ``vocabulary`` word one edit away ("crimosn" -> "crimson"). A word of fewer
      pieces ("stripy" -> "strip" + "##y") is kept: the encoder can read it.

    ``is_word`` (a dictionary: the :class:`Thesaurus` gives WordNet's) keeps real words
    that neither vocabulary holds ("gingham" is not a typo of "bingham").
    """

    def __init__(self, vocabulary: dict[str, int], pieces: Callable[[str], int],
                 min_length: int = 5, min_pieces: int = 3, domain: Iterable[str] = (),
                 is_word: Callable[[str], bool] | None = None) -> None:
        self.is_word = is_word
        self.domain = {w for w in domain if w.isalpha()}
        self.vocabulary, self.pieces = dict(vocabulary), pieces
        top = max(self.vocabulary.values(), default=0) + 1
        for w in sorted(self.domain):
            self.vocabulary.setdefault(w, top)
        self.min_length, self.min_pieces = min_length, min_pieces
        self._memo: dict[str, str] = {}

    @classmethod
    def for_tokenizer(cls, tokenizer, extra_words: Iterable[str] = (),
                      is_word: Callable[[str], bool] | None = None) -> SpellingCorrector:
        """Known words: the tokenizer's whole-word entries (by id); ``extra_words`` are the domain."""
        vocab = {w: i for w, i in tokenizer.get_vocab().items() if w.isalpha() and w.islower() and len(w) > 1}
        return cls(vocab, lambda w: len(tokenizer.tokenize(w)), domain=extra_words, is_word=is_word)

    def word(self, word: str) -> str:
        """``word``, or its correction."""
        if word in self._memo:
            return self._memo[word]
        out = word
        if (len(word) >= self.min_length and word.isalpha() and word not in self.vocabulary
                and not (self.is_word is not None and self.is_word(word))):
            edits = _edits(word)
            known = [w for w in edits if w in self.domain]
            if not known and self.pieces(word) >= self.min_pieces:
                known = [w for w in edits if w in self.vocabulary]
            if known:
                out = min(known, key=lambda w: (self.vocabulary[w], w))
        return _remember(self._memo, word, out)

    def __call__(self, text: str) -> str:
        """``text`` (lower-cased) with each misspelt word corrected."""
        return re.sub(r"[a-z]+", lambda m: self.word(m.group(0)), text.lower())


class Thesaurus:
    """Follow a word the model never saw in training to the words it knows, through WordNet.

    ``known`` is the model's own vocabulary: the words of its training texts (saved in the
    checkpoint's config). A word of a text outside it ("tartan", "unpatterned") is looked
    up in WordNet 3.0 (:mod:`.wordnet`: noun and adjective senses), and the known words
    its senses relate to it most are written after it, up to ``max_words``: its synonyms
    ("plaid", "plain") and, with ``glosses``, the words of its definitions ("gingham": "a
    clothing fabric in a plaid weave"), each weighted by how rare it is among WordNet's
    definitions, so that "indigo" is followed by "blue" (three of its senses say it), not by
    "color" (every colour's definition says that). Training texts are never changed (all
    their words are known), so a model trained without the thesaurus can use it, and the
    text encoder still sees the shopper's own word.
    """

    def __init__(self, known: Iterable[str], max_words: int = 1, glosses: bool = True,
                 min_length: int = 3) -> None:
        self._words = tuple(known)
        self.max_words, self.glosses, self.min_length = max_words, glosses, min_length
        self._memo: dict[str, tuple[str, ...]] = {}

    @functools.cached_property
    def stop(self) -> frozenset[str]:
        """English stop words, read on first use (importing sklearn costs start-up seconds)."""
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

        return frozenset(ENGLISH_STOP_WORDS)

    @functools.cached_property
    def known(self) -> set[str]:
        """The training words, stop words left out."""
        return {w for w in self._words if w.isalpha()} - self.stop

    @property
    def wordnet(self):
        """WordNet, read once, on the first unknown word (not when a model is built)."""
        from .wordnet import wordnet

        return wordnet()

    def is_word(self, word: str) -> bool:
        """Whether WordNet holds ``word`` as a noun or an adjective (base forms included)."""
        return any(self.wordnet.base_forms(word, pos) for pos in ("a", "n"))

    def _is_known(self, phrase: str) -> bool:
        words = [w for w in _WORD.findall(phrase) if w not in self.stop]
        return bool(words) and all(w in self.known for w in words)

    def _rarity(self, phrase: str) -> float:
        """log(glosses / (1 + glosses using the phrase's words)): "color" or "dark" weigh little."""
        counts, total = self.wordnet.gloss_frequency
        return math.log(total / (1 + sum(counts[w] for w in _WORD.findall(phrase) if w not in self.stop)))

    def related(self, word: str) -> tuple[str, ...]:
        """The known words WordNet relates to ``word`` most (empty for a known or short word).

        Every sense (adjectives first) votes: each of its synonyms that training knows with
        twice its rarity, each known word of its definition's first clause with its rarity.
        """
        if word in self._memo:
            return self._memo[word]
        out: tuple[str, ...] = ()
        if (len(word) >= self.min_length and word.isalpha() and word not in self.known
                and word not in self.stop):
            votes: Counter = Counter()
            for sense in self.wordnet.synsets(word, "a") + self.wordnet.synsets(word, "n"):
                for lemma in sense.lemmas:
                    if lemma != word and self._is_known(lemma):
                        votes[lemma] += 2 * self._rarity(lemma)
                if self.glosses:
                    clause = re.split(r"[;(\"]", sense.gloss)[0].lower()
                    for w in set(_WORD.findall(clause)) & self.known:
                        votes[w] += self._rarity(w)
            out = tuple(w for w, _ in votes.most_common(self.max_words))
        return _remember(self._memo, word, out)

    def __call__(self, text: str) -> str:
        """``text`` (lower-cased) with each unknown word followed by the known words it relates to."""
        def expand(m: re.Match) -> str:
            extra = self.related(m.group(0))
            return " ".join((m.group(0), *extra))

        return re.sub(r"[a-z]+", expand, text.lower())
