"""``ModelConfig``: everything needed to rebuild a :class:`RetrievalModel`, strict JSON round trip."""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any

MODEL_TYPE = "fashion_retrieval"
PROJECTIONS = ("linear", "image", "none")  # between the encoders and the compositor


@dataclass
class ModelConfig:
    """Configuration of a retrieval model (saved as the checkpoint's ``config.json``).

    ``pretrained``: load backbone weights when built from scratch (a checkpoint brings its own).
    ``vocab``: the LSTM's words, filled when built from texts. ``normalize_scale``: TIRG's
    learnable temperature (``model.scale``); ``scale_both_sides``: it multiplies both normalised
    sides (logits ``scale**2 * cos``), ``learn_scale=False``: a fixed buffer. ``modality_dropout``:
    the training probability of replacing a query's image or text by the learned null embedding,
    so image-only and text-only search learn too. ``colour_features``: a weight-free colour
    descriptor (``models.colour``) beside the backbone's pooled features; ``image_size``: the
    backbone's input size (None: its own); ``mid_grid`` > 0: the middle stage pooled to that
    grid beside them (where things are). ``projection``: ``"linear"`` maps each encoder to
    ``embed_dim`` (TIRG), ``"none"`` feeds the encoders' outputs as they are (CLIP4Cir;
    ``embed_dim`` becomes their width), ``"image"`` maps the image side only (TIRG's LSTM has
    its own output layer). ``preprocess``/``target_ratio``: ``data.transforms.ImageTransform``.
    ``encoders_eval_mode``: trainable encoders stay in eval mode (as CLIP4Cir fine-tunes CLIP).
    ``clip_activation``: per open_clip encoder, the activation it was built with.
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
        check_fields(self, "model config")
        if self.embed_dim <= 0:
            raise ValueError(f"embed_dim must be positive, got {self.embed_dim}")
        if not 0.0 <= self.modality_dropout < 1.0:
            raise ValueError(f"modality_dropout must be in [0, 1), got {self.modality_dropout}")
        if not 0 <= self.mid_grid <= 16:
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
        return build(cls, data, "model config")


# ----------------------------------------------------------------------------- the typed-config checker
# One checker for every config dataclass (ModelConfig, training's TrainConfig): types from the
# annotations, CLI strings converted, unknown keys named with the nearest valid one.
_TRUE, _FALSE = {"true", "yes", "1", "on"}, {"false", "no", "0", "off"}


def check_fields(obj: Any, kind: str) -> None:
    """Check (and normalise: ints to floats, nested dicts to configs) every field of dataclass ``obj``."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        object.__setattr__(obj, f.name, coerce(f.name, getattr(obj, f.name), hints[f.name], kind=kind))


def build(cls: type, data: Any, kind: str, source: str | None = None, nested: dict[str, type] | None = None) -> Any:
    """``cls(**data)`` after naming any unknown key (with the nearest valid one, a ``nested``
    config's keys as ``name.key``); every ``ValueError`` is prefixed with ``source``."""
    where = f"{source}: " if source else ""
    if not isinstance(data, dict):
        raise ValueError(f"{where}{kind} must be a mapping of keys to values, got {type(data).__name__}")
    valid = [f.name for f in dataclasses.fields(cls)]
    dotted = [f"{n}.{f.name}" for n, sub in (nested or {}).items() for f in dataclasses.fields(sub)]
    for key in data:
        if key not in valid:
            inner = [d for d in dotted if d.split(".", 1)[1] == key]
            close = inner or difflib.get_close_matches(key, valid + dotted, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"{where}unknown {kind} key {key!r}{hint}; valid keys: {', '.join(valid + dotted)}")
    try:
        return cls(**data)
    except ValueError as err:
        raise ValueError(f"{where}{err}") from None


def coerce(name: str, value: Any, hint: Any, *, from_cli: bool = False, kind: str = "config") -> Any:
    """``value`` checked against the annotation ``hint``; CLI strings are converted first."""
    origin, cli_text = typing.get_origin(hint), from_cli and isinstance(value, str)
    if origin in (typing.Union, types.UnionType):
        if value is None or (cli_text and value.lower() in {"none", "null", ""}):
            return None
        return coerce(name, value, typing.get_args(hint)[0], from_cli=from_cli, kind=kind)
    if dataclasses.is_dataclass(hint) and isinstance(value, (hint, dict)):
        return value if isinstance(value, hint) else build(hint, value, f"{name} config")
    if hint is bool:
        if cli_text and value.lower() in _TRUE | _FALSE or (value is None and from_cli):
            return value is None or value.lower() in _TRUE
        if isinstance(value, bool):
            return value
    elif hint in (int, float) and not isinstance(value, bool):
        if isinstance(value, (int, float)) and (hint is float or isinstance(value, int)):
            return hint(value)
        if isinstance(value, str) and (cli_text or hint is float):  # YAML reads 1e-3 (no dot) as a string
            try:
                number = float(value)
                if hint is float or number.is_integer():
                    return hint(number)
            except ValueError:
                pass
    elif hint is str and isinstance(value, str):
        return value
    elif origin is list:
        if cli_text:
            return [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return list(value)
    elif origin is dict:
        if cli_text:
            try:
                value = json.loads(value)
            except ValueError:
                pass
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            return dict(value)
    shown = getattr(hint, "__name__", str(hint).replace("typing.", ""))
    raise ValueError(f"{kind} key {name!r} must be {shown}, got {value!r} ({type(value).__name__})")
