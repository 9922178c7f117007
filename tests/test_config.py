"""TrainConfig: round trips, errors that name the problem, CLI overrides, shipped configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from fashion_retrieval.training.config import TrainConfig, parse_override_args

CONFIG_DIR = Path(__file__).resolve().parents[1] / "training" / "configs"


def test_yaml_and_json_round_trip(tmp_path: Path) -> None:
    cfg = TrainConfig(compositor="concat", lr=0.003, categories=["dress", "shirt"], resume="latest")
    for name in ("c.yaml", "c.json"):
        path = cfg.save(tmp_path / name)
        assert TrainConfig.load(path) == cfg


def test_unknown_key_names_it_and_lists_valid(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("compositor: tirg\nlearning_rate: 0.1\n")
    with pytest.raises(ValueError) as err:
        TrainConfig.load(path)
    msg = str(err.value)
    assert "learning_rate" in msg and "valid keys" in msg and "max_steps" in msg and str(path) in msg


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
        TrainConfig(modality_dropout=1.5)


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
        ["--max-steps", "7", "--lr=0.5", "--image_encoder", "tiny_cnn", "--streaming",
         "--categories", "dress,shirt", "--resume", "none", "--pretrained", "false"]
    )
    assert (new.max_steps, new.lr, new.image_encoder, new.streaming) == (7, 0.5, "tiny_cnn", True)
    assert new.categories == ["dress", "shirt"] and new.resume is None and new.pretrained is False
    assert base.max_steps == 1000 and base.image_encoder == "efficientnet_lite0"  # untouched
    with pytest.raises(ValueError, match="max_stepz"):
        base.with_overrides(["--max-stepz", "3"])
    with pytest.raises(ValueError, match="unexpected"):
        base.with_overrides(["max_steps", "3"])
    with pytest.raises(ValueError, match="embed_dim"):
        base.with_overrides(["--embed-dim", "1.5"])


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
    assert (f200k.image_encoder, f200k.text_encoder, f200k.optimizer) == ("resnet18", "lstm", "sgd")
    assert (f200k.lr, f200k.batch_size, f200k.max_steps, f200k.lr_decay_steps) == (0.01, 32, 160000, 50000)
