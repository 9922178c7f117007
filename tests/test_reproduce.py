"""``python -m fashion_retrieval.reproduce RECIPE --tiny``: the published chain end to end on a CPU.

Each recipe trains its stages with a tiny random encoder, then runs the official evaluation
over the whole protocol of the data (FashionIQ: the real val annotations, every query and
every category gallery, with stand-in pictures), and writes the report. Rerun, it reuses
finished stages and resumes a stage cut short; it refuses a folder of other settings.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fashion_retrieval.reproduce.__main__ import main
from fashion_retrieval.reproduce.recipes import load_recipes

RECIPES = ("tirg-fashion200k", "tirg-fashioniq", "clip4cir-fashioniq")


def _fashioniq_val_counts(annotations: Path) -> tuple[int, int]:
    """(queries, gallery) of FashionIQ's val protocol, counted from the annotation files."""
    queries = gallery = 0
    for cat in ("dress", "shirt", "toptee"):
        caps = json.loads((annotations / "captions" / f"cap.{cat}.val.json").read_text())
        queries += sum(1 for c in caps if any(x.strip() for x in c["captions"]))
        gallery += len(set(json.loads((annotations / "image_splits" / f"split.{cat}.val.json").read_text())))
    return queries, gallery


def _run(*argv: str) -> int:
    return main(list(argv))


@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES)
def test_tiny_reproduction_runs_the_chain_and_reports_in_the_published_shape(recipe, tmp_path, capsys):
    from conftest import FASHIONIQ_ANNOTATIONS

    out = tmp_path / "out"
    assert _run(recipe, "--tiny", "--out", str(out)) == 0
    report = json.loads((out / "reproduction.json").read_text())
    assert report["recipe"] == recipe
    assert set(report) >= {"recipe", "metrics", "queries", "skipped", "checkpoint", "seconds"}
    published = load_recipes()[recipe].published
    assert set(report["metrics"]) == set(published)
    for name, m in report["metrics"].items():
        assert m["published"] == published[name]
        assert isinstance(m["measured"], float) and 0.0 <= m["measured"] <= 100.0, (name, m)
        assert m["difference"] == pytest.approx(m["measured"] - m["published"], abs=0.01)
    assert isinstance(report["queries"], int) and report["queries"] > 0
    assert isinstance(report["skipped"], dict) and isinstance(report["seconds"], float)
    assert Path(report["checkpoint"], "config.json").is_file()
    assert report["commit"] and report["hardware"]["cpu_count"] >= 1
    for stage in report["stages"]:
        assert all(isinstance(n, int) and n > 0 for n in stage["train_skipped"].values())
    if recipe.endswith("fashioniq"):  # stand-in pictures for the first 64 training triplets of each category only
        assert report["stages"][-1]["train_skipped"]["missing_image"] > 0
    if recipe.endswith("fashioniq"):  # the whole val protocol of the real annotations
        assert (report["queries"], report["gallery"]) == _fashioniq_val_counts(FASHIONIQ_ANNOTATIONS)
        assert set(report["categories"]) == {"dress", "shirt", "toptee"}
    table = (out / "reproduction.md").read_text()
    assert "| metric | published | measured | difference |" in table and table in capsys.readouterr().out
    if recipe == "clip4cir-fashioniq":
        stage1, stage2 = out / "clip4cir_stage1_fashioniq", out / "clip4cir_stage2_fashioniq"
        assert (stage1 / "best" / "config.json").is_file()  # save_best: avg
        assert Path(report["checkpoint"]) == stage2 / "best"
        config2 = json.loads((stage2 / "final" / "train_config.json").read_text())
        assert config2["init_from"] == str(stage1)  # a run folder: its best/ is loaded
        clip = json.loads((stage2 / "best" / "config.json").read_text())["clip_activation"]
        assert set(clip.values()) == {"quick_gelu"}  # the tiny CLIP is built as OpenAI's RN50x4


@pytest.mark.slow
def test_a_second_run_reuses_finished_stages_and_resumes_a_cut_one(tmp_path):
    out = tmp_path / "out"
    assert _run("tirg-fashion200k", "--tiny", "--out", str(out)) == 0
    first = json.loads((out / "reproduction.json").read_text())
    assert first["stages"][0]["seconds_trained"] > 0
    assert _run("tirg-fashion200k", "--tiny", "--out", str(out)) == 0
    again = json.loads((out / "reproduction.json").read_text())
    assert again["stages"][0]["seconds_trained"] == 0.0  # reused, not retrained
    assert again["metrics"] == first["metrics"]
    stage = out / "tirg_fashion200k"
    shutil.rmtree(stage / "final")  # as if killed after the state at step 4 was saved
    shutil.rmtree(stage / "state" / "step_8")
    assert _run("tirg-fashion200k", "--tiny", "--out", str(out)) == 0
    resumed = json.loads((out / "reproduction.json").read_text())
    steps = [json.loads(line)["step"] for line in (stage / "metrics.jsonl").read_text().splitlines()
             if "loss" in json.loads(line)]
    assert steps == [2, 4, 6, 8, 6, 8]  # logged every 2 steps; resumed at step 4, not trained again from 0
    assert resumed["metrics"] == first["metrics"]  # a resumed run ends where the whole one did


def test_bad_invocations_say_what_is_wrong(tmp_path, capsys):
    assert _run("tirg-fashion200k", "--out", str(tmp_path / "a")) == 2
    assert "needs the data: give --data-root" in capsys.readouterr().err
    assert _run("tirg-fashion200k", "--data-root", str(tmp_path / "missing"), "--out", str(tmp_path / "b")) == 2
    assert "is not a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _run("tirg-shoes", "--tiny", "--out", str(tmp_path / "c"))
    assert "invalid choice: 'tirg-shoes'" in capsys.readouterr().err


@pytest.mark.slow
def test_an_out_folder_of_other_settings_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    assert _run("tirg-fashion200k", "--tiny", "--out", str(out)) == 0
    data = out / "data" / "fashion200k"
    capsys.readouterr()
    assert _run("tirg-fashion200k", "--data-root", str(data), "--out", str(out)) == 2  # not tiny now
    assert "holds a run with other settings" in capsys.readouterr().err


def test_every_recipe_names_loadable_stages_and_its_published_source():
    from fashion_retrieval.reproduce.recipes import config_dir
    from fashion_retrieval.training.config import TrainConfig

    recipes = load_recipes()
    assert set(recipes) == set(RECIPES)
    for recipe in recipes.values():
        for stage in recipe.stages:
            config = TrainConfig.load(config_dir() / stage.config)
            assert config.dataset == recipe.dataset
            config.replace(**recipe.tiny_overrides)  # the tiny overrides are valid keys and values
        assert recipe.source and recipe.published
    assert recipes["tirg-fashion200k"].published == {"R@1": 14.1, "R@10": 42.5, "R@50": 63.8}
