"""EfficientNet-Lite0 in plain torch, laid out as timm's ``efficientnet_lite0``.

The offline backbone of the embedded default. Importing timm costs about 2.3 s at every
start (it imports torchvision, which imports torch's compiler), more than loading the five
default models; this module builds the same network from torch alone. Module and weight
names are timm's (``conv_stem``, ``bn1``, ``blocks.S.B.conv_pw`` ...), in timm's order, so
checkpoints saved with either load into the other, and the outputs equal timm's bit for
bit in evaluation and in training (``tests/test_lite0.py``): the same operations in the
same order (BatchNorm, then ReLU6 in place; the residual added after the projection).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .skip_init import skipping

# (repeats, kernel, stride, expansion, out channels) per stage: the EfficientNet-B0 stages at
# Lite0's width and depth (1.0, 1.0), without squeeze-and-excitation, with ReLU6.
STAGES = [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112),
          (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)]
STEM, HEAD = 32, 1280


def _bn_relu6(bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    return F.hardtanh(bn(x), 0.0, 6.0, inplace=True)  # timm's BatchNormAct2d with ReLU6(inplace=True)


class DepthwiseSeparable(nn.Module):
    """Stage 0: depthwise 3x3 (BN, ReLU6), pointwise projection (BN)."""

    def __init__(self, cin: int, cout: int, kernel: int) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(cin, cin, kernel, 1, kernel // 2, groups=cin, bias=False)
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv_pw = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.has_skip = cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv_pw(_bn_relu6(self.bn1, self.conv_dw(x))))
        return out + x if self.has_skip else out


class InvertedResidual(nn.Module):
    """Expansion 1x1 (BN, ReLU6), depthwise kxk (BN, ReLU6), projection 1x1 (BN), plus the input
    when the shape is kept."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expansion: int) -> None:
        super().__init__()
        mid = cin * expansion
        self.conv_pw = nn.Conv2d(cin, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv_dw = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv_pwl = nn.Conv2d(mid, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.has_skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = _bn_relu6(self.bn1, self.conv_pw(x))
        out = _bn_relu6(self.bn2, self.conv_dw(out))
        out = self.bn3(self.conv_pwl(out))
        return out + x if self.has_skip else out


class EfficientNetLite0(nn.Module):
    """``forward(pixels) -> (B, 1000)`` logits, or ``(B, 1280)`` pooled features after
    ``reset_classifier(0)`` (timm's interface for both)."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv_stem = nn.Conv2d(3, STEM, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(STEM)
        stages, cin = [], STEM
        for repeats, kernel, stride, expansion, cout in STAGES:
            blocks = []
            for i in range(repeats):
                s = stride if i == 0 else 1
                blocks.append(DepthwiseSeparable(cin, cout, kernel) if expansion == 1
                              else InvertedResidual(cin, cout, kernel, s, expansion))
                cin = cout
            stages.append(nn.Sequential(*blocks))
        self.blocks = nn.Sequential(*stages)
        self.conv_head = nn.Conv2d(cin, HEAD, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(HEAD)
        self.num_features = HEAD
        self.classifier: nn.Module = nn.Linear(HEAD, num_classes) if num_classes else nn.Identity()
        if not skipping():  # else the weights are loaded next (skip_init.skipped_init)
            self._init_weights()

    def _init_weights(self) -> None:
        """The EfficientNet initialisation (timm's ``_init_weight_goog``): convolutions normal with
        std sqrt(2 / fan_out), BatchNorm ones and zeros, the classifier uniform in 1/sqrt(fan_out)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.weight.shape[0])
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    def reset_classifier(self, num_classes: int) -> None:
        """A new classifier of ``num_classes`` outputs; 0: none (forward gives the pooled features)."""
        self.classifier = nn.Linear(HEAD, num_classes) if num_classes else nn.Identity()

    def forward_features(self, pixels: torch.Tensor) -> torch.Tensor:
        x = _bn_relu6(self.bn1, self.conv_stem(pixels))
        x = self.blocks(x)
        return _bn_relu6(self.bn2, self.conv_head(x))  # (B, 1280, h, w)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        pooled = F.adaptive_avg_pool2d(self.forward_features(pixels), 1).flatten(1)  # (B, 1280)
        return self.classifier(pooled)
