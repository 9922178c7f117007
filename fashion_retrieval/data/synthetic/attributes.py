"""The attribute vocabulary of the synthetic catalogue: categories, colours, patterns.

Every attribute value is a single caption word (hyphenated where needed), and every
caption lists one word per attribute in a fixed order, so a caption determines the
attributes and two products that differ in one attribute have captions that differ in
exactly one word (what Fashion200k's test queries require).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# name -> RGB. Single words only (a caption is one word per attribute).
COLORS: dict[str, tuple[int, int, int]] = {
    "black": (28, 28, 32),
    "white": (238, 238, 232),
    "grey": (130, 130, 134),
    "red": (200, 32, 38),
    "maroon": (118, 22, 42),
    "pink": (238, 138, 178),
    "orange": (238, 128, 32),
    "yellow": (236, 206, 44),
    "beige": (214, 194, 150),
    "brown": (116, 72, 40),
    "green": (42, 138, 62),
    "olive": (108, 108, 40),
    "teal": (22, 128, 128),
    "blue": (44, 92, 208),
    "navy": (26, 36, 92),
    "purple": (118, 52, 150),
}

PATTERNS: tuple[str, ...] = ("solid", "striped", "polka-dot", "checked", "floral")


def color_lightness(name: str) -> float:
    """Relative luminance of a named colour in [0, 1] (for "darker" / "lighter")."""
    r, g, b = COLORS[name]
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255.0


@dataclass(frozen=True)
class CategorySpec:
    """A garment category: its caption noun, its own attributes and the Fashion200k folder.

    ``attributes`` maps an attribute name to its values, ordered from shortest / tightest
    to longest / loosest, so that relative captions ("longer sleeves") follow the order.
    """

    name: str
    noun: str
    attributes: dict[str, tuple[str, ...]]
    f200k_group: str  # Fashion200k label file category: dress, jacket, pants, skirt, top
    f200k_subcat: str


CATEGORIES: dict[str, CategorySpec] = {
    spec.name: spec
    for spec in [
        CategorySpec(
            "dress",
            "dress",
            {
                "sleeve": ("sleeveless", "short-sleeve", "long-sleeve"),
                "length": ("mini", "knee-length", "maxi"),
                "neckline": ("round-neck", "v-neck"),
            },
            "dress",
            "casual_dresses",
        ),
        CategorySpec(
            "skirt",
            "skirt",
            {"length": ("mini", "knee-length", "maxi"), "fit": ("pencil", "a-line")},
            "skirt",
            "skirts",
        ),
        CategorySpec(
            "pants",
            "pants",
            {"length": ("cropped", "full-length"), "fit": ("slim", "wide-leg")},
            "pants",
            "trousers",
        ),
        CategorySpec(
            "shorts",
            "shorts",
            {"length": ("mid-thigh", "knee-length"), "fit": ("slim", "loose")},
            "pants",
            "shorts",
        ),
        CategorySpec(
            "toptee",
            "t-shirt",
            {
                "sleeve": ("sleeveless", "short-sleeve", "long-sleeve"),
                "neckline": ("round-neck", "v-neck"),
            },
            "top",
            "t_shirts",
        ),
        CategorySpec(
            "shirt",
            "shirt",
            {"sleeve": ("short-sleeve", "long-sleeve"), "fit": ("slim", "loose")},
            "top",
            "shirts",
        ),
        CategorySpec(
            "jacket",
            "jacket",
            {"length": ("cropped", "hip-length", "knee-length"), "closure": ("zip-up", "buttoned")},
            "jacket",
            "casual_jackets",
        ),
    ]
}

# Caption order: colour, pattern, then the category's own attributes, then the noun.
COMMON_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "color": tuple(COLORS),
    "pattern": PATTERNS,
}


def attribute_values(category: str) -> dict[str, tuple[str, ...]]:
    """All attributes of ``category`` in caption order, each with its possible values."""
    spec = get_category(category)
    return {**COMMON_ATTRIBUTES, **spec.attributes}


def get_category(name: str) -> CategorySpec:
    """The spec of a category; an unknown name raises ``ValueError`` listing valid ones."""
    if name not in CATEGORIES:
        raise ValueError(
            f"unknown synthetic category {name!r}; valid categories: {', '.join(CATEGORIES)}"
        )
    return CATEGORIES[name]


@dataclass(frozen=True)
class Product:
    """One catalogue product: its attributes (ground truth) and unstated style.

    ``style`` holds what captions never mention (exact shade, pattern scale, orientation
    and second colour), shared inside a family of related products so that a target looks
    like its source in everything the relative caption does not change.
    """

    id: str
    number: int
    category: str
    attributes: dict[str, str] = field(hash=False)
    style: dict[str, Any] = field(hash=False, compare=False)


def caption_of(category: str, attributes: dict[str, str]) -> str:
    """The Fashion200k-style caption: one word per attribute, then the noun.

    >>> caption_of("shirt", {"color": "blue", "pattern": "striped", "sleeve": "long-sleeve",
    ...                      "fit": "slim"})
    'blue striped long-sleeve slim shirt'
    """
    names = attribute_values(category)
    missing = [n for n in names if n not in attributes]
    if missing:
        raise ValueError(f"{category} attributes lack {missing}")
    return " ".join([attributes[n] for n in names] + [get_category(category).noun])


def parse_caption(caption: str) -> tuple[str, dict[str, str]]:
    """Invert :func:`caption_of`: the category and attributes a caption states."""
    words = caption.split()
    for spec in CATEGORIES.values():
        names = list(attribute_values(spec.name))
        if words and words[-1] == spec.noun and len(words) == len(names) + 1:
            attrs = dict(zip(names, words[:-1], strict=False))
            values = attribute_values(spec.name)
            if all(attrs[n] in values[n] for n in names):
                return spec.name, attrs
    raise ValueError(f"not a synthetic catalogue caption: {caption!r}")


def random_attributes(category: str, rng: np.random.Generator) -> dict[str, str]:
    """Draw every attribute of ``category`` uniformly (patterns: solid twice as likely)."""
    out = {}
    for name, values in attribute_values(category).items():
        if name == "pattern":
            weights = np.array([2.0] + [1.0] * (len(values) - 1))
            out[name] = values[int(rng.choice(len(values), p=weights / weights.sum()))]
        else:
            out[name] = values[int(rng.integers(len(values)))]
    return out


def random_style(rng: np.random.Generator) -> dict[str, Any]:
    """Unstated product style: shade jitter, pattern scale/phase/angle, second colour."""
    return {
        "shade": [int(v) for v in rng.integers(-14, 15, size=3)],
        "pattern_scale": float(rng.uniform(4.0, 7.0)),
        "pattern_phase": float(rng.uniform(0.0, 1.0)),
        "pattern_vertical": bool(rng.random() < 0.4),
        "accent": ["white", "black", "yellow", "beige"][int(rng.integers(4))],
    }


def mutate(
    category: str,
    attributes: dict[str, str],
    n_changes: int,
    rng: np.random.Generator,
    only: list[str] | None = None,
) -> tuple[dict[str, str], list[str]]:
    """Change ``n_changes`` distinct attributes to other values.

    ``only`` restricts which attributes may change. Returns the new attributes and the
    names of the changed ones (in caption order).
    """
    values = attribute_values(category)
    names = [n for n in values if only is None or n in only]
    if n_changes > len(names):
        raise ValueError(f"cannot change {n_changes} of {len(names)} attributes of {category}")
    picked = {int(i) for i in rng.choice(len(names), size=n_changes, replace=False)}
    chosen = [n for i, n in enumerate(names) if i in picked]  # fixed order: reproducible draws
    new = dict(attributes)
    for name in chosen:
        others = [v for v in values[name] if v != attributes[name]]
        new[name] = others[int(rng.integers(len(others)))]
    return new, [n for n in values if n in chosen]


def differing(a: dict[str, str], b: dict[str, str]) -> list[str]:
    """Names of the attributes whose values differ between ``a`` and ``b``."""
    return [k for k in a if a.get(k) != b.get(k)]
