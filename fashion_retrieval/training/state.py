"""Run-folder bookkeeping: early checks, atomic ``save_state`` rotation, resume, metrics log, ``best/``."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from fashion_retrieval.io_utils import swap_dir_into_place

MIN_FREE_BYTES = 200 * 1024**2
KEEP_STATES = 2
_STEP_DIR = re.compile(r"^step_(\d+)$")
TRAINER_STATE = "trainer_state.json"


def check_output_dir(output_dir: str | Path, min_free_bytes: int = MIN_FREE_BYTES) -> Path:
    """Create ``output_dir`` and make sure it is writable with free space, before training."""
    out = Path(output_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write_probe_{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"output_dir {out} is not writable: {err.strerror or err}") from None
    free = shutil.disk_usage(out).free
    if free < min_free_bytes:
        raise ValueError(
            f"output_dir {out} has only {free / 1024**2:.0f} MiB free; "
            f"training needs at least {min_free_bytes / 1024**2:.0f} MiB for checkpoints"
        )
    return out


def state_dirs(output_dir: str | Path) -> list[Path]:
    """Completed ``state/step_N`` folders, oldest first."""
    root = Path(output_dir) / "state"
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def resolve_resume(resume: str, output_dir: str | Path) -> Path:
    """The state folder to resume from: a path, or "latest" in ``output_dir``."""
    if resume == "latest":
        dirs = state_dirs(output_dir)
        if not dirs:
            raise ValueError(f"resume='latest' but {Path(output_dir) / 'state'} holds no saved state")
        return dirs[-1]
    path = Path(resume)
    if not (path / TRAINER_STATE).is_file():
        raise ValueError(f"resume={resume!r}: {path} is not a saved training state (no {TRAINER_STATE})")
    return path


def read_trainer_state(state_dir: Path) -> dict[str, Any]:
    """The step counters saved beside Accelerate's state."""
    return json.loads((state_dir / TRAINER_STATE).read_text())


def save_state(accelerator: Any, output_dir: str | Path, step: int, extra: dict[str, Any]) -> Path:
    """``accelerator.save_state`` into a temporary folder, then rename it to ``state/step_N``.

    Every process writes into the temporary folder (each saves its RNG state); the main
    process renames it and keeps the last ``KEEP_STATES`` states, so a crash mid-save never
    leaves a half-written ``step_N``.
    """
    root = Path(output_dir) / "state"
    tmp = root / f".tmp_step_{step}"
    final = root / f"step_{step}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / TRAINER_STATE).write_text(json.dumps({"step": step, **extra}))
        swap_dir_into_place(tmp, final)
        for old in state_dirs(output_dir)[:-KEEP_STATES]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


class MetricsLog:
    """Appends JSON lines to ``metrics.jsonl`` (main process only) and to the tracker."""

    def __init__(self, accelerator: Any, output_dir: str | Path) -> None:
        self.accelerator = accelerator
        self.path = Path(output_dir) / "metrics.jsonl"

    def write(self, step: int, values: dict[str, Any], track: bool = True) -> None:
        """Record ``values`` at ``step``."""
        if not self.accelerator.is_main_process:
            return
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, "time": round(time.time(), 3), **values}) + "\n")
        scalars = {k: v for k, v in _flatten(values).items() if isinstance(v, (int, float))}
        if track and scalars and self.accelerator.trackers:
            self.accelerator.log(scalars, step=step)


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"eval": {"R@1": 3}}`` -> ``{"eval/R@1": 3}``."""
    out: dict[str, Any] = {}
    for k, v in values.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out


def read_best(output_dir: str | Path) -> dict[str, Any] | None:
    """``{"metric", "value", "step"}`` of the run's ``best/`` checkpoint, or None when there is none."""
    path = Path(output_dir) / "best" / "metrics.json"
    if not path.is_file():
        return None
    best = json.loads(path.read_text(encoding="utf-8")).get("best")
    return best if isinstance(best, dict) else None


def keep_best(run: Any, result: dict[str, Any]) -> None:
    """Save ``<output_dir>/best`` when ``result`` beats the best evaluation so far on ``save_best``.

    As CLIP4Cir's ``--save-best``: strictly greater replaces (the earliest of equal values
    stays). A metric the evaluation does not report is a ``ValueError`` naming those it does.
    """
    from fashion_retrieval.checkpoints import save_checkpoint

    cfg = run.config
    recall = result.get("recall", {})
    if cfg.save_best not in recall:
        raise ValueError(f"save_best {cfg.save_best!r} is not a metric of this evaluation; "
                         f"it reports {', '.join(recall) or 'none'}")
    value = float(recall[cfg.save_best])
    if run.best is not None and value <= run.best["value"]:
        return
    run.best = {"metric": cfg.save_best, "value": value, "step": int(result["step"])}
    save_checkpoint(run.model, Path(cfg.output_dir) / "best", train_config=cfg.to_dict(),
                    metrics={**result, "best": dict(run.best)})
    logging.getLogger(__name__).info("best %s %.2f at step %d: saved %s/best", cfg.save_best, value, run.best["step"], cfg.output_dir)
