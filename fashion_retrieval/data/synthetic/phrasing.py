"""Plain-words change requests, in two disjoint phrasings: one to train on, one held out.

A shopper asks for one change at a time in their own words: "make it red", "same but
striped", "with long sleeves". :func:`change_request` writes such a request for a
one-attribute change in a named phrasing:

- ``train``: the templates and words that training data may use;
- ``heldout``: other templates, synonyms ("crimson", "navy blue", "no pattern",
  "without sleeves"), other word orders and typos, never used in training;
- ``plain``: the held-out templates with the catalogue's own words for the values
  ("could you show this in red"): a shopper's plain words, in sentences never trained on;
- ``heldout_words``: the training templates with the held-out words, no typos; with
  ``plain`` it splits the phrasing gap into what the words cost and what the sentences cost;
- ``dev``: the training templates with a third set of words ("cerise", "speckled",
  "armless"), for choosing how the models read unseen words (``models/words.py``), so that
  such choices are never made on the held-out words.

The project's own evaluations use only the held-out templates (composition control:
``plain``; the phrasing gap: ``heldout``), so a model is never tuned on the phrases it is
judged by.

The training and held-out phrasings share no template; the held-out and the development
words are disjoint, and no training text contains either (tests check all three).
"""

from __future__ import annotations

import numpy as np

from fashion_retrieval.registry import Registry

PHRASINGS: Registry[dict] = Registry("phrasing")

# Words for a value, per phrasing. A value absent from a table is said as its own name,
# with hyphens as spaces ("long-sleeve" -> "long sleeve").
_TRAIN_WORDS: dict[str, list[str]] = {
    "polka-dot": ["polka dot", "dotted", "dots", "polka dotted", "dot pattern", "pin dot"],
    "checked": ["checked", "plaid", "checkered", "chequered", "check pattern", "houndstooth", "windowpane"],
    "solid": ["plain", "solid", "solid colour", "single colour", "one colour", "block colour", "uniform colour"],
    "floral": ["floral", "flowery", "with flowers", "flowered", "blossom pattern", "daisy pattern"],
    "striped": ["striped", "with stripes", "banded", "candy striped", "stripe pattern"],
    "sleeveless": ["sleeveless", "strappy", "tank style", "sleeve free", "bare armed"],
    "short-sleeve": ["short sleeved", "short sleeve", "cap sleeved", "elbow sleeved", "tee style"],
    "long-sleeve": ["long sleeved", "long sleeve", "wrist length sleeved", "long armed"],
    "grey": ["grey", "gray", "light grey", "slate", "graphite", "silver", "stone grey", "heather grey"],
    "red": ["red", "bright red", "cherry red", "ruby", "vermilion", "tomato red", "fire red", "lipstick red"],
    "navy": ["navy", "deep navy", "midnight blue", "ink blue", "marine blue"],
    "blue": ["blue", "sky blue", "azure", "cornflower", "denim blue", "cerulean", "bright blue"],
    "maroon": ["maroon", "dark red", "oxblood", "bordeaux", "claret", "brick red"],
    "pink": ["pink", "pale pink", "salmon pink", "baby pink", "hot pink", "bubblegum"],
    "orange": ["orange", "bright orange", "pumpkin", "apricot", "burnt orange"],
    "yellow": ["yellow", "golden yellow", "canary", "butter yellow", "sunflower", "saffron"],
    "beige": ["beige", "sand", "oatmeal", "nude", "taupe", "stone", "putty"],
    "brown": ["brown", "dark brown", "cocoa", "mocha", "hazel", "umber", "walnut"],
    "green": ["green", "grass green", "kelly green", "jade", "leaf green", "bottle green"],
    "olive": ["olive", "olive green", "army green", "sage", "military green", "drab green"],
    "teal": ["teal", "blue green", "petrol", "peacock blue", "dark cyan", "teal blue"],
    "purple": ["purple", "lilac", "lavender", "mauve", "amethyst", "grape", "orchid"],
    "black": ["black", "pitch black", "onyx", "coal", "raven", "obsidian"],
    "white": ["white", "off white", "pearl", "chalk", "optic white", "pure white", "bright white"],
}
_HELDOUT_WORDS: dict[str, list[str]] = {
    "red": ["crimson", "scarlet"], "navy": ["navy blue", "dark blue"], "blue": ["royal blue", "cobalt"],
    "grey": ["charcoal", "ash"], "maroon": ["burgundy", "wine"], "pink": ["rose", "blush"],
    "orange": ["tangerine", "rust orange"], "yellow": ["mustard", "lemon"], "beige": ["tan", "camel"],
    "brown": ["chocolate", "coffee"], "green": ["emerald", "forest green"], "olive": ["khaki green", "moss"],
    "teal": ["turquoise", "aqua"], "purple": ["violet", "plum"], "black": ["jet black", "ebony"],
    "white": ["ivory", "snow white"],
    "solid": ["no pattern", "unpatterned"], "striped": ["stripy", "pinstriped"],
    "polka-dot": ["spotted", "spotty"], "checked": ["tartan", "gingham"], "floral": ["flower print", "botanical"],
    "sleeveless": ["without sleeves", "no sleeves"], "short-sleeve": ["shorter sleeves", "half sleeves"],
    "long-sleeve": ["longer sleeves", "full sleeves"],
}

# Development words: other synonyms, to choose by (never trained on, never judged by).
_DEV_WORDS: dict[str, list[str]] = {
    "polka-dot": ["speckled", "flecked", "dotty"], "striped": ["stripey", "barred", "pinstripe"],
    "checked": ["checkerboard", "tattersall"], "floral": ["blossoming", "blooming"],
    "solid": ["patternless", "monochrome", "undecorated"], "sleeveless": ["armless"],
    "red": ["cardinal", "cerise"], "blue": ["sapphire"], "green": ["lime"], "grey": ["pewter"],
    "white": ["cream"], "brown": ["chestnut"], "pink": ["fuchsia"], "yellow": ["gold"], "orange": ["amber"],
    "maroon": ["garnet"], "navy": ["indigo"], "purple": ["magenta"],
}

# Templates per attribute kind; {v} is the value's words, {n} the garment noun.
_TRAIN_TEMPLATES: dict[str, list[str]] = {
    "color": ["make it {v}", "in {v}", "{v} instead", "change the color to {v}", "i want it {v}",
              "same one in {v}", "is {v}", "a {v} version", "colour {v}", "{v} one please",
              "show me a {v} {n}", "prefer {v}", "turn it {v}", "need it in {v} please",
              "can i see it in {v}", "same {n}, {v}", "{v} like this one", "recolor it {v}"],
    "pattern": ["make it {v}", "{v} instead", "i want it {v}", "with a {v} pattern", "is {v}",
                "a {v} version", "pattern {v}", "show me a {v} {n}",
                "prefer {v}", "can i see a {v} one", "same {n}, {v}", "{v} like this one", "need it {v}"],
    "sleeve": ["make it {v}", "i want it {v}", "a {v} version", "with {v} sleeves", "is {v}",
               "show me a {v} {n}", "prefer {v}", "need it {v}"],
    "other": ["make it {v}", "i want it {v}", "a {v} version", "is {v}", "{v} instead",
              "show me a {v} {n}", "prefer {v}", "need it {v}"],
}
_HELDOUT_TEMPLATES: dict[str, list[str]] = {
    "color": ["could you show this in {v}", "do you have it in {v}?", "looking for a {v} {n} like this",
              "swap the colour for {v}", "{v} would be nicer", "this {n} but {v}"],
    "pattern": ["could i get this {v}", "do you have a {v} one", "looking for a {v} {n} like this",
                "swap the print for {v}", "{v} would be nicer", "this {n} but {v}"],
    "sleeve": ["could i get this with {v}", "do you have it with {v}", "looking for one like this with {v}",
               "{v} would be nicer"],
    "other": ["could i get this {v}", "looking for a {v} {n} like this", "{v} would be nicer",
              "do you have a {v} one"],
}
_SLEEVE_AS_NOUN = {"sleeveless": "no sleeves", "short-sleeve": "short sleeves", "long-sleeve": "long sleeves"}


def _typo(text: str, rng: np.random.Generator) -> str:
    """Swap two neighbouring letters of one word longer than four letters (when there is one)."""
    words = text.split()
    long = [i for i, w in enumerate(words) if len(w) > 4 and w.isalpha()]
    if not long:
        return text
    i = long[int(rng.integers(len(long)))]
    w = words[i]
    j = int(rng.integers(1, len(w) - 2))
    words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2:]
    return " ".join(words)


def _request(table: dict[str, list[str]], words: dict[str, list[str]], attribute: str, value: str,
             noun: str, rng: np.random.Generator) -> str:
    kind = attribute if attribute in table else "other"
    options = words.get(value) or [value.replace("-", " ")]
    v = options[int(rng.integers(len(options)))]
    if kind == "sleeve" and table is _TRAIN_TEMPLATES and rng.random() < 0.5:
        v = _SLEEVE_AS_NOUN.get(value, v)
    templates = table[kind]
    return templates[int(rng.integers(len(templates)))].format(v=v, n=noun)


@PHRASINGS.register("train")
def _train(attribute: str, value: str, noun: str, rng: np.random.Generator) -> str:
    return _request(_TRAIN_TEMPLATES, _TRAIN_WORDS, attribute, value, noun, rng)


@PHRASINGS.register("plain")
def _plain(attribute: str, value: str, noun: str, rng: np.random.Generator) -> str:
    return _request(_HELDOUT_TEMPLATES, {}, attribute, value, noun, rng)


@PHRASINGS.register("heldout")
def _heldout(attribute: str, value: str, noun: str, rng: np.random.Generator) -> str:
    text = _request(_HELDOUT_TEMPLATES, _HELDOUT_WORDS, attribute, value, noun, rng)
    return _typo(text, rng) if rng.random() < 0.2 else text


@PHRASINGS.register("heldout_words")
def _heldout_words(attribute: str, value: str, noun: str, rng: np.random.Generator) -> str:
    return _request(_TRAIN_TEMPLATES, _HELDOUT_WORDS, attribute, value, noun, rng)


@PHRASINGS.register("dev")
def _dev(attribute: str, value: str, noun: str, rng: np.random.Generator) -> str:
    return _request(_TRAIN_TEMPLATES, _DEV_WORDS, attribute, value, noun, rng)


def change_request(attribute: str, value: str, noun: str, rng: np.random.Generator,
                   phrasing: str = "train") -> str:
    """A plain-words request to change ``attribute`` to ``value`` of a ``noun``, in ``phrasing``."""
    return PHRASINGS.get(phrasing)(attribute, value, noun, rng)


def multi_change_request(category_noun: str, changes: dict[str, str], rng: np.random.Generator,
                         phrasing: str = "train") -> str:
    """Several changes in one request ("make it red and with long sleeves"), in ``phrasing``."""
    parts = [change_request(a, v, category_noun, rng, phrasing) for a, v in changes.items()]
    order = rng.permutation(len(parts))
    return " and ".join(parts[i] for i in order)


def _training_vocabulary(samples: int) -> set[str]:
    """Every word a training text can hold: the ``train`` phrasing, the catalogue's captions
    and its relative captions (``samples`` seeded random changes over every category, since
    their phrase tables live in code)."""
    from .attributes import CATEGORIES, mutate, random_attributes
    from .relative import relative_captions

    train = {w for ws in _TRAIN_WORDS.values() for x in ws for w in x.split()}
    train |= {w for ts in _TRAIN_TEMPLATES.values() for t in ts for w in t.replace("{", " {").split()}
    rng = np.random.default_rng(0)
    for i in range(samples):
        cat = list(CATEGORIES)[i % len(CATEGORIES)]
        src = random_attributes(cat, rng)
        tgt, _ = mutate(cat, src, 1 + i % 2, rng)
        train |= {w for c in relative_captions(cat, src, tgt, rng) for w in c.lower().split()}
        train |= {w for v in src.values() for w in (v, *v.split("-"))} | {CATEGORIES[cat].noun}
    return train


def heldout_vocabulary(samples: int = 3000) -> set[str]:
    """The held-out synonyms' words that no training text can contain."""
    held = {w for ws in _HELDOUT_WORDS.values() for x in ws for w in x.split()}
    return held - _training_vocabulary(samples)


def dev_vocabulary() -> set[str]:
    """The development words (each a single word, none in a training text; tested)."""
    return {w for ws in _DEV_WORDS.values() for x in ws for w in x.split()}
