"""Garment geometry: each category's outline, cut-outs and details as polygons.

Coordinates are garment units, x to the right and y down, roughly in [-1, 1.6]. A shape
depends only on the attributes that change the outline (sleeve, length, fit, neckline,
closure); colour and pattern are filled in by the renderer.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from functools import cache

import numpy as np

from fashion_retrieval.registry import Registry

from .attributes import get_category

Point = tuple[float, float]
Poly = list[Point]


@dataclass
class Shapes:
    """What to draw for one garment, in garment units.

    ``body`` polygons are filled with the colour and pattern, ``cuts`` are removed from
    them; ``trims`` (polygon, shade) are solid and drawn on top with the main colour times
    shade; ``lines`` (points, shade, width) are seams, plackets and zips; ``dots``
    (x, y, radius, shade) are buttons.
    """

    body: list[Poly] = field(default_factory=list)
    cuts: list[Poly] = field(default_factory=list)
    trims: list[tuple[Poly, float]] = field(default_factory=list)
    lines: list[tuple[Poly, float, float]] = field(default_factory=list)
    dots: list[tuple[float, float, float, float]] = field(default_factory=list)


SHAPES: Registry[Shapes] = Registry("garment shape")


def mirror(poly: Poly) -> Poly:
    """The polygon reflected about the vertical axis (x -> -x), order reversed."""
    return [(-x, y) for x, y in reversed(poly)]


def ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 24) -> Poly:
    """A polygon approximating an ellipse."""
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    return [(float(cx + rx * np.cos(a)), float(cy + ry * np.sin(a))) for a in t]


def _sleeve(kind: str, shoulder: Point, armpit: Point) -> Poly | None:
    """The left sleeve polygon for 'sleeveless' / 'short-sleeve' / 'long-sleeve'."""
    sx, sy = shoulder
    ax, ay = armpit
    if kind == "sleeveless":
        return None
    if kind == "short-sleeve":
        return [shoulder, (sx - 0.32, sy + 0.24), (sx - 0.18, sy + 0.42), (ax, ay - 0.06)]
    return [
        shoulder,
        (sx - 0.24, sy + 0.34),
        (sx - 0.28, sy + 0.96),
        (sx - 0.12, sy + 0.98),
        (sx - 0.04, sy + 0.52),
        (ax, ay),
    ]


def _top(shapes: Shapes, sleeve: str, hem_y: float, hem_w: float, waist_w: float = 0.4) -> None:
    """Add a torso with sleeves (shoulders at y=-0.62, neck at -0.7) to ``shapes``."""
    shoulder_x = 0.36 if sleeve == "sleeveless" else 0.44
    armpit = (-0.40, -0.24)
    left = [(-0.2, -0.7), (-shoulder_x, -0.62), armpit, (-waist_w, (armpit[1] + hem_y) / 2)]
    left.append((-hem_w, hem_y))
    shapes.body.append(left + mirror(left))
    sl = _sleeve(sleeve, (-shoulder_x, -0.62), armpit)
    if sl is not None:
        shapes.body += [sl, mirror(sl)]
        if sleeve == "long-sleeve":  # cuffs
            (x0, y0), (x1, y1) = sl[2], sl[3]
            cuff = [(x0, y0 - 0.1), (x1, y1 - 0.1), (x1, y1), (x0, y0)]
            shapes.trims += [(cuff, 0.85), (mirror(cuff), 0.85)]
    shapes.lines.append(([(-hem_w + 0.02, hem_y - 0.05), (hem_w - 0.02, hem_y - 0.05)], 0.8, 0.012))


def _neckline(shapes: Shapes, kind: str) -> None:
    """Cut a round or v neckline and add its rib line."""
    if kind == "v-neck":
        cut = [(-0.2, -0.72), (0.2, -0.72), (0.0, -0.4)]
        shapes.lines.append(([(-0.2, -0.7), (0.0, -0.4), (0.2, -0.7)], 0.75, 0.025))
    else:
        cut = ellipse(0.0, -0.71, 0.2, 0.13)
        arc = [p for p in ellipse(0.0, -0.71, 0.2, 0.13, 32) if p[1] >= -0.71]
        shapes.lines.append((sorted(arc), 0.75, 0.025))
    shapes.cuts.append(cut)


@SHAPES.register("toptee")
def toptee_shape(attrs: dict[str, str]) -> Shapes:
    """A t-shirt or tank top."""
    s = Shapes()
    _top(s, attrs["sleeve"], 0.62, 0.40, 0.38)
    _neckline(s, attrs["neckline"])
    return s


@SHAPES.register("shirt")
def shirt_shape(attrs: dict[str, str]) -> Shapes:
    """A button-down shirt with a collar."""
    s = Shapes()
    loose = attrs["fit"] == "loose"
    hem_w = 0.50 if loose else 0.36
    _top(s, attrs["sleeve"], 0.7, hem_w, 0.46 if loose else 0.34)
    s.cuts.append([(-0.2, -0.72), (0.2, -0.72), (0.0, -0.52)])
    collar = [(-0.22, -0.74), (-0.02, -0.54), (-0.12, -0.44), (-0.28, -0.6)]
    s.trims += [(collar, 1.12), (mirror(collar), 1.12)]
    s.lines.append(([(0.0, -0.52), (0.0, 0.7)], 0.7, 0.015))
    s.dots += [(0.04, y, 0.03, 1.35) for y in np.arange(-0.4, 0.65, 0.2)]
    return s


@SHAPES.register("jacket")
def jacket_shape(attrs: dict[str, str]) -> Shapes:
    """A jacket: long sleeves, lapels, pockets, zip or buttons."""
    s = Shapes()
    hem = {"cropped": 0.2, "hip-length": 0.62, "knee-length": 1.2}[attrs["length"]]
    _top(s, "long-sleeve", hem, 0.48, 0.44)
    s.cuts.append([(-0.18, -0.72), (0.18, -0.72), (0.0, -0.3)])
    lapel = [(-0.2, -0.72), (-0.01, -0.28), (-0.2, -0.42), (-0.32, -0.62)]
    s.trims += [(lapel, 0.78), (mirror(lapel), 0.78)]
    if attrs["closure"] == "zip-up":
        s.lines.append(([(0.0, -0.3), (0.0, hem)], 1.6, 0.03))
        s.trims.append(([(-0.03, -0.3), (0.03, -0.3), (0.03, -0.2), (-0.03, -0.2)], 1.7))
    else:
        s.lines.append(([(0.0, -0.3), (0.0, hem)], 0.6, 0.015))
        s.dots += [(0.06, y, 0.04, 0.45) for y in np.linspace(-0.2, hem - 0.12, 4)]
    if hem > 0.3:
        py = hem - 0.32
        pocket = [(-0.36, py), (-0.14, py), (-0.14, py + 0.18), (-0.36, py + 0.18)]
        s.trims += [(pocket, 0.86), (mirror(pocket), 0.86)]
    return s


@SHAPES.register("dress")
def dress_shape(attrs: dict[str, str]) -> Shapes:
    """A dress: bodice with sleeves and neckline, flared skirt to the given length."""
    s = Shapes()
    _top(s, attrs["sleeve"], -0.12, 0.3, 0.34)
    s.lines.pop()  # no hem line at the waist
    hem = {"mini": 0.45, "knee-length": 0.9, "maxi": 1.5}[attrs["length"]]
    hw = 0.34 + 0.28 * (hem + 0.12)
    s.body.append([(-0.3, -0.14), (-hw, hem), (hw, hem), (0.3, -0.14)])
    s.lines.append(([(-0.3, -0.12), (0.3, -0.12)], 0.75, 0.02))
    s.lines += [([(x * 0.3, -0.1), (x * hw * 0.9, hem - 0.04)], 0.85, 0.01) for x in (-0.5, 0.5)]
    _neckline(s, attrs["neckline"])
    return s


@SHAPES.register("skirt")
def skirt_shape(attrs: dict[str, str]) -> Shapes:
    """A skirt: waistband, pencil or a-line, mini to maxi."""
    s = Shapes()
    hem = {"mini": 0.0, "knee-length": 0.55, "maxi": 1.25}[attrs["length"]]
    hw = 0.36 if attrs["fit"] == "pencil" else 0.42 + 0.42 * (hem + 0.62)
    s.body.append([(-0.4, -0.64), (-0.44, -0.4), (-hw, hem), (hw, hem), (0.44, -0.4), (0.4, -0.64)])
    s.trims.append(([(-0.4, -0.76), (0.4, -0.76), (0.4, -0.62), (-0.4, -0.62)], 0.8))
    if attrs["fit"] == "a-line":
        s.lines += [([(x * 0.2, -0.6), (x * hw * 0.55, hem - 0.02)], 0.82, 0.012) for x in (-1, 1)]
    else:
        s.lines.append(([(0.0, hem), (0.0, hem - 0.22)], 0.6, 0.015))  # back slit
    return s


def _legs(s: Shapes, top: float, crotch: float, hem: float, outer: float, inner: float) -> None:
    """Two legs joined at the crotch, with waistband, fly and hem lines."""
    s.body.append([(-0.42, top), (-outer, hem), (-inner, hem), (0.0, crotch)] + [
        (inner, hem), (outer, hem), (0.42, top)])
    s.trims.append(([(-0.42, top - 0.11), (0.42, top - 0.11), (0.42, top), (-0.42, top)], 0.8))
    s.lines.append(([(0.0, top), (0.0, crotch - 0.05)], 0.7, 0.012))
    s.lines += [([(x * 0.42, top + 0.02), (x * 0.24, top + 0.2)], 0.7, 0.012) for x in (-1, 1)]
    s.lines += [([(x * outer, hem - 0.06), (x * inner, hem - 0.06)], 0.8, 0.012) for x in (-1, 1)]


@SHAPES.register("pants")
def pants_shape(attrs: dict[str, str]) -> Shapes:
    """Trousers: slim or wide-leg, cropped or full-length."""
    s = Shapes()
    hem = {"cropped": 0.62, "full-length": 1.1}[attrs["length"]]
    outer, inner = (0.36, 0.1) if attrs["fit"] == "slim" else (0.58, 0.05)
    _legs(s, -0.9, -0.3, hem, outer, inner)
    return s


@SHAPES.register("shorts")
def shorts_shape(attrs: dict[str, str]) -> Shapes:
    """Shorts: slim or loose, mid-thigh or knee-length."""
    s = Shapes()
    hem = {"mid-thigh": 0.05, "knee-length": 0.5}[attrs["length"]]
    outer, inner = (0.45, 0.06) if attrs["fit"] == "slim" else (0.6, 0.03)
    _legs(s, -0.55, -0.12, hem, outer, inner)
    return s


def garment_shapes(category: str, attrs: dict[str, str]) -> Shapes:
    """The shapes of a garment of ``category`` with ``attrs``."""
    get_category(category)
    return SHAPES.get(category)(attrs)


@cache
def category_frame(category: str) -> tuple[float, float, float]:
    """(centre x, centre y, half extent) of every variant of ``category`` together.

    One frame per category, not per garment, so a mini skirt is drawn shorter than a
    maxi skirt instead of being stretched to the same height.
    """
    spec = get_category(category)
    names = list(spec.attributes)
    pts = []
    for combo in itertools.product(*spec.attributes.values()):
        shapes = garment_shapes(category, dict(zip(names, combo, strict=False)))
        for poly in shapes.body:
            pts += poly
    arr = np.asarray(pts)
    lo, hi = arr.min(0), arr.max(0)
    centre = (lo + hi) / 2
    return float(centre[0]), float(centre[1]), float((hi - lo).max() / 2)
