"""``TrainConfig``: the typed training configuration, its YAML/JSON round trip and CLI overrides."""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import json
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fashion_retrieval.data import DATASETS
from fashion_retrieval.registry import Registry


class Choices(Mapping[str, tuple[str, ...]]):
    """The valid names of each choice key, read from where those names are defined.

    ``sources`` maps a config key to ``(module, attribute)``: a ``Registry`` (its names) or a
    collection of names. The module is imported on first use, so importing this module
    stays cheap (the loss and task registries import torch) and a name registered at run
    time is a valid choice at once.
    """

    def __init__(self, sources: Mapping[str, tuple[str, str]]) -> None:
        self.sources = dict(sources)

    def __getitem__(self, key: str) -> tuple[str, ...]:
        module, attr = self.sources[key]
        names = getattr(importlib.import_module(module), attr)
        return tuple(names.names() if isinstance(names, Registry) else names)

    def __iter__(self) -> Iterator[str]:
        return iter(self.sources)

    def __len__(self) -> int:
        return len(self.sources)


CHOICES = Choices({
    "dataset": ("fashion_retrieval.data", "DATASETS"),  # published: data_root is a folder or Hub repo id
    "task": ("fashion_retrieval.training.tasks", "TASKS"),
    "loss": ("fashion_retrieval.losses", "LOSSES"),
    "optimizer": ("fashion_retrieval.training.optim", "OPTIMIZERS"),
    "projection": ("fashion_retrieval.models.config", "PROJECTIONS"),
    "preprocess": ("fashion_retrieval.data.transforms", "PREPROCESS_MODES"),
    "lr_schedule": ("fashion_retrieval.training.optim", "SCHEDULES"),
    "mixed_precision": ("fashion_retrieval.devices", "PRECISIONS"),
    "preset": ("fashion_retrieval.data.synthetic.catalog", "PRESETS"),
    "train_caption_mode": ("fashion_retrieval.training.data", "TRAIN_CAPTION_MODES"),
})


def loader_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The settings a training config offers every data set loader, by loader option name:
    ``preset``, ``products`` and ``seed`` (``data_seed``, else ``seed``). Each data set takes
    those its entry lists in ``settings`` (the synthetic catalogue: all three)."""
    seed = config.get("data_seed")
    return {"preset": config.get("preset"), "products": config.get("products"),
            "seed": config.get("seed") if seed is None else seed}


def dataset_loader_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """The options a training config (``TrainConfig.to_dict()`` or a saved ``train_config.json``)
    passes its data set's loader: ``dataset_options``, ``categories`` and the ``loader_settings``
    the data set takes.

    A data set with annotator captions (a ``caption_mode`` option) gets the query text of
    the run's ``train_caption_mode`` (``fashioniq.loader_caption_mode``: ``random`` ->
    ``clip4cir``, CLIP4Cir's validation text) unless ``dataset_options`` names one, so the
    run's evaluation, and ``training/evaluate.py`` reading the saved config, rank the texts
    it was trained on."""
    entry = DATASETS.get(config.get("dataset") or TrainConfig.dataset)
    options: dict[str, Any] = dict(config.get("dataset_options") or {})
    if config.get("categories"):
        options["categories"] = list(config["categories"])
    options.update(entry.pick_settings(loader_settings(config)))
    train_mode = config.get("train_caption_mode") or TrainConfig.train_caption_mode
    if "caption_mode" in entry.options and "caption_mode" not in options and train_mode != "join":
        from fashion_retrieval.data.fashioniq import loader_caption_mode

        options["caption_mode"] = loader_caption_mode(train_mode)  # "join" is the loader's default
    return options


@dataclass
class TrainConfig:
    """Everything a training run needs; saved as ``config.yaml`` with every run.

    Defaults train TIRG on the synthetic catalogue with the offline EfficientNet-Lite0
    backbone frozen and its features cached, as TIRG was trained (SGD, momentum 0.9,
    step decay, in-batch classification loss).
    """

    # Data
    dataset: str = "synthetic"
    data_root: str | None = None
    train_split: str = "train"
    eval_split: str = "val"
    categories: list[str] | None = None
    preset: str = "easy"
    products: int | None = None
    data_seed: int | None = None  # the synthetic catalogue's seed; None: the same as ``seed``
    streaming: bool = False
    num_workers: int = 0
    dataset_options: dict[str, Any] = field(default_factory=dict)  # e.g. {"caption_cleanup": "normalize"} (Fashion200k)
    # Per-sample training draws (training/data.py SampleDraw). Fashion200k: a fresh sibling
    # target and "replace X with Y" text at every sample, as TIRG (false: one frozen pair per
    # source). FashionIQ: "join" ("c1 and c2") or CLIP4Cir's "random" (c1 and c2 / c2 and c1 /
    # c1 / c2), evaluated on CLIP4Cir's "C1 and c2" (``dataset_loader_options``).
    resample_pairs: bool = True
    train_caption_mode: str = "join"
    train_augment: bool = True  # random resized crop + flip on the image path; false: resize + centre crop
    # Extra examples from the catalogue's attributes (items that carry attributes only):
    # composed pairs of products differing in 1-2 attributes, and per-item partial
    # descriptions for the crossmodal task ("red dress"). 0: none.
    generated_pairs: int = 0
    generated_descriptions: int = 0
    # Model
    image_encoder: str = "efficientnet_lite0"
    text_encoder: str = "lstm"
    compositor: str = "tirg"
    text_encoder_options: dict[str, Any] = field(default_factory=dict)  # e.g. {"hidden": 512} for lstm
    compositor_options: dict[str, Any] = field(default_factory=dict)
    embed_dim: int = 512
    colour_features: str = "none"  # a weight-free colour descriptor beside the backbone (models.colour)
    mid_grid: int = 0  # the backbone's middle stage pooled to mid_grid x mid_grid beside it; 0: off
    image_size: int | None = None  # backbone input size; None: the encoder's own
    pretrained: bool = True
    freeze_image_encoder: bool = True
    freeze_text_encoder: bool = False  # a frozen text encoder's features are computed once per text
    cache_features: bool = True
    # CLIP4Cir: raw CLIP features into the compositor (projection "none"), a fixed logit
    # scale (learn_scale false, 1 / temperature), targetpad preprocessing, CLIP kept in eval
    # mode while it is fine-tuned, and stage 2 starting from stage 1's encoders (init_from:
    # a checkpoint folder, a run folder or a Hub repo id; only its encoders are used).
    projection: str = "linear"
    learn_scale: bool = True
    # TIRG: one learnable scale on both normalised sides, logits scale**2 * cos; it starts at
    # sqrt(1 / temperature) (4 for temperature 1/16), as google/tirg's NormalizationLayer.
    scale_both_sides: bool = False
    preprocess: str = "resize_crop"
    target_ratio: float = 1.25
    encoders_eval_mode: bool = False
    init_from: str | None = None
    feature_cache_dir: str | None = None
    # Objective
    task: str = "composed"
    loss: str = "batch_classification"
    temperature: float = 0.07
    modality_dropout: float = 0.0
    # Hard negatives (training/data.py SharedValueBatches): this fraction of the batches is
    # drawn from examples whose targets share one value (all red, all striped, all
    # dresses), so a model cannot tell the target apart by that value alone. Needs
    # targets that carry attributes or a category; 0: plain shuffled batches.
    shared_value_batches: float = 0.0
    # What a shopper means (composed task, cached features): this weight times a second
    # term, each query's softmax mass on the training catalogue's images that answer its
    # request (the target's garment type and the values the change asks for; the other
    # attributes may differ), so that "this but red" ranks red items of the type above
    # near copies of another type (training/relevance.py). The catalogue's target
    # embeddings are recomputed every relevance_refresh steps; each step ranks the batch's
    # targets and relevance_candidates other images drawn at random (0: all). 0: off.
    relevance_weight: float = 0.0
    relevance_refresh: int = 50
    relevance_candidates: int = 1024
    # Optimisation
    optimizer: str = "sgd"
    lr: float = 0.01
    backbone_lr_scale: float = 0.1
    momentum: float = 0.9
    adam_eps: float = 1e-8  # adam and adamw; betas are torch's (0.9, 0.999)
    weight_decay: float = 1e-6
    lr_schedule: str = "step"
    lr_decay_steps: int = 50000
    lr_decay_gamma: float = 0.1
    warmup_steps: int = 0
    batch_size: int = 32
    max_steps: int = 1000
    grad_accum_steps: int = 1
    max_grad_norm: float | None = None
    mixed_precision: str = "no"
    seed: int = 0
    # Run bookkeeping
    output_dir: str = "runs/default"
    save_every: int = 500
    eval_every: int = 500
    # Keep <output_dir>/best: the checkpoint of the evaluation with the highest value of this
    # recall key ("avg" = (R@10 + R@50) / 2 on FashionIQ, "R@1", ...), as CLIP4Cir's --save-best.
    save_best: str | None = None
    log_every: int = 10
    eval_batch_size: int = 64
    resume: str | None = None
    push_to_hub: str | None = None
    debug_log_ids: bool = False

    def __post_init__(self) -> None:
        self.validate()

    # ----------------------------------------------------------------- validation
    def validate(self) -> None:
        """Check every field's type and range; raise ValueError naming the bad key."""
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            setattr(self, f.name, _coerce(f.name, getattr(self, f.name), hints[f.name], from_cli=False))
        for key, valid in CHOICES.items():
            value = getattr(self, key)
            if value not in valid:
                close = difflib.get_close_matches(value, valid, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"{key}={value!r} is not valid{hint}; choose one of {', '.join(valid)}")
        from fashion_retrieval.losses import LOSSES

        LOSSES.get(self.loss).check_task(self.task)
        entry = DATASETS.get(self.dataset)
        entry.check_options(self.dataset_options)
        positive = ("batch_size", "max_steps", "grad_accum_steps", "save_every", "eval_every",
                    "log_every", "eval_batch_size", "embed_dim", "lr_decay_steps")
        for key in positive:
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.batch_size < 2:
            raise ValueError("batch_size must be >= 2: in-batch losses need negatives")
        if not 0.0 <= self.shared_value_batches <= 1.0:
            raise ValueError(f"shared_value_batches must be in [0, 1], got {self.shared_value_batches}")
        if self.shared_value_batches > 0 and self.streaming:
            raise ValueError("shared_value_batches needs the in-memory input path (streaming: false): "
                             "a stream is read in order and cannot be grouped by value")
        if self.relevance_weight < 0 or self.relevance_refresh < 1 or self.relevance_candidates < 0:
            raise ValueError(f"relevance_weight must be >= 0, relevance_refresh >= 1 and relevance_candidates >= 0, "
                             f"got {self.relevance_weight}, {self.relevance_refresh} and {self.relevance_candidates}")
        cached = self.freeze_image_encoder and self.cache_features and not self.streaming
        if self.relevance_weight > 0 and (self.task != "composed" or not cached):
            raise ValueError("relevance_weight needs task composed on cached backbone features (freeze_image_encoder, "
                             f"cache_features, streaming false); got task {self.task!r}, "
                             f"freeze_image_encoder {self.freeze_image_encoder}, cache_features {self.cache_features}, "
                             f"streaming {self.streaming}")
        if not 0.0 <= self.modality_dropout < 1.0:
            raise ValueError(f"modality_dropout must be in [0, 1), got {self.modality_dropout}")
        for key in ("lr", "temperature", "lr_decay_gamma"):
            if getattr(self, key) <= 0:
                raise ValueError(f"{key} must be > 0, got {getattr(self, key)}")
        if self.target_ratio < 1.0 or self.adam_eps <= 0:
            raise ValueError(f"target_ratio must be >= 1 and adam_eps > 0, got {self.target_ratio} and {self.adam_eps}")
        if self.num_workers < 0 or self.warmup_steps < 0:
            raise ValueError("num_workers and warmup_steps must be >= 0")
        if self.generated_pairs < 0 or self.generated_descriptions < 0:
            raise ValueError("generated_pairs and generated_descriptions must be >= 0")
        if self.save_best is not None and not self.eval_split:
            raise ValueError(f"save_best {self.save_best!r} needs an eval_split to choose the best checkpoint on")
        if self.train_caption_mode != "join" and entry.sample_draw == "siblings":
            raise ValueError(f"train_caption_mode 'random' is for FashionIQ's two captions; {self.dataset} "
                             "texts are 'replace X with Y'")

    # ----------------------------------------------------------------- round trip
    def to_dict(self) -> dict[str, Any]:
        """A plain dict of the fields (JSON/YAML serialisable)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> TrainConfig:
        """Build from a dict; an unknown key raises ValueError naming it and the valid keys."""
        if not isinstance(data, dict):
            raise ValueError(f"{source}: expected a mapping of keys to values, got {type(data).__name__}")
        valid = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key not in valid:
                raise ValueError(_unknown_key_message(key, valid, source))
        try:
            return cls(**data)
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from None

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        """Read a ``.yaml``/``.yml`` or ``.json`` file."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"config file {path} does not exist")
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            try:
                data = json.loads(text)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{err.lineno}: invalid JSON: {err.msg}") from None
        else:
            import yaml

            try:
                data = yaml.safe_load(text) or {}
            except yaml.YAMLError as err:
                mark = getattr(err, "problem_mark", None)
                where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
                raise ValueError(f"{where}: invalid YAML: {getattr(err, 'problem', err)}") from None
        return cls.from_dict(data, source=str(path))

    def dumps(self, fmt: str = "yaml") -> str:
        """The config as YAML (default) or JSON text."""
        if fmt == "json":
            return json.dumps(self.to_dict(), indent=2) + "\n"
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> Path:
        """Write the config as YAML or JSON (by suffix), atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.dumps("json" if path.suffix == ".json" else "yaml"), encoding="utf-8")
        tmp.replace(path)
        return path

    # ----------------------------------------------------------------- overrides
    def replace(self, **changes: Any) -> TrainConfig:
        """A new config with ``changes`` applied (validated; unknown keys are errors)."""
        return type(self).from_dict({**self.to_dict(), **changes}, source="overrides")

    def with_overrides(self, argv: list[str]) -> TrainConfig:
        """A new config with ``--key value`` / ``--key-with-dashes value`` CLI overrides applied."""
        raw = parse_override_args(argv)
        hints = typing.get_type_hints(type(self))
        valid = [f.name for f in dataclasses.fields(self)]
        changes: dict[str, Any] = {}
        for key, text in raw.items():
            if key not in valid:
                raise ValueError(_unknown_key_message(key, valid, "command line"))
            changes[key] = _coerce(key, text, hints[key], from_cli=True)
        return self.replace(**changes)


def parse_override_args(argv: list[str]) -> dict[str, str | None]:
    """``['--max-steps', '5', '--lr=0.1', '--streaming']`` -> ``{'max_steps': '5', 'lr': '0.1', 'streaming': None}``.

    A flag with no value (followed by another flag or the end) maps to None, which a bool
    field reads as true.
    """
    out: dict[str, str | None] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--") or len(arg) == 2:
            raise ValueError(f"unexpected command-line argument {arg!r}; overrides look like --key value")
        key, eq, value = arg[2:].partition("=")
        key = key.replace("-", "_")
        if eq:
            out[key] = value
            i += 1
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            out[key] = argv[i + 1]
            i += 2
        else:
            out[key] = None
            i += 1
    return out


def _unknown_key_message(key: str, valid: list[str], source: str) -> str:
    """The error text for a key that TrainConfig does not have."""
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{source}: unknown config key {key!r}{hint}; valid keys: {', '.join(valid)}"


_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


def _coerce(name: str, value: Any, hint: Any, *, from_cli: bool) -> Any:
    """Check ``value`` against the annotation ``hint``; CLI strings are converted first."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or (from_cli and isinstance(value, str) and value.lower() in {"none", "null", ""}):
            return None
        return _coerce(name, value, args[0], from_cli=from_cli)
    if hint is bool:
        if value is None and from_cli:
            return True
        if from_cli and isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        if isinstance(value, bool):
            return value
    elif hint is int:
        if from_cli and isinstance(value, str):
            try:
                return int(float(value)) if float(value).is_integer() else _bad(name, value, hint)
            except ValueError:
                pass
        elif isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, str):  # YAML reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif origin is list:
        if from_cli and isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return list(value)
    elif origin is dict:
        if isinstance(value, dict):
            return dict(value)
        if from_cli and isinstance(value, str):
            try:
                return dict(json.loads(value))
            except (ValueError, TypeError):
                pass
    return _bad(name, value, hint)


def _bad(name: str, value: Any, hint: Any) -> typing.NoReturn:
    """Raise the wrong-type error."""
    shown = getattr(hint, "__name__", str(hint))
    raise ValueError(f"config key {name!r} expects {shown}, got {value!r} ({type(value).__name__})")
