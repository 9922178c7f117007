"""Colour descriptors appended to the backbone's pooled features.

ImageNet training makes pooled CNN features largely colour-invariant (on the synthetic
catalogue a linear probe on EfficientNet-Lite0's pooled features names the garment's
colour in about a third of held-out views), yet colour is the change shoppers ask for
most. A colour descriptor computed from the same preprocessed pixels restores it, for
every image encoder: it has no weights, so it is identical wherever the model runs, it is
stored in the checkpoint's config, and the feature cache stores it beside the backbone's
features (``RetrievalModel.image_features`` returns both, concatenated).

``COLOUR_FEATURES`` names the descriptors: ``none`` (0-d) and ``lab_fg`` (a soft
histogram in CIE Lab over a fixed grid of colour centres, each pixel weighted by how far
its colour is from the border's backdrop and by a centre prior: a foreground-aware pool;
followed by that foreground map itself at low resolution, a silhouette that helps the
shape attributes: garment type, sleeve, length).

Measured with ``python -m fashion_retrieval.evaluation.probe`` (hard preset, 900
products, EfficientNet-Lite0 at 128 px, train views -> val views, C=1): pooled features
alone name the colour in 27% of views; the histogram alone in 87%; the silhouette lifts
garment type from 89% to 91% and sleeve from 92% to 97%.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import Registry

COLOUR_FEATURES: Registry[type[nn.Module]] = Registry("colour feature")


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1] ``(B, 3, H, W)`` -> CIE Lab (D65) ``(B, 3, H, W)``; L in [0, 100]."""
    rgb = rgb.clamp(0.0, 1.0)
    lin = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    m = rgb.new_tensor([[0.4124564, 0.3575761, 0.1804375],
                        [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]])
    xyz = torch.einsum("ij,bjhw->bihw", m, lin)
    white = rgb.new_tensor([0.95047, 1.0, 1.08883]).view(1, 3, 1, 1)
    t = xyz / white
    f = torch.where(t > (6 / 29) ** 3, t.clamp_min(1e-12) ** (1 / 3), t / (3 * (6 / 29) ** 2) + 4 / 29)
    fx, fy, fz = f[:, 0], f[:, 1], f[:, 2]
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], dim=1)


L_LEVELS = (15.0, 35.0, 55.0, 75.0, 92.0)  # the lattice of Lab centres the histograms vote on
AB_LEVELS = (-60.0, -40.0, -20.0, 0.0, 20.0, 40.0, 60.0, 80.0)
LAB_BINS = len(L_LEVELS) * len(AB_LEVELS) ** 2


def axis_votes(lab: torch.Tensor, l_levels: torch.Tensor, ab_levels: torch.Tensor,
               sigma: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Soft votes of Lab points ``(..., 3)`` on each axis of the lattice: ``(..., nL)``, ``(..., nAB)`` x2.

    A point's vote over the lattice is a softmax of ``-|x - c|^2 / 2 sigma^2``; on a Cartesian
    lattice that factorises into one softmax per axis (no point-to-centre distance table).
    """
    def axis(values: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
        return torch.softmax(-((values[..., None] - levels) ** 2) / (2 * sigma**2), dim=-1)

    return axis(lab[..., 0], l_levels), axis(lab[..., 1], ab_levels), axis(lab[..., 2], ab_levels)


def lab_votes(lab: torch.Tensor, sigma: float = 11.0) -> torch.Tensor:
    """Each Lab point's soft vote over the whole lattice: ``(N, 3) -> (N, LAB_BINS)``, rows sum to 1.

    The bins are ordered as :class:`LabForegroundHistogram`'s, so a colour named in words
    and a colour seen in pixels land in the same bins.
    """
    vl, va, vb = axis_votes(lab.float(), torch.tensor(L_LEVELS), torch.tensor(AB_LEVELS), sigma)
    return (vl[:, :, None, None] * va[:, None, :, None] * vb[:, None, None, :]).flatten(1)


class NoColour(nn.Module):
    """No colour descriptor: a ``(B, 0)`` tensor."""

    output_dim = 0

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.settings: dict = {}

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 0)."""
        return pixels.new_zeros(pixels.shape[0], 0)


class LabForegroundHistogram(nn.Module):
    """Foreground colour histogram and silhouette: ``(B, 3, H, W) -> (B, K + S*S)``.

    The pixels are un-normalised with the encoder's ``mean``/``std``, pooled to ``grid``
    x ``grid``, converted to Lab and softly assigned to a fixed lattice of Lab centres
    (Gaussian kernel). Each pixel's vote is weighted by a centre prior times its Lab
    distance from the backdrop (the median colour of the border), so a garment in front
    of a plain or dark studio backdrop dominates its own histogram. The histogram is
    normalised to sum 1, square-rooted (Hellinger) and multiplied by ``hist_scale``: unit
    norm would leave each bin varying ~20x less than a CNN's pooled feature, so a head
    trained by SGD beside those features would barely learn from colour. The foreground
    map (backdrop distance, no prior), pooled to ``silhouette`` x ``silhouette``, follows.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], grid: int = 48,
                 sigma: float = 11.0, centre_sigma: float = 0.45, backdrop_scale: float = 12.0,
                 silhouette: int = 16, hist_scale: float = 16.0) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("l_levels", torch.tensor(L_LEVELS), persistent=False)
        self.register_buffer("ab_levels", torch.tensor(AB_LEVELS), persistent=False)
        ys = torch.linspace(-1, 1, grid)
        yy, xx = torch.meshgrid(ys, ys, indexing="ij")
        prior = torch.exp(-(xx**2 + yy**2) / (2 * centre_sigma**2))  # (G, G)
        self.register_buffer("prior", prior.flatten(), persistent=False)
        border = torch.zeros(grid, grid, dtype=torch.bool)
        border[:2], border[-2:], border[:, :2], border[:, -2:] = True, True, True, True
        self.register_buffer("border", border.flatten(), persistent=False)
        self.grid, self.sigma, self.backdrop_scale = grid, sigma, backdrop_scale
        self.silhouette, self.hist_scale = silhouette, hist_scale
        self.settings = {"grid": grid, "sigma": sigma, "centre_sigma": centre_sigma,
                         "backdrop_scale": backdrop_scale, "silhouette": silhouette, "hist_scale": hist_scale}
        self.bins = LAB_BINS
        self.output_dim = self.bins + silhouette * silhouette

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised pixels -> (B, K + S*S): histogram, then silhouette."""
        rgb = pixels.float() * self.std + self.mean  # (B, 3, H, W) in [0, 1]
        rgb = F.adaptive_avg_pool2d(rgb, self.grid)  # (B, 3, G, G)
        lab = rgb_to_lab(rgb).flatten(2).transpose(1, 2)  # (B, G*G, 3)
        backdrop = lab[:, self.border].median(dim=1).values  # (B, 3)
        dist = (lab - backdrop[:, None]).norm(dim=-1)  # (B, G*G)
        foreground = 1 - torch.exp(-((dist / self.backdrop_scale) ** 2))  # (B, G*G) in [0, 1)
        weight = self.prior * foreground
        vl, va, vb = axis_votes(lab, self.l_levels, self.ab_levels, self.sigma)  # (B, P, nL), (B, P, nAB) x2
        vl = vl * weight[..., None]
        la = (vl[..., :, None] * va[..., None, :]).flatten(2)  # (B, P, nL*nAB)
        hist = torch.bmm(la.transpose(1, 2), vb).flatten(1)  # (B, nL*nAB*nAB)
        hist = hist / hist.sum(dim=1, keepdim=True).clamp_min(1e-8)
        side = foreground.view(-1, 1, self.grid, self.grid)
        shape = F.adaptive_avg_pool2d(side, self.silhouette).flatten(1)  # (B, S*S)
        return torch.cat([self.hist_scale * hist.sqrt(), shape], dim=1)


COLOUR_FEATURES.register("none")(NoColour)
COLOUR_FEATURES.register("lab_fg")(LabForegroundHistogram)


def build_colour_features(name: str, mean: Sequence[float], std: Sequence[float]) -> nn.Module:
    """The colour descriptor ``name`` for pixels normalised by ``mean``/``std``."""
    return COLOUR_FEATURES.get(name)(mean, std)
