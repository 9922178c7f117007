"""The shopper recipe (``training/configs/recipes/shopper.yaml``) as training configs: the
embedded default (``serving/default.py``) and the comparison (``training/compare.py``) both
build their models' configs here, from that one file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fashion_retrieval.training.config import TrainConfig, merge, read_file

RECIPE = "recipes/shopper.yaml"


def load_recipe() -> dict[str, Any]:
    """The shopper recipe file as a dict (fresh: callers may change it)."""
    from fashion_retrieval.reproduce.recipes import config_dir

    return read_file(config_dir() / RECIPE)


def shopper_config(
    section: str, name: str, compositor: str, task: str, work_dir: Path, *, recipe: dict[str, Any] | None = None,
    steps: int | None = None, seed: int = 0, changes: dict[str, Any] | None = None, word_knowledge: bool = True,
    relevance: float | None = None, output_dir: Path | None = None,
) -> TrainConfig:
    """The config of model ``name`` (``compositor``, ``task``) of ``section`` (``"default"`` or
    ``"compare"``): the layers of ``recipe`` (default: the file) in order, ``changes`` last;
    ``relevance`` replaces every compositor's relevance weight."""
    from fashion_retrieval.models.text_encoders import word_knowledge_options

    r = recipe if recipe is not None else load_recipe()
    keys = merge(r["base"], {"task": task, "model": {"compositor": compositor}})
    encoders = keys["model"]["text_encoder"], keys["model"]["image_encoder"]
    for layer in (r["compositors"].get(compositor, {}), r["text_encoders"].get(encoders[0], r["text_encoders"]["*"]),
                  r["image_encoders"].get(encoders[1], {}), r["tasks"][task], r[section]["config"]):
        keys = merge(keys, layer)
    model = keys["model"]
    allowed = word_knowledge_options(model["text_encoder"], word_knowledge)
    model["text_kwargs"] = {k: v for k, v in model.get("text_kwargs", {}).items()
                            if k not in r["word_knowledge"] or k in allowed}
    if relevance is not None and task == "composed":
        keys["relevance_weight"] = relevance
    steps = steps or r["steps"]
    keys.update(
        data_root=str(work_dir / "data"), feature_cache_dir=str(work_dir / "features"),
        dataset_options=dict(r["catalogue"]), seed=seed,
        max_steps=steps, lr_decay_steps=max(1, int(steps * r["lr_decay_at"])),
        output_dir=str(output_dir or work_dir / "runs" / name),
        save_every=steps + 1, eval_every=steps, log_every=max(1, steps // r[section]["logs"]),
    )
    return TrainConfig.from_dict(merge(keys, changes or {}), source=f"{RECIPE} {section} {name}")
