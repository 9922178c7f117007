"""Compositors: the query embedding as a function of an image and a text embedding.

Every compositor maps ``(img (B, D), txt (B, D)) -> (B, D)``; image-only and text-only are
compositors that ignore one input, so every model answers through one interface.
``elementwise_sum`` and ``combiner`` are CLIP4Cir's two stages.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..registry import Registry

COMPOSITORS: Registry[Compositor] = Registry("compositor")


class Compositor(nn.Module):
    """Base class: ``forward(img (B, D), txt (B, D)) -> (B, D)``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim <= 0:
            raise ValueError(f"compositor dim must be positive, got {dim}")
        self.dim = dim

    def forward(self, img: torch.Tensor, txt: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """Compose the two embeddings into a query embedding."""
        raise NotImplementedError


def build_compositor(name: str, dim: int, **kwargs) -> Compositor:
    """Build the compositor registered as ``name`` over ``dim``-d inputs."""
    return COMPOSITORS.get(name)(dim, **kwargs)


def _mlp(in_dim: int, hidden: int, out_dim: int, dropout: float) -> nn.Sequential:
    """Linear -> BatchNorm -> ReLU -> Dropout -> Linear."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden),
        nn.BatchNorm1d(hidden),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(hidden, out_dim),
    )


@COMPOSITORS.register("image_only")
class ImageOnly(Compositor):
    """The query is the image embedding; the text is ignored."""

    def forward(self, img: torch.Tensor, txt: torch.Tensor) -> torch.Tensor:
        """Return ``img`` (B, D)."""
        return img


@COMPOSITORS.register("text_only")
class TextOnly(Compositor):
    """The query is the text embedding; the image is ignored."""

    def forward(self, img: torch.Tensor, txt: torch.Tensor) -> torch.Tensor:
        """Return ``txt`` (B, D)."""
        return txt


@COMPOSITORS.register("elementwise_sum")
class ElementwiseSum(Compositor):
    """The query is ``img + txt``: CLIP4Cir's stage-1 combining function, no weights.

    The retrieval model L2-normalises the sum, as the published ``normalize(img + txt)``;
    fine-tuning CLIP through it is what makes the two spaces add up for the task.
    """

    def forward(self, img: torch.Tensor, txt: torch.Tensor) -> torch.Tensor:
        """``img + txt`` (B, D)."""
        return img + txt


@COMPOSITORS.register("concat")
class Concat(Compositor):
    """Concatenation followed by a 2-layer MLP with batch-norm, ReLU and dropout."""

    def __init__(self, dim: int, hidden: int | None = None, dropout: float = 0.1) -> None:
        super().__init__(dim)
        self.mlp = _mlp(2 * dim, hidden or 2 * dim, dim, dropout)

    def forward(self, img: torch.Tensor, txt: torch.Tensor) -> torch.Tensor:
        """MLP([img; txt]) -> (B, D)."""
        return self.mlp(torch.cat([img, txt], dim=1))


@COMPOSITORS.register("tirg")
class TIRG(Compositor):
    """Text Image Residual Gating (Vo et al., CVPR 2019).

    ``out = w_g * sigmoid(G([img; txt])) * img + w_r * R([img; txt])``. The gate keeps the
    parts of the image the text does not touch; the residual adds what the text changes.
    ``w_g`` and ``w_r`` start at 1.0 and 10.0, the values of the authors' released code:
    the residual MLP's output starts tiny next to the image feature, and the larger weight
    lets it matter from the first steps instead of the model settling on the image alone.
    """

    def __init__(
        self, dim: int, hidden: int | None = None, gate_init: float = 1.0,
        residual_init: float = 10.0, dropout: float = 0.0,
    ) -> None:
        super().__init__(dim)
        hidden = hidden or 2 * dim
        # Gate: BN -> ReLU -> Linear over the concatenation, as in the paper's code.
        self.gate = nn.Sequential(
            nn.BatchNorm1d(2 * dim), nn.ReLU(inplace=False), nn.Linear(2 * dim, dim)
        )
        # Residual: BN -> ReLU -> Linear -> ReLU -> Dropout -> Linear.
        self.residual = nn.Sequential(
            nn.BatchNorm1d(2 * dim), nn.ReLU(inplace=False), nn.Linear(2 * dim, hidden),
            nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, dim),
        )
        self.weights = nn.Parameter(torch.tensor([gate_init, residual_init]))

    def forward(self, img: torch.Tensor, txt: torch.Tensor) -> torch.Tensor:
        """Gated image plus residual -> (B, D)."""
        x = torch.cat([img, txt], dim=1)  # (B, 2D)
        gated = torch.sigmoid(self.gate(x)) * img  # (B, D)
        return self.weights[0] * gated + self.weights[1] * self.residual(x)


@COMPOSITORS.register("combiner")
class Combiner(Compositor):
    """The CLIP4Cir combiner (Baldrati et al., 2022).

    Image and text are each projected (Linear -> ReLU -> Dropout) and concatenated into a
    fused feature; a network on it (Linear -> ReLU -> Dropout -> Linear) gives the residual,
    another (Linear -> ReLU -> Dropout -> Linear -> Sigmoid) a mixing weight ``lambda`` in
    (0, 1) per query, and ``out = F(fused) + lambda * txt + (1 - lambda) * img``. Dropout 0.5
    everywhere, as published. Widths: ``proj_dim`` (else ``proj_factor * dim``) and
    ``hidden`` (else ``hidden_factor * dim``); the published network uses factors 4 and 8
    (2560 and 5120 on RN50x4's 640-d features). The defaults are half that, which keeps the
    synthetic comparison cheap on a CPU.
    """

    def __init__(
        self, dim: int, proj_dim: int | None = None, hidden: int | None = None,
        dropout: float = 0.5, proj_factor: float = 2.0, hidden_factor: float = 4.0,
    ) -> None:
        super().__init__(dim)
        if proj_factor <= 0 or hidden_factor <= 0:
            raise ValueError(f"proj_factor and hidden_factor must be positive, got {proj_factor} and {hidden_factor}")
        proj_dim = proj_dim or round(proj_factor * dim)
        hidden = hidden or round(hidden_factor * dim)
        self.img_proj = nn.Sequential(nn.Linear(dim, proj_dim), nn.ReLU(), nn.Dropout(dropout))
        self.txt_proj = nn.Sequential(nn.Linear(dim, proj_dim), nn.ReLU(), nn.Dropout(dropout))
        self.fuse = nn.Sequential(
            nn.Linear(2 * proj_dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, dim)
        )
        self.mix = nn.Sequential(
            nn.Linear(2 * proj_dim, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, 1), nn.Sigmoid(),
        )

    def forward(self, img: torch.Tensor, txt: torch.Tensor) -> torch.Tensor:
        """Fused projection plus a learned convex mix of text and image -> (B, D)."""
        fused = torch.cat([self.img_proj(img), self.txt_proj(txt)], dim=1)  # (B, 2P)
        lam = self.mix(fused)  # (B, 1)
        return self.fuse(fused) + lam * txt + (1 - lam) * img


@COMPOSITORS.register("complex_rotation")
class ComplexRotation(Compositor):
    """Text as a rotation of the image in a complex space (ComposeAE-style, Anwaar et al. 2021).

    The image is mapped to ``D`` complex numbers (real and imaginary parts); the text gives
    one angle per coordinate, ``theta in (-pi, pi)``; the image is rotated by
    ``exp(i * theta)`` and mapped back to ``D`` reals. Rotation keeps each coordinate's
    magnitude, so the text can change "which way" an attribute points but not erase it.
    """

    def __init__(self, dim: int, hidden: int | None = None, dropout: float = 0.1) -> None:
        super().__init__(dim)
        hidden = hidden or dim
        self.to_complex = nn.Linear(dim, 2 * dim)  # -> (real, imag)
        self.angles = _mlp(dim, hidden, dim, dropout)
        self.from_complex = nn.Sequential(nn.Linear(2 * dim, dim), nn.ReLU(), nn.Linear(dim, dim))
        self.skip = nn.Linear(dim, dim)

    def forward(self, img: torch.Tensor, txt: torch.Tensor) -> torch.Tensor:
        """Rotate the complex image embedding by text-given angles -> (B, D)."""
        re, im = self.to_complex(img).chunk(2, dim=1)  # (B, D) each
        theta = math.pi * torch.tanh(self.angles(txt))  # (B, D)
        cos, sin = torch.cos(theta), torch.sin(theta)
        rot_re = re * cos - im * sin
        rot_im = re * sin + im * cos
        return self.from_complex(torch.cat([rot_re, rot_im], dim=1)) + self.skip(img)
