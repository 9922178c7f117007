"""``ModelConfig``: everything needed to rebuild a :class:`RetrievalModel`, strict JSON round trip."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any

MODEL_TYPE = "fashion_retrieval"
PROJECTIONS = ("linear", "image", "none")  # between the encoders and the compositor


@dataclass
class ModelConfig:
    """Configuration of a retrieval model (saved as the checkpoint's ``config.json``).

    ``pretrained`` loads backbone weights when the model is built from scratch (a loaded
    checkpoint brings its own). ``vocab`` is the LSTM's word list, filled when the model is
    built from texts, so a checkpoint loads without them. ``normalize_scale`` is TIRG's
    learnable temperature (``model.scale``) that losses multiply similarities by.
    ``modality_dropout`` is the probability, in training, of replacing a query's image or
    its text by the learned null embedding, so image-only and text-only search also learn.
    ``colour_features`` names a weight-free colour descriptor (``models.colour``) appended
    to the backbone's pooled features; ``image_size`` overrides the backbone's input
    resolution (None: the encoder's own). ``mid_grid`` > 0 appends the image encoder's
    middle stage pooled to a ``mid_grid`` x ``mid_grid`` grid (``ImageEncoder.forward``):
    where things are in the picture, which the global pool loses.
    ``projection``: ``"linear"`` puts a learned linear map from each encoder's features to
    ``embed_dim`` (TIRG); ``"none"`` uses the encoders' outputs as they are (CLIP4Cir: the
    aligned CLIP spaces feed the compositor directly, and ``embed_dim`` becomes their common
    width); ``"image"`` maps the image features only and takes the text encoder's output
    as it is (TIRG: the LSTM's own output layer gives ``embed_dim``). ``scale_both_sides``:
    ``model.scale`` multiplies both normalised embeddings, so logits are ``scale**2 * cos``
    (TIRG's NormalizationLayer on each side); else logits are ``scale * cos``.
    ``learn_scale=False`` makes ``model.scale`` a fixed buffer, not a parameter.
    ``preprocess`` (``"resize_crop"`` or ``"targetpad"``) and ``target_ratio`` choose the
    image preprocessing (``data.transforms.ImageTransform``). ``encoders_eval_mode`` keeps
    trainable encoders in eval mode while training (BatchNorm statistics and dropout fixed),
    as CLIP4Cir fine-tunes CLIP. ``clip_activation`` records, per open_clip encoder spec,
    the activation it was built with ("quick_gelu" for OpenAI's weights, "gelu"), filled
    when the model is built; a rebuild must get the same one.
    """

    image_encoder: str = "efficientnet_lite0"
    text_encoder: str = "lstm"
    compositor: str = "tirg"
    embed_dim: int = 512
    pretrained: bool = True
    freeze_image_encoder: bool = True
    freeze_text_encoder: bool = False
    vocab: list[str] | None = None
    text_kwargs: dict[str, Any] = field(default_factory=dict)
    compositor_kwargs: dict[str, Any] = field(default_factory=dict)
    normalize_scale: float = 4.0
    learn_scale: bool = True
    scale_both_sides: bool = False
    modality_dropout: float = 0.0
    colour_features: str = "none"
    mid_grid: int = 0
    image_size: int | None = None
    projection: str = "linear"
    preprocess: str = "resize_crop"
    target_ratio: float = 1.25
    encoders_eval_mode: bool = False
    clip_activation: dict[str, str] = field(default_factory=dict)
    model_type: str = MODEL_TYPE

    def __post_init__(self) -> None:
        if self.embed_dim <= 0:
            raise ValueError(f"embed_dim must be positive, got {self.embed_dim}")
        if not 0.0 <= self.modality_dropout < 1.0:
            raise ValueError(f"modality_dropout must be in [0, 1), got {self.modality_dropout}")
        if isinstance(self.mid_grid, bool) or not isinstance(self.mid_grid, int) or not 0 <= self.mid_grid <= 16:
            raise ValueError(f"mid_grid must be an integer from 0 (off) to 16, got {self.mid_grid!r}")
        if self.image_size is not None and self.image_size < 16:
            raise ValueError(f"image_size must be at least 16 pixels, got {self.image_size}")
        if self.projection not in PROJECTIONS:
            raise ValueError(f"projection must be one of {', '.join(PROJECTIONS)}, got {self.projection!r}")
        if self.preprocess not in ("resize_crop", "targetpad"):
            raise ValueError(f"preprocess must be 'resize_crop' or 'targetpad', got {self.preprocess!r}")
        if not self.target_ratio >= 1.0:
            raise ValueError(f"target_ratio must be >= 1 (long side / short side), got {self.target_ratio}")
        if self.model_type != MODEL_TYPE:
            raise ValueError(f"model_type must be {MODEL_TYPE!r}, got {self.model_type!r}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (deep copy)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build from a dict; an unknown key or a value of the wrong type is a ``ValueError``."""
        if not isinstance(data, dict):
            raise ValueError(f"model config must be a dict, got {type(data).__name__}")
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown model config key(s) {unknown}; valid keys: {sorted(names)}")
        for key, value in data.items():
            if not _matches(value, hints[key]):
                raise ValueError(
                    f"model config key {key!r} must be {_type_name(hints[key])}, got {value!r}"
                )
        values = dict(data)
        if "normalize_scale" in values:
            values["normalize_scale"] = float(values["normalize_scale"])
        for key in ("modality_dropout", "target_ratio"):
            if key in values:
                values[key] = float(values[key])
        return cls(**values)


def _matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits the type ``hint`` (str, int, float, bool, list[str], dict, unions)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:  # ints are fine where floats are expected; bools are not
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_matches(v, item) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(isinstance(k, str) for k in value)
    if hint is Any:
        return True
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    """Readable name of a type hint."""
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
