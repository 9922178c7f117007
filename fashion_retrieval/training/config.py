"""``TrainConfig``: the typed training configuration, its YAML/JSON round trip and CLI overrides."""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import json
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fashion_retrieval.data import DATASETS
from fashion_retrieval.models.config import ModelConfig, build, check_fields, coerce
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
    "lr_schedule": ("fashion_retrieval.training.optim", "SCHEDULES"),
    "mixed_precision": ("fashion_retrieval.devices", "PRECISIONS"),
    "train_caption_mode": ("fashion_retrieval.training.data", "TRAIN_CAPTION_MODES"),
})


# Flat keys of configs saved before the model became a nested ``model`` (read by ``migrate_saved``).
MODEL_KEYS = {"text_encoder_options": "text_kwargs", "compositor_options": "compositor_kwargs", **{k: k for k in (
    "image_encoder", "text_encoder", "compositor", "embed_dim", "colour_features", "mid_grid", "image_size",
    "pretrained", "freeze_image_encoder", "freeze_text_encoder", "projection", "learn_scale", "scale_both_sides",
    "preprocess", "target_ratio", "encoders_eval_mode", "modality_dropout")}}


def migrate_saved(data: Mapping[str, Any]) -> dict[str, Any]:
    """A saved run's config in today's layout: older runs' flat model keys moved into ``model``, the
    catalogue's ``preset``, ``products``, ``data_seed`` into ``dataset_options``. Saved files only."""
    out = dict(data)
    model = {new: out.pop(old) for old, new in MODEL_KEYS.items() if old in out}
    if model:
        out["model"] = {**model, **(out.get("model") or {})}
    entry = DATASETS.get(out.get("dataset") or TrainConfig.dataset)
    catalogue = {k: out.pop(old) for old, k in (("preset", "preset"), ("products", "products"), ("data_seed", "seed"))
                 if old in out}  # kept where they reached the loader (the seed as one of its settings)
    taken = {k: v for k, v in catalogue.items() if v is not None and k in (entry.settings if k == "seed" else entry.options)}
    if taken:
        out["dataset_options"] = {**taken, **(out.get("dataset_options") or {})}
    return out


def dataset_loader_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """The options a training config (``TrainConfig.to_dict()`` or a migrated saved one) passes its
    data set's loader: ``dataset_options``, ``categories`` and the run's settings its entry takes
    where those name none (the synthetic catalogue's ``seed``). A data set with annotator captions (a ``caption_mode`` option) gets the query text of
    the run's ``train_caption_mode`` (``fashioniq.loader_caption_mode``: ``random`` ->
    ``clip4cir``, CLIP4Cir's validation text) unless ``dataset_options`` names one, so the
    run's evaluation, and ``training/evaluate.py`` reading the saved config, rank the texts
    it was trained on."""
    entry = DATASETS.get(config.get("dataset") or TrainConfig.dataset)
    options: dict[str, Any] = dict(config.get("dataset_options") or {})
    if config.get("categories"):
        options["categories"] = list(config["categories"])
    for key, value in entry.pick_settings({"seed": config.get("seed")}).items():
        options.setdefault(key, value)
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
    streaming: bool = False
    num_workers: int = 0
    # The loader's options, e.g. {"caption_cleanup": "normalize"} (Fashion200k); the synthetic
    # catalogue's {"preset": "hard", "products": 2400, "seed": 0} (seed: the run's unless given).
    dataset_options: dict[str, Any] = field(default_factory=dict)
    # Per-sample training draws (training/data.py SampleDraw). Fashion200k: a fresh sibling
    # target and "replace X with Y" text at every sample, as TIRG (false: one frozen pair per
    # source). FashionIQ: "join" ("c1 and c2") or CLIP4Cir's "random" (c1 and c2 / c2 and c1 /
    # c1 / c2), evaluated on CLIP4Cir's "C1 and c2" (``dataset_loader_options``).
    resample_pairs: bool = True
    train_caption_mode: str = "join"
    train_augment: bool = True  # random resized crop + flip on the image path; false: resize + centre crop
    # Extra examples the data set's tools make from its items' attributes (the synthetic catalogue):
    # pairs of products differing in 1-2 attributes, partial descriptions ("red dress"). 0: none.
    generated_pairs: int = 0
    generated_descriptions: int = 0
    # The model (models/config.py ModelConfig: encoders, compositor, widths, what is frozen);
    # its logit scale starts at 1 / temperature (TIRG's scale_both_sides: sqrt of it on each side).
    model: ModelConfig = field(default_factory=ModelConfig)
    cache_features: bool = True  # a frozen encoder's features are computed once (per image, per text)
    init_from: str | None = None  # start from these encoders (CLIP4Cir stage 2): a checkpoint, run or Hub repo
    feature_cache_dir: str | None = None
    # Objective
    task: str = "composed"
    loss: str = "batch_classification"
    temperature: float = 0.07
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
        check_fields(self, "config")
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
                    "log_every", "eval_batch_size", "lr_decay_steps")
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
        frozen = self.model.freeze_image_encoder
        if self.relevance_weight > 0 and (self.task != "composed" or not (frozen and self.cache_features)
                                          or self.streaming):
            raise ValueError("relevance_weight needs task composed on cached backbone features (freeze_image_encoder, "
                             f"cache_features, streaming false); got task {self.task!r}, "
                             f"freeze_image_encoder {frozen}, cache_features {self.cache_features}, "
                             f"streaming {self.streaming}")
        # What the data set's items must carry (its entry says; a clear error, never a no-op).
        for key, needs in (("generated_pairs", ("attributes",)), ("generated_descriptions", ("attributes",)),
                           ("shared_value_batches", ("attributes", "categories")),
                           ("relevance_weight", ("categories",))):
            if getattr(self, key) > 0:
                entry.require(key, *needs)
        for key in ("lr", "temperature", "lr_decay_gamma"):
            if getattr(self, key) <= 0:
                raise ValueError(f"{key} must be > 0, got {getattr(self, key)}")
        if self.adam_eps <= 0:
            raise ValueError(f"adam_eps must be > 0, got {self.adam_eps}")
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
    def from_dict(cls, data: Any, source: str = "config") -> TrainConfig:
        """Build from a dict (the model as a nested ``model`` dict); an unknown key raises
        ValueError naming it and the nearest valid one (``model.compositor`` for ``compositor``)."""
        return build(cls, data, "config", source, nested={"model": ModelConfig})

    @classmethod
    def load(cls, path: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
        """Read a ``.yaml``/``.yml`` or ``.json`` file (None: the defaults), with CLI ``overrides``
        applied; checked once."""
        data = read_file(path) if path else {}
        return cls.from_dict(apply_overrides(data, overrides or []), source=str(path or "command line"))

    @classmethod
    def load_saved(cls, path: str | Path) -> TrainConfig:
        """A saved run's ``config.yaml`` (older layouts migrated, ``migrate_saved``)."""
        return cls.from_dict(migrate_saved(read_file(path)), source=str(path))

    def dumps(self, fmt: str = "yaml") -> str:
        """The config as YAML (default) or JSON text."""
        if fmt == "json":
            return json.dumps(self.to_dict(), indent=2) + "\n"
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> Path:
        """Write the config as YAML or JSON (by suffix), atomically."""
        from fashion_retrieval.io_utils import atomic_write_text

        path = Path(path)
        return atomic_write_text(path, self.dumps("json" if path.suffix == ".json" else "yaml"))

    # ----------------------------------------------------------------- overrides
    def replace(self, **changes: Any) -> TrainConfig:
        """A new config with ``changes`` applied (a ``model`` dict changes those model keys);
        validated, unknown keys are errors."""
        return type(self).from_dict(merge(self.to_dict(), changes), source="overrides")

    def with_overrides(self, argv: list[str]) -> TrainConfig:
        """A new config with ``--key value`` / ``--key-with-dashes value`` / ``--model.key value``
        CLI overrides applied."""
        return type(self).from_dict(apply_overrides(self.to_dict(), argv), source="command line")


def merge(data: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """A config mapping ``data`` updated by ``changes``; a ``model`` dict in both is merged key by key."""
    out = {**data, **changes}
    if isinstance(changes.get("model"), dict) and isinstance(data.get("model"), dict):
        out["model"] = {**data["model"], **changes["model"]}
    return out


def read_file(path: str | Path) -> dict[str, Any]:
    """A config file's mapping (YAML or JSON by suffix); errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{err.lineno}: invalid JSON: {err.msg}") from None
    import yaml

    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ValueError(f"{where}: invalid YAML: {getattr(err, 'problem', err)}") from None


def apply_overrides(data: Any, argv: list[str]) -> Any:
    """``data`` (a config mapping) with the CLI overrides of ``argv`` converted to each key's
    type and set; ``model.compositor`` sets a model key. Unknown keys are left for ``from_dict``."""
    if not argv or not isinstance(data, dict):
        return data
    out = {**data, "model": dict(data.get("model") or {})}
    for key, text in parse_override_args(argv).items():
        owner, target, name = (ModelConfig, out["model"], key[6:]) if key.startswith("model.") else (TrainConfig, out, key)
        hints = typing.get_type_hints(owner)
        if name not in hints or name == "model":
            build(TrainConfig, {key: None}, "config", "command line", nested={"model": ModelConfig})
        target[name] = coerce(key, text, hints[name], from_cli=True)
    return out


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
