"""FashionIQ-style relative captions: two free-form captions describing what changes.

Each changed attribute is described by a phrase, explicit ("is blue instead of red",
"has long sleeves") or relative ("is darker", "has longer sleeves"). Every changed
attribute is stated explicitly in at least one of the two captions, so the pair of
captions (joined "c1 and c2" by the FashionIQ loader) together with the source image
determines the target's attributes; unchanged attributes are never mentioned.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fashion_retrieval.registry import Registry

from .attributes import attribute_values, color_lightness

PhraseFn = Callable[[str, str, str, np.random.Generator, bool], str]
PHRASES: Registry[str] = Registry("attribute phrase")

_PATTERN_ADJ = {
    "striped": ["striped"],
    "polka-dot": ["polka-dot", "dotted"],
    "checked": ["checked", "plaid", "checkered"],
    "floral": ["floral", "flowery"],
    "solid": ["plain", "solid"],
}
_PATTERN_NOUN = {
    "striped": ["stripes"],
    "polka-dot": ["polka dots", "dots"],
    "checked": ["checks", "a plaid pattern"],
    "floral": ["flowers", "a floral print"],
}
_VALUE_PHRASES = {
    "sleeveless": ["is sleeveless", "has no sleeves"],
    "short-sleeve": ["has short sleeves", "is short sleeved"],
    "long-sleeve": ["has long sleeves", "is long sleeved"],
    "mini": ["is a mini", "is mini length", "is very short"],
    "knee-length": ["is knee length", "reaches the knee"],
    "maxi": ["is maxi length", "is floor length", "is a maxi"],
    "cropped": ["is cropped", "is cropped length"],
    "full-length": ["is full length", "is ankle length"],
    "mid-thigh": ["is mid thigh length", "ends mid thigh"],
    "hip-length": ["is hip length", "ends at the hip"],
    "round-neck": ["has a round neck", "has a crew neck", "has a round neckline"],
    "v-neck": ["has a v-neck", "has a v neckline", "is v-necked"],
    "pencil": ["is a pencil skirt", "is straight and fitted"],
    "a-line": ["is an a-line", "is flared", "has an a-line cut"],
    "slim": ["is slim fit", "is slim fitting"],
    "wide-leg": ["has wide legs", "is wide leg"],
    "loose": ["is loose fitting", "is baggy", "has a loose fit"],
    "zip-up": ["has a zipper", "zips up", "is zipped"],
    "buttoned": ["has buttons", "buttons up", "is buttoned"],
}
_RELATIVE = {  # attribute -> (phrases when the target value is later, when earlier)
    "sleeve": (["has longer sleeves", "longer sleeves"], ["has shorter sleeves", "shorter sleeves"]),
    "length": (["is longer", "is a bit longer", "longer"], ["is shorter", "is a bit shorter", "shorter"]),
    "fit": (["is looser", "is more relaxed", "is less fitted"], ["is tighter", "is more fitted"]),
    "neckline": (["has a different neckline"], ["has a different neck"]),
    "closure": (["closes differently"], ["has a different closure"]),
}


def _pick(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]


@PHRASES.register("color")
def _color(category: str, src: str, tgt: str, rng: np.random.Generator, explicit: bool) -> str:
    if explicit:
        return _pick(rng, ["is {t}", "is {t} instead of {s}", "is {t} in color", "is {t} colored",
                           "has a {t} color", "is {t} rather than {s}", "is a {t} one",
                           "{t} instead of {s}", "changes the color to {t}"]).format(s=src, t=tgt)
    delta = color_lightness(tgt) - color_lightness(src)
    if delta < -0.08:
        return _pick(rng, ["is darker", "is a darker color", "darker", "has a darker shade"])
    if delta > 0.08:
        return _pick(rng, ["is lighter", "is a lighter color", "lighter", "is brighter"])
    return _pick(rng, ["is a different color", "has another color"])


@PHRASES.register("pattern")
def _pattern(category: str, src: str, tgt: str, rng: np.random.Generator, explicit: bool) -> str:
    if not explicit:
        if tgt == "solid":
            return _pick(rng, ["is plainer", "is simpler", "is less busy"])
        if src == "solid":
            return _pick(rng, ["has a pattern", "is patterned", "has a print"])
        return _pick(rng, ["has a different pattern", "has another print"])
    if tgt == "solid":
        options = ["is plain", "is solid", "has no pattern", "is without a pattern",
                   "is a solid color", "is plain instead of {sa}"]
        if src in _PATTERN_NOUN:
            options.append("has no {sn}")
        return _pick(rng, options).format(sa=_pick(rng, _PATTERN_ADJ[src]),
                                          sn=_pick(rng, _PATTERN_NOUN.get(src, ["pattern"])))
    options = ["has {tn}", "is {ta}", "has a {ta} pattern", "with {tn}", "is {ta} not {sa}",
               "has {tn} instead of {sp}"]
    sp = "being plain" if src == "solid" else _pick(rng, _PATTERN_NOUN[src])
    return _pick(rng, options).format(tn=_pick(rng, _PATTERN_NOUN[tgt]),
                                      ta=_pick(rng, _PATTERN_ADJ[tgt]),
                                      sa=_pick(rng, _PATTERN_ADJ[src]), sp=sp)


def _ordinal(name: str) -> PhraseFn:
    def phrase(category: str, src: str, tgt: str, rng: np.random.Generator,
               explicit: bool) -> str:
        if explicit:
            return _pick(rng, _VALUE_PHRASES[tgt])
        order = attribute_values(category)[name]
        later, earlier = _RELATIVE[name]
        return _pick(rng, later if order.index(tgt) > order.index(src) else earlier)

    phrase.__doc__ = f"A phrase for a change of {name}."
    return phrase


for _name in _RELATIVE:
    PHRASES.register(_name)(_ordinal(_name))


def describe_change(category: str, attribute: str, src: str, tgt: str,
                    rng: np.random.Generator, explicit: bool = True) -> str:
    """One phrase describing the change of ``attribute`` from ``src`` to ``tgt``."""
    if src == tgt:
        raise ValueError(f"{attribute} does not change ({src!r}); nothing to describe")
    return PHRASES.get(attribute)(category, src, tgt, rng, explicit)


def _join(phrases: list[str], rng: np.random.Generator) -> str:
    """Join phrases as a sentence: 'a', 'a and b', 'a, b and c'; light free-form variety."""
    out = [phrases[0]]
    for p in phrases[1:]:  # "is darker and is plain" -> "is darker and plain"
        out.append(p[3:] if p.startswith("is ") and out[-1].startswith("is ") else p)
    text = out[0] if len(out) == 1 else ", ".join(out[:-1]) + " and " + out[-1]
    roll = rng.random()
    if roll < 0.1 and text.startswith(("is ", "has ")):
        text = _pick(rng, ["it ", "this one ", "the item "]) + text
    elif roll < 0.16:
        text = "same style but " + text
    elif roll < 0.22:
        text = text + " please"
    if rng.random() < 0.15:
        text = text[0].upper() + text[1:]
    return text


def _combined_solid(category: str, changes: dict[str, tuple[str, str]],
                    rng: np.random.Generator) -> str | None:
    """'is a solid navy color' when the colour changes and the pattern becomes solid."""
    if "color" in changes and changes.get("pattern", ("", ""))[1] == "solid" and rng.random() < 0.5:
        return _pick(rng, ["is a solid {t} color", "is plain {t}", "is solid {t}"]).format(
            t=changes["color"][1])
    return None


def relative_captions(category: str, source: dict[str, str], target: dict[str, str],
                      rng: np.random.Generator) -> tuple[str, str]:
    """Two FashionIQ-style captions describing how ``target`` differs from ``source``.

    Each changed attribute is stated explicitly in at least one caption; the other
    caption mentions it (explicitly or relatively) half of the time.
    """
    names = [n for n in attribute_values(category) if source[n] != target[n]]
    if not names:
        raise ValueError("source and target have the same attributes; nothing to describe")
    changes = {n: (source[n], target[n]) for n in names}
    captions: list[list[str]] = [[], []]
    combined = _combined_solid(category, changes, rng)
    todo = [n for n in names if combined is None or n not in ("color", "pattern")]
    if combined is not None:
        captions[int(rng.integers(2))].append(combined)
    for n in todo:
        carrier = int(rng.integers(2))
        captions[carrier].append(describe_change(category, n, *changes[n], rng, True))
        if rng.random() < 0.5:
            explicit = bool(rng.random() < 0.4)
            captions[1 - carrier].append(describe_change(category, n, *changes[n], rng, explicit))
    for i in (0, 1):
        if not captions[i]:
            n = names[int(rng.integers(len(names)))]
            captions[i].append(describe_change(category, n, *changes[n], rng, rng.random() < 0.3))
        order = rng.permutation(len(captions[i]))
        captions[i] = [captions[i][j] for j in order]
    return _join(captions[0], rng), _join(captions[1], rng)
