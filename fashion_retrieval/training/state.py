"""Run-folder bookkeeping: early checks, atomic ``save_state`` rotation, resume, metrics log."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

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
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
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
