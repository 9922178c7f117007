"""TrainConfig: round trips, errors that name the problem, CLI overrides, shipped configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from fashion_retrieval.training.config import TrainConfig, parse_override_args

CONFIG_DIR = Path(__file__).resolve().parents[1] / "training" / "configs"


def test_yaml_and_json_round_trip(tmp_path: Path) -> None:
    cfg = TrainConfig(lr=0.003, categories=["dress", "shirt"], resume="latest", model={"compositor": "concat"})
    for name in ("c.yaml", "c.json"):
        path = cfg.save(tmp_path / name)
        assert TrainConfig.load(path) == cfg


def test_unknown_key_names_it_and_lists_valid(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("model: {compositor: tirg}\nlearning_rate: 0.1\n")
    with pytest.raises(ValueError) as err:
        TrainConfig.load(path)
    msg = str(err.value)
    assert "learning_rate" in msg and "valid keys" in msg and "max_steps" in msg and str(path) in msg


@pytest.mark.parametrize(("text", "named", "nearest"), [
    ("compositor: tirg\n", "'compositor'", "did you mean 'model.compositor'"),  # a model key at the top level
    ("model: {compositer: tirg}\n", "'compositer'", "did you mean 'compositor'"),
    ("max_step: 3\n", "'max_step'", "did you mean 'max_steps'"),
])
def test_a_misplaced_or_typod_key_names_the_nearest_valid_one(tmp_path: Path, text: str, named: str,
                                                              nearest: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=f"unknown .*{named}.*{nearest}"):
        TrainConfig.load(path)
    with pytest.raises(ValueError, match="did you mean 'model.compositor'"):
        TrainConfig().with_overrides(["--compositor", "concat"])


def test_saved_flat_configs_migrate_on_read(tmp_path: Path) -> None:
    """A run saved before the nested model (flat model keys, the catalogue's preset, products
    and data_seed at the top) still loads; a new config in that layout does not."""
    from fashion_retrieval.training.config import migrate_saved

    old = {"dataset": "synthetic", "preset": "hard", "products": 40, "data_seed": 2, "compositor": "concat",
           "text_encoder_options": {"hidden": 8}, "embed_dim": 16, "max_steps": 3}
    new = migrate_saved(old)
    assert new == {"dataset": "synthetic", "max_steps": 3, "dataset_options": {"preset": "hard", "products": 40, "seed": 2},
                   "model": {"compositor": "concat", "text_kwargs": {"hidden": 8}, "embed_dim": 16}}
    assert migrate_saved(new) == new
    fiq = migrate_saved({"dataset": "fashioniq", "preset": "easy", "products": None, "data_seed": None})
    assert fiq == {"dataset": "fashioniq"}  # the catalogue's settings meant nothing there
    path = tmp_path / "config.yaml"
    path.write_text(yaml_dump(old))
    assert TrainConfig.load_saved(path) == TrainConfig.from_dict(new)
    with pytest.raises(ValueError, match="did you mean 'model.compositor'"):
        TrainConfig.load(path)


def yaml_dump(data: dict) -> str:
    import yaml

    return yaml.safe_dump(data)


def test_wrong_types_and_ranges_are_errors() -> None:
    with pytest.raises(ValueError, match="max_steps"):
        TrainConfig.from_dict({"max_steps": "many"})
    with pytest.raises(ValueError, match="pretrained"):
        TrainConfig.from_dict({"pretrained": "yes please"})
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=1)
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="categories"):
        TrainConfig.from_dict({"categories": "dress"})
    with pytest.raises(ValueError, match="modality_dropout"):
        TrainConfig(model={"modality_dropout": 1.5})


def test_yaml_quirks(tmp_path: Path) -> None:
    path = tmp_path / "q.yaml"
    path.write_text("lr: 1e-3\nmax_steps: 20\n")  # PyYAML reads 1e-3 as a string
    assert TrainConfig.load(path).lr == pytest.approx(1e-3)
    path.write_text("lr: [1\n")
    with pytest.raises(ValueError, match="q.yaml:"):
        TrainConfig.load(path)


def test_cli_overrides_make_a_new_config() -> None:
    base = TrainConfig()
    new = base.with_overrides(
        ["--max-steps", "7", "--lr=0.5", "--model.image_encoder", "tiny_cnn", "--streaming",
         "--categories", "dress,shirt", "--resume", "none", "--model.pretrained", "false",
         "--model.text-kwargs", '{"hidden": 8}']
    )
    assert (new.max_steps, new.lr, new.model.image_encoder, new.streaming) == (7, 0.5, "tiny_cnn", True)
    assert new.categories == ["dress", "shirt"] and new.resume is None and new.model.pretrained is False
    assert new.model.text_kwargs == {"hidden": 8} and new.model.compositor == "tirg"
    assert base.max_steps == 1000 and base.model.image_encoder == "efficientnet_lite0"  # untouched
    with pytest.raises(ValueError, match="max_stepz"):
        base.with_overrides(["--max-stepz", "3"])
    with pytest.raises(ValueError, match="unexpected"):
        base.with_overrides(["max_steps", "3"])
    with pytest.raises(ValueError, match="embed_dim"):
        base.with_overrides(["--model.embed-dim", "1.5"])
    with pytest.raises(ValueError, match="did you mean 'model.embed_dim'"):
        base.with_overrides(["--model.embed-dimm", "3"])


def test_parse_override_args() -> None:
    assert parse_override_args(["--a-b", "1", "--c", "--d=x"]) == {"a_b": "1", "c": None, "d": "x"}


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path: Path) -> None:
    cfg = TrainConfig.load(path)
    assert cfg.output_dir.startswith("runs/")


def test_shipped_config_set_is_complete() -> None:
    names = {p.stem for p in CONFIG_DIR.glob("*.yaml")}
    for needed in ("tirg", "concat", "image_only", "text_only", "combiner", "complex_rotation",
                   "tirg_fashion200k", "tirg_fashioniq", "clip4cir_stage1_fashioniq", "clip4cir_stage2_fashioniq",
                   "image_to_image_synthetic"):
        assert needed in names
    assert any(n.startswith("crossmodal_") for n in names)
    f200k = TrainConfig.load(CONFIG_DIR / "tirg_fashion200k.yaml")
    assert (f200k.model.image_encoder, f200k.model.text_encoder, f200k.optimizer) == ("resnet18", "lstm", "sgd")
    assert (f200k.lr, f200k.batch_size, f200k.max_steps, f200k.lr_decay_steps) == (0.01, 32, 160000, 50000)


def _find(data: dict, key: str) -> object:
    """``key``'s value anywhere in the nested dict ``data`` (None when absent)."""
    for k, v in data.items():
        if k == key:
            return v
        if isinstance(v, dict) and (found := _find(v, key)) is not None:
            return found
    return None


# What a config's opening comment may state, and the key that must hold it.
CLAIMS = {r"(\d+) products": "products", r"(\d+) steps(?! an epoch)": ("max_steps", "steps"), r"batch (\d+)": "batch_size",
          r"\((\w+) preset": "preset"}


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.rglob("*.yaml")), ids=lambda p: str(p.relative_to(CONFIG_DIR)))
def test_each_config_opens_with_a_true_comment(path: Path) -> None:
    """Every recipe file says what it is first; the figures its comment states are the file's."""
    import re

    import yaml

    text = path.read_text(encoding="utf-8")
    assert text.startswith("#"), f"{path} must open with a comment saying what it is"
    comment = " ".join(line[1:] for line in text.splitlines() if line.startswith("#"))
    data = yaml.safe_load(text)
    for pattern, keys in CLAIMS.items():
        for claimed in re.findall(pattern, comment.replace(",", "")):
            values = [_find(data, k) for k in ((keys,) if isinstance(keys, str) else keys)]
            held = [v for v in values if v is not None]
            assert held and str(held[0]) == claimed, f"{path}: the comment says {pattern!r} {claimed}, the file {held}"


def test_the_default_and_the_comparison_load_the_shopper_recipe(tmp_path: Path, monkeypatch) -> None:
    """recipes/shopper.yaml says the embedded default and the comparison load it: a value changed
    in a copy of the file reaches both."""
    import shutil

    import yaml

    from fashion_retrieval.serving.default import DefaultSpec, _train_config
    from fashion_retrieval.training.compare import comparison_config

    path = CONFIG_DIR / "recipes" / "shopper.yaml"
    assert "embedded default" in path.read_text() and "comparison" in path.read_text()
    copy = tmp_path / "configs"
    shutil.copytree(CONFIG_DIR, copy)
    recipe = yaml.safe_load(path.read_text())
    recipe["base"]["momentum"] = 0.5
    recipe["compositors"]["tirg"]["relevance_weight"] = 0.25
    (copy / "recipes" / "shopper.yaml").write_text(yaml.safe_dump(recipe))
    monkeypatch.setenv("FASHION_RETRIEVAL_CONFIGS", str(copy))
    for cfg in (_train_config(tmp_path, DefaultSpec(), "tirg", "tirg", "composed"),
                comparison_config("tirg", tmp_path)):
        assert (cfg.momentum, cfg.relevance_weight) == (0.5, 0.25)


@pytest.mark.parametrize("name", ["tirg", "concat", "text_only", "image_only"])
def test_default_and_comparison_train_the_same_model(tmp_path: Path, name: str) -> None:
    """The default's and the comparison's configs of one model differ only where the recipe's
    ``default`` and ``compare`` sections say (and in their run folders)."""
    import yaml

    from fashion_retrieval.serving.default import DefaultSpec, _train_config
    from fashion_retrieval.training.compare import comparison_config

    recipe = yaml.safe_load((CONFIG_DIR / "recipes" / "shopper.yaml").read_text())
    default = _train_config(tmp_path, DefaultSpec(), name, name, "composed").to_dict()
    compare = comparison_config(name, tmp_path).to_dict()
    differ = {k for k in default if default[k] != compare[k]}
    assert differ == {"output_dir", "log_every", *recipe["default"]["config"]}
    assert default["log_every"] == default["max_steps"] // recipe["default"]["logs"]
