"""Run a published recipe end to end: every training stage, then the official evaluation.

Each stage trains into ``OUT/<config stem>`` with the recipe's config unchanged but for the
data root, the output folders, the earlier stage's checkpoint (``init_from``) and, with
``--tiny``, the recipe's tiny overrides. Run again, it reuses finished stages, resumes a
stage from its last saved state, and refuses an ``OUT`` that holds a run of other settings.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

from fashion_retrieval.reproduce.recipes import (
    Recipe,
    Stage,
    config_dir,
    get_recipe,
    register_tiny_open_clip,
)
from fashion_retrieval.reproduce.report import build_report, write_report
from fashion_retrieval.reproduce.standins import standin_root

logger = logging.getLogger(__name__)


def stage_config(recipe: Recipe, stage: Stage, data_root: Path, out: Path, tiny: bool) -> Any:
    """The ``TrainConfig`` of ``stage`` as this reproduction runs it."""
    import torch

    from fashion_retrieval.training.config import TrainConfig, merge, read_file

    changes: dict[str, Any] = {"data_root": str(data_root), "output_dir": str(out / stage.name),
                               "feature_cache_dir": str(out / "features"), "resume": None}
    if stage.init_from is not None:
        changes["init_from"] = str(out / stage.init_from)  # its best/ when it kept one, else final/
    if tiny:
        changes.update(recipe.tiny_overrides)
        if not torch.cuda.is_available():
            changes["mixed_precision"] = "no"  # fp16 autocast is a GPU recipe setting
    path = config_dir() / stage.config
    return TrainConfig.from_dict(merge(read_file(path), changes), source=str(path))


def finished_checkpoint(output_dir: Path) -> Path | None:
    """A finished stage's checkpoint: ``best/`` when the run kept one, else ``final/``; None if unfinished."""
    if not (output_dir / "final" / "config.json").is_file():
        return None
    best = output_dir / "best"
    return best if (best / "config.json").is_file() else output_dir / "final"


def _check_same_run(config: Any, output_dir: Path) -> None:
    """Refuse to continue a run in ``output_dir`` that was started with other settings."""
    from fashion_retrieval.training.config import TrainConfig

    saved_file = output_dir / "config.yaml"
    if not saved_file.is_file():
        return
    saved = TrainConfig.load_saved(saved_file).replace(resume=None).to_dict()
    differ = sorted(k for k, v in config.to_dict().items() if saved.get(k) != v)
    if differ:
        raise ValueError(f"{output_dir} holds a run with other settings ({', '.join(differ)}); "
                         "choose another --out, or remove that folder to start again")


def run_stage(config: Any) -> tuple[Path, float]:
    """Train one stage unless it is finished (resuming a started one); (checkpoint, seconds trained)."""
    from fashion_retrieval.training import train
    from fashion_retrieval.training.state import state_dirs

    output_dir = Path(config.output_dir)
    _check_same_run(config, output_dir)
    done = finished_checkpoint(output_dir)
    if done is not None:
        logger.info("stage %s is finished: %s", output_dir.name, done)
        return done, 0.0
    if state_dirs(output_dir):
        logger.info("stage %s: resuming from its last saved state", output_dir.name)
        config = config.replace(resume="latest")
    elif output_dir.exists():
        shutil.rmtree(output_dir)  # started, but nothing saved that a resume could use
    start = time.monotonic()
    train(config)
    return finished_checkpoint(output_dir), time.monotonic() - start


def training_skips(config: Any) -> dict[str, int]:
    """What the training split's loader skipped, by reason (missing images, bad entries, ...)."""
    from fashion_retrieval.training.trainer import load_split

    return dict(sorted(load_split(config, config.train_split).skipped.items()))


def evaluate_checkpoint(checkpoint: Path, config: Any, out: Path) -> dict[str, Any]:
    """The official evaluation of ``checkpoint`` (``training/evaluate.py``), written to ``OUT/evaluation.json``."""
    import json

    from fashion_retrieval.training.cli import evaluate_main

    path = out / "evaluation.json"
    code = evaluate_main(["--checkpoint", str(checkpoint), "--json", str(path), "--data-root", str(config.data_root),
                          "--batch-size", str(config.eval_batch_size), "--num-workers", str(config.num_workers)])
    if code != 0:
        raise ValueError(f"the evaluation of {checkpoint} failed (training/evaluate.py exit {code}; its error is above)")
    return json.loads(path.read_text(encoding="utf-8"))


def reproduce(name: str, out: str | Path, data_root: str | Path | None = None, tiny: bool = False) -> dict[str, Any]:
    """Run recipe ``name`` into ``out``; returns the report also written as ``OUT/reproduction.json``
    and ``OUT/reproduction.md``. Without ``data_root`` only ``tiny`` runs, on stand-in data."""
    start = time.monotonic()
    recipe = get_recipe(name)
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    standins = data_root is None
    if standins:
        if not tiny:
            raise ValueError(f"{name} needs the data: give --data-root (only --tiny runs on stand-in data)")
        data_root = standin_root(recipe.dataset, out / "data" / recipe.dataset)
    data_root = Path(data_root).resolve()
    if not data_root.is_dir():
        raise ValueError(f"--data-root {data_root} is not a folder")
    if tiny and recipe.tiny_open_clip:
        register_tiny_open_clip(recipe.tiny_open_clip, out / "open_clip_configs")
    stages: list[dict[str, Any]] = []
    for stage in recipe.stages:
        config = stage_config(recipe, stage, data_root, out, tiny)
        checkpoint, seconds = run_stage(config)
        stages.append({"stage": stage.name, "checkpoint": str(checkpoint), "seconds_trained": round(seconds, 1),
                       "train_skipped": training_skips(config)})
    evaluation = evaluate_checkpoint(checkpoint, config, out)
    report = build_report(recipe, evaluation, checkpoint=checkpoint, stages=stages, data_root=data_root,
                          tiny=tiny, standins=standins, seconds=time.monotonic() - start)
    write_report(report, out)
    return report
