"""The published recipes as data: ``training/configs/published/recipes.yaml`` read and checked.

Each recipe names its training stages (configs of ``training/configs/``), the data set, the
published figures with their source, and what ``--tiny`` changes. Nothing here is a setting:
the settings live in the YAML files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).resolve().parents[2] / "training" / "configs"
RECIPES_FILE = CONFIG_DIR / "published" / "recipes.yaml"
RECIPE_KEYS = ("dataset", "stages", "published")  # what every entry of the file must have


@dataclass(frozen=True)
class Stage:
    """One training run of a recipe: its config file, and the earlier stage it starts from."""

    config: str
    init_from: str | None = None  # the stem of an earlier stage's config (its run folder)

    @property
    def name(self) -> str:
        """The stage's run folder name under ``--out``: its config's stem."""
        return Path(self.config).stem


@dataclass(frozen=True)
class Recipe:
    """A published result and how to reproduce it."""

    name: str
    dataset: str
    stages: tuple[Stage, ...]
    published: dict[str, float]
    source: str
    tiny_overrides: dict[str, Any] = field(default_factory=dict)
    tiny_open_clip: dict[str, Any] | None = None  # {"name", "config"}: a random CLIP registered offline


def config_dir() -> Path:
    """The folder of the training configs (``$FASHION_RETRIEVAL_CONFIGS`` overrides it)."""
    return Path(os.environ.get("FASHION_RETRIEVAL_CONFIGS", CONFIG_DIR))


def load_recipes(path: str | Path | None = None) -> dict[str, Recipe]:
    """Every recipe of ``recipes.yaml`` by name; a malformed entry raises ``ValueError`` naming it."""
    import yaml

    path = Path(path) if path is not None else config_dir() / "published" / "recipes.yaml"
    if not path.is_file():
        raise ValueError(f"{path}: the published recipes file is missing (run from a checkout of the project)")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return {name: _recipe(name, entry, path) for name, entry in data.items()}


def _recipe(name: str, entry: Any, path: Path) -> Recipe:
    """One entry of the recipes file as a ``Recipe``."""
    where = f"{path}: recipe {name!r}"
    missing = [key for key in RECIPE_KEYS if key not in entry] if isinstance(entry, dict) else list(RECIPE_KEYS)
    if missing:
        raise ValueError(f"{where} needs {', '.join(RECIPE_KEYS)}; missing {', '.join(missing)}")
    stages = tuple(Stage(s["config"], s.get("init_from")) for s in entry["stages"])
    names = [s.name for s in stages]
    for i, stage in enumerate(stages):
        if not (config_dir() / stage.config).is_file():
            raise ValueError(f"{where}: stage config {stage.config} is not in {config_dir()}")
        if stage.init_from is not None and stage.init_from not in names[:i]:
            raise ValueError(f"{where}: init_from {stage.init_from!r} is not an earlier stage ({names[:i]})")
    published = entry["published"]
    metrics = {str(k): float(v) for k, v in (published.get("metrics") or {}).items()}
    if not metrics or not published.get("source"):
        raise ValueError(f"{where}: published needs metrics and their source")
    tiny = entry.get("tiny") or {}
    return Recipe(name, entry["dataset"], stages, metrics, str(published["source"]),
                  dict(tiny.get("overrides") or {}), tiny.get("open_clip_model"))


def get_recipe(name: str) -> Recipe:
    """The recipe ``name``; an unknown name raises ``ValueError`` listing the known ones."""
    recipes = load_recipes()
    if name not in recipes:
        raise ValueError(f"unknown recipe {name!r}; choose one of {', '.join(recipes)}")
    return recipes[name]


def register_tiny_open_clip(spec: dict[str, Any], folder: Path) -> None:
    """Make the recipe's tiny random CLIP known to open_clip (built offline, no weights)."""
    import json

    import open_clip

    folder.mkdir(parents=True, exist_ok=True)
    file = folder / f"{spec['name']}.json"
    file.write_text(json.dumps(spec["config"]), encoding="utf-8")
    open_clip.add_model_config(str(file))
