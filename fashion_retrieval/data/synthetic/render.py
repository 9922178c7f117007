"""Rendering a product view: polygon masks, vectorised pattern fills, views and lighting.

Everything is numpy over the whole pixel grid plus PIL polygon drawing; no per-pixel Python.
A view is drawn from a generator seeded by (seed, product number, view index), so the
image is the same whichever process renders it and in whatever order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from fashion_retrieval.registry import Registry

from .attributes import COLORS, Product
from .shapes import Shapes, category_frame, garment_shapes

PatternFn = Callable[[np.ndarray, np.ndarray, dict], np.ndarray]
PATTERN_FILLS: Registry[np.ndarray] = Registry("pattern")


@dataclass(frozen=True)
class ViewConfig:
    """How much the views of one product differ (the presets set these)."""

    shift: float = 0.05  # max centre offset, fraction of half the image
    scale: tuple[float, float] = (0.9, 1.0)
    rotation: float = 4.0  # max degrees either way
    brightness: tuple[float, float] = (0.92, 1.08)
    tint: float = 0.04  # per-channel colour-temperature jitter
    gradient: float = 0.1  # directional lighting strength
    noise: float = 2.0  # pixel noise std, 0..255 scale
    clutter: int = 0  # max background objects
    occlusion: float = 0.0  # probability of an occluding object over the garment
    dark_backgrounds: bool = False


def _frac(x: np.ndarray) -> np.ndarray:
    return x - np.floor(x)


@PATTERN_FILLS.register("solid")
def _solid(u: np.ndarray, v: np.ndarray, style: dict) -> np.ndarray:
    return np.zeros_like(u)


@PATTERN_FILLS.register("striped")
def _striped(u: np.ndarray, v: np.ndarray, style: dict) -> np.ndarray:
    w = u if style["pattern_vertical"] else v
    return (_frac(w * style["pattern_scale"] + style["pattern_phase"]) < 0.4).astype(np.float32)


@PATTERN_FILLS.register("polka-dot")
def _dots(u: np.ndarray, v: np.ndarray, style: dict) -> np.ndarray:
    f = style["pattern_scale"] * 0.8
    gu = u * f + style["pattern_phase"]
    row = np.floor(gu) % 2  # offset every other column, like a printed dot grid
    du = _frac(gu) - 0.5
    dv = _frac(v * f + 0.5 * row) - 0.5
    return (du * du + dv * dv < 0.26**2).astype(np.float32)


@PATTERN_FILLS.register("checked")
def _checked(u: np.ndarray, v: np.ndarray, style: dict) -> np.ndarray:
    f = style["pattern_scale"] * 0.6
    a = _frac(u * f + style["pattern_phase"]) < 0.5
    b = _frac(v * f + style["pattern_phase"]) < 0.5
    return 0.5 * a + 0.5 * b  # gingham: crossings full, bands half


@PATTERN_FILLS.register("floral")
def _floral(u: np.ndarray, v: np.ndarray, style: dict) -> np.ndarray:
    f = style["pattern_scale"] * 0.5
    gu = u * f + style["pattern_phase"]
    du = _frac(gu) - 0.5
    dv = _frac(v * f + 0.5 * (np.floor(gu) % 2)) - 0.5
    r = np.hypot(du, dv)
    petals = r < 0.36 * (0.5 + 0.5 * np.abs(np.cos(2.5 * np.arctan2(dv, du))))
    centre = r < 0.09
    return np.where(centre, 0.45, petals.astype(np.float32))


@lru_cache(maxsize=8)
def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    return xs, ys  # (S, S) each


@dataclass(frozen=True)
class _View:
    matrix: np.ndarray  # (2, 2) garment units -> pixels
    offset: np.ndarray  # (2,)


def _sample_view(rng: np.random.Generator, category: str, size: int, cfg: ViewConfig) -> _View:
    cx, cy, ext = category_frame(category)
    scale = rng.uniform(*cfg.scale) * size / 2 * 0.92 / ext
    angle = np.deg2rad(rng.uniform(-cfg.rotation, cfg.rotation))
    c, s = np.cos(angle), np.sin(angle)
    m = scale * np.array([[c, -s], [s, c]])
    centre = size / 2 * (1 + rng.uniform(-cfg.shift, cfg.shift, size=2))
    return _View(m, centre - m @ np.array([cx, cy]))


def _to_pixels(poly: list, view: _View, factor: float = 1.0) -> list[tuple[float, float]]:
    pts = np.asarray(poly, dtype=np.float64) @ view.matrix.T + view.offset  # (P, 2)
    return [tuple(p) for p in (pts * factor).tolist()]


def _mask(shapes: Shapes, view: _View, size: int) -> Image.Image:
    """Antialiased garment mask: drawn at twice the size, box-downsampled."""
    big = Image.new("L", (2 * size, 2 * size), 0)
    draw = ImageDraw.Draw(big)
    for poly in shapes.body:
        draw.polygon(_to_pixels(poly, view, 2.0), fill=255)
    for poly in shapes.cuts:
        draw.polygon(_to_pixels(poly, view, 2.0), fill=0)
    return big.resize((size, size), Image.BOX)


def _background(rng: np.random.Generator, size: int, cfg: ViewConfig) -> Image.Image:
    """A plain studio backdrop with a gradient, plus clutter objects in hard views."""
    if cfg.dark_backgrounds and rng.random() < 0.4:
        base = rng.uniform(60, 200, size=3)
    else:
        base = rng.uniform(215, 250) + rng.uniform(-8, 8, size=3)
    ramp = np.linspace(1.0, rng.uniform(0.82, 1.0), size, dtype=np.float32)[:, None, None]
    bg = np.clip(base[None, None, :] * ramp * np.ones((1, size, 1)), 0, 255)
    img = Image.fromarray(bg.astype(np.uint8))
    n = int(rng.integers(0, cfg.clutter + 1)) if cfg.clutter else 0
    draw = ImageDraw.Draw(img)
    for _ in range(n):
        x0, y0 = rng.uniform(-0.1, 0.9, size=2) * size
        w, h = rng.uniform(0.1, 0.45, size=2) * size
        colour = tuple(int(c) for c in rng.integers(40, 230, size=3))
        kind = rng.integers(3)
        if kind == 0:
            draw.rectangle([x0, y0, x0 + w, y0 + h], fill=colour)
        elif kind == 1:
            draw.ellipse([x0, y0, x0 + w, y0 + h], fill=colour)
        else:
            draw.line([x0, y0, x0 + w, y0 + h], fill=colour, width=max(1, size // 24))
    return img


def _contrasting_accent(base: np.ndarray, accent_name: str) -> np.ndarray:
    """The pattern's second colour, swapped for black or white when too close to the base."""
    accent = np.asarray(COLORS[accent_name], dtype=np.float32)
    if np.abs(accent - base).sum() < 180:
        accent = np.array([240.0, 240, 235]) if base.mean() < 128 else np.array([30.0, 30, 35])
    return accent


def _fill(product: Product, view: _View, size: int, mask: Image.Image) -> np.ndarray:
    """The garment's colours over the whole grid: base, pattern and soft shading. (S, S, 3)"""
    xs, ys = _pixel_grid(size)
    inv = np.linalg.inv(view.matrix)
    px, py = xs - view.offset[0], ys - view.offset[1]
    u = inv[0, 0] * px + inv[0, 1] * py  # (S, S) garment units
    v = inv[1, 0] * px + inv[1, 1] * py
    base = np.clip(np.asarray(COLORS[product.attributes["color"]], np.float32)
                   + np.asarray(product.style["shade"], np.float32), 0, 255)
    accent = _contrasting_accent(base, product.style["accent"])
    m = PATTERN_FILLS.get(product.attributes["pattern"])(u, v, product.style)[..., None]
    rgb = base * (1 - m) + accent * m  # (S, S, 3)
    soft = np.asarray(mask.filter(ImageFilter.GaussianBlur(size * 0.03)), np.float32) / 255
    fold = 1.0 - 0.06 * np.cos(u * 5.0) ** 2  # gentle fabric folds
    return rgb * ((0.7 + 0.3 * soft) * fold)[..., None]


def _details(draw: ImageDraw.ImageDraw, shapes: Shapes, view: _View, base: np.ndarray,
             size: int) -> None:
    """Trims, seams, buttons and outlines, in shades of the base colour."""
    def colour(shade: float) -> tuple[int, ...]:
        c = base * shade if shade <= 1 else base + (255 - base) * (shade - 1)
        return tuple(int(x) for x in np.clip(c, 0, 255))

    px_per_unit = float(np.abs(np.linalg.det(view.matrix)) ** 0.5)
    for poly, shade in shapes.trims:
        draw.polygon(_to_pixels(poly, view), fill=colour(shade), outline=colour(shade * 0.8))
    for pts, shade, width in shapes.lines:
        draw.line(_to_pixels(pts, view), fill=colour(shade), width=max(1, round(width * px_per_unit)))
    for x, y, r, shade in shapes.dots:
        (cx, cy), = _to_pixels([(x, y)], view)
        rr = max(1.0, r * px_per_unit)
        draw.ellipse([cx - rr, cy - rr, cx + rr, cy + rr], fill=colour(shade))
    for poly in shapes.body:
        draw.polygon(_to_pixels(poly, view), outline=colour(0.6))


def _occlude(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int) -> None:
    """An object partly in front of the garment (a bag, a hand, a tag)."""
    w, h = rng.uniform(0.18, 0.34, size=2) * size
    side = rng.integers(4)
    cx = size * (rng.uniform(0.25, 0.75) if side < 2 else (0.2 if side == 2 else 0.8))
    cy = size * ((0.25 if side == 0 else 0.78) if side < 2 else rng.uniform(0.3, 0.7))
    colour = tuple(int(c) for c in rng.integers(30, 230, size=3))
    box = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
    if rng.random() < 0.5:
        draw.ellipse(box, fill=colour)
    else:
        draw.rounded_rectangle(box, radius=size * 0.04, fill=colour)


def _lighting(img: np.ndarray, rng: np.random.Generator, cfg: ViewConfig) -> np.ndarray:
    """Brightness, colour temperature, a directional gradient and sensor noise. (S, S, 3)"""
    size = img.shape[0]
    xs, ys = _pixel_grid(size)
    phi = rng.uniform(0, 2 * np.pi)
    ramp = 1 + cfg.gradient * ((xs / size - 0.5) * np.cos(phi) + (ys / size - 0.5) * np.sin(phi))
    gain = rng.uniform(*cfg.brightness) * (1 + rng.uniform(-cfg.tint, cfg.tint, size=3))
    out = img * ramp[..., None] * gain.astype(np.float32)
    if cfg.noise:
        out = out + rng.normal(0, cfg.noise, size=out.shape).astype(np.float32)
    return np.clip(out, 0, 255)


def render_image(product: Product, view: int, size: int = 128, cfg: ViewConfig | None = None,
                 seed: int = 0) -> Image.Image:
    """Render view ``view`` of ``product`` as an RGB image of ``size`` x ``size`` pixels."""
    if size < 16:
        raise ValueError(f"image size must be at least 16 pixels, got {size}")
    cfg = cfg or ViewConfig()
    rng = np.random.default_rng([seed, product.number, view, 17])
    geometry = _sample_view(rng, product.category, size, cfg)
    shapes = garment_shapes(product.category, product.attributes)
    bg = np.asarray(_background(rng, size, cfg), np.float32)  # (S, S, 3)
    mask = _mask(shapes, geometry, size)
    alpha = np.asarray(mask, np.float32)[..., None] / 255  # (S, S, 1)
    composed = bg * (1 - alpha) + _fill(product, geometry, size, mask) * alpha
    img = Image.fromarray(composed.astype(np.uint8))
    draw = ImageDraw.Draw(img)
    base = np.clip(np.asarray(COLORS[product.attributes["color"]], np.float32)
                   + np.asarray(product.style["shade"], np.float32), 0, 255) * 0.95
    _details(draw, shapes, geometry, base, size)
    if cfg.occlusion and rng.random() < cfg.occlusion:
        _occlude(draw, rng, size)
    lit = _lighting(np.asarray(img, np.float32), rng, cfg)
    return Image.fromarray(lit.astype(np.uint8))
