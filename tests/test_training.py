"""Training on Accelerate with tiny models and a tiny FashionIQ-layout catalogue made here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from fashion_retrieval.training.config import TrainConfig, merge

COLORS = {"red": (210, 30, 30), "green": (30, 160, 60), "blue": (40, 70, 210), "yellow": (230, 200, 40)}
SHAPES = ("circle", "square", "triangle")


def _draw(color: tuple[int, int, int], shape: str, size: int = 32, shift: int = 0) -> Image.Image:
    img = Image.new("RGB", (size, size), (245, 245, 245))
    d = ImageDraw.Draw(img)
    box = (6 + shift, 6, size - 6 + shift, size - 6)
    {"circle": d.ellipse, "square": d.rectangle}.get(shape, lambda b, fill: d.polygon(
        [(size // 2, 5), (size - 5, size - 5), (5, size - 5)], fill=fill))(box, fill=color)
    return img


def make_tiny_fashioniq(root: Path, views: int = 1) -> Path:
    """12 products (4 colours x 3 shapes), ``views`` images each, and composed queries
    "make it <colour|shape>" between the first views."""
    (root / "images").mkdir(parents=True)
    (root / "captions").mkdir()
    (root / "image_splits").mkdir()
    ids, meta = [], {}
    for c in COLORS:
        for s in SHAPES:
            for v in range(views):
                asin = f"{c}_{s}" if v == 0 else f"{c}_{s}_v{v}"
                _draw(COLORS[c], s, shift=2 * v).save(root / "images" / f"{asin}.png")
                ids.append(asin)
                meta[asin] = {"caption": f"{c} {s} dress", "category": "dress",
                              "attributes": {"color": c, "shape": s}}
    triplets = []
    for c in COLORS:
        for s in SHAPES:
            for c2 in COLORS:
                if c2 != c:
                    triplets.append({"candidate": f"{c}_{s}", "target": f"{c2}_{s}", "captions": [f"make it {c2}", "same shape"]})
            for s2 in SHAPES:
                if s2 != s:
                    triplets.append({"candidate": f"{c}_{s}", "target": f"{c}_{s2}", "captions": [f"make it a {s2}", "same colour"]})
    for split in ("train", "val"):
        (root / "captions" / f"cap.dress.{split}.json").write_text(json.dumps(triplets))
        (root / "image_splits" / f"split.dress.{split}.json").write_text(json.dumps(ids))
    (root / "image_meta.json").write_text(json.dumps(meta))
    return root


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_fashioniq(tmp_path_factory.mktemp("fiq"))


@pytest.fixture(scope="module")
def views_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_fashioniq(tmp_path_factory.mktemp("fiq_views"), views=2)


def tiny_config(data_root: Path, out: Path, **kw) -> TrainConfig:
    base = dict(
        dataset="fashioniq", data_root=str(data_root), train_split="train", eval_split="val",
        cache_features=True, batch_size=8, max_steps=12, lr=0.05, lr_decay_steps=6, log_every=1,
        save_every=4, eval_every=100, eval_batch_size=16, output_dir=str(out),
        feature_cache_dir=str(out.parent / "features"), model={"image_encoder": "tiny_cnn",
        "text_encoder": "lstm", "compositor": "tirg", "embed_dim": 32, "text_kwargs": {"word_dim": 32,
        "hidden": 32}, "pretrained": False, "freeze_image_encoder": True, "modality_dropout": 0.2},
    )
    return TrainConfig.from_dict(merge(base, kw))


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_training_reduces_loss_and_writes_run(data_root: Path, tmp_path: Path) -> None:
    from fashion_retrieval.checkpoints import load_model
    from fashion_retrieval.training import train

    out = tmp_path / "run"
    final = train(tiny_config(
        data_root, out, max_steps=40, save_every=20, optimizer="adamw", lr=0.01, lr_schedule="constant",
        model={"modality_dropout": 0.0},
    ))
    assert final == out / "final"
    losses = [m["loss"] for m in _metrics(out) if "loss" in m]
    assert len(losses) == 40
    assert np.mean(losses[-5:]) < 0.85 * np.mean(losses[:5])
    assert TrainConfig.load(out / "config.yaml").max_steps == 40
    result = json.loads((out / "eval.json").read_text())
    assert result["dataset"] == "fashioniq" and "R@10" in result["recall"] and result["step"] == 40
    assert any("eval" in m for m in _metrics(out))
    assert sorted(p.name for p in (out / "state").iterdir()) == ["step_20", "step_40"]
    model = load_model(final)
    assert model.config.compositor == "tirg"
    assert json.loads((final / "train_config.json").read_text())["max_steps"] == 40


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


class _Interrupt(Exception):
    pass


def test_resume_after_interruption_matches_uninterrupted(data_root: Path, tmp_path: Path, monkeypatch) -> None:
    from fashion_retrieval.training import state as state_mod
    from fashion_retrieval.training import train

    # concat has dropout and batch-norm; modality dropout draws random numbers; the step
    # schedule decays at 6 and SGD keeps momentum: all must be restored exactly.
    kw = dict(max_steps=12, save_every=4, lr_decay_steps=6, model={"compositor": "concat"})
    full = train(tiny_config(data_root, tmp_path / "full", **kw))

    original = state_mod.MetricsLog.write

    def crash_at_step_10(self, step, values, track=True):
        if step == 10:
            raise _Interrupt
        original(self, step, values, track)

    monkeypatch.setattr(state_mod.MetricsLog, "write", crash_at_step_10)
    with pytest.raises(_Interrupt):
        train(tiny_config(data_root, tmp_path / "cut", **kw))
    monkeypatch.setattr(state_mod.MetricsLog, "write", original)
    assert (tmp_path / "cut" / "state" / "step_8").is_dir()
    assert not (tmp_path / "cut" / "final").exists()
    resumed = train(tiny_config(data_root, tmp_path / "cut", resume="latest", **kw))

    a, b = _weights(full), _weights(resumed)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    steps = [m["step"] for m in _metrics(tmp_path / "cut") if "loss" in m]
    assert steps == list(range(1, 10)) + [9, 10, 11, 12]  # step 9 logged, then resumed from 8


def test_end_to_end_path_with_accumulation(data_root: Path, tmp_path: Path) -> None:
    from fashion_retrieval.training import train

    out = tmp_path / "e2e"
    cfg = tiny_config(
        data_root, out, cache_features=False, max_steps=3, grad_accum_steps=2, save_every=2,
        num_workers=0, model={"freeze_image_encoder": False},
    )
    train(cfg)
    losses = [m for m in _metrics(out) if "loss" in m]
    assert [m["step"] for m in losses] == [1, 2, 3]
    assert not (tmp_path / "features").exists() or not any((tmp_path / "features").iterdir())


@pytest.mark.parametrize(
    ("task", "loss", "compositor"),
    [("crossmodal", "symmetric_infonce", "text_only"), ("crossmodal", "cmpm", "text_only"),
     ("crossmodal", "correlational", "text_only"), ("image_to_image", "symmetric_infonce", "image_only"),
     ("composed", "soft_triplet", "complex_rotation")],
)
def test_other_tasks_and_losses_train(
    views_root: Path, tmp_path: Path, task: str, loss: str, compositor: str
) -> None:
    from fashion_retrieval.training import train

    out = tmp_path / task
    train(tiny_config(
        views_root, out, task=task, loss=loss, max_steps=4, optimizer="adamw", lr=1e-3,
        lr_schedule="cosine", model={"compositor": compositor},
    ))
    losses = [m["loss"] for m in _metrics(out) if "loss" in m]
    assert len(losses) == 4 and all(np.isfinite(losses))
    assert json.loads((out / "eval.json").read_text())["protocol"] == {"composed": "fashioniq"}.get(task, task)


def test_bad_output_dir_fails_before_training(data_root: Path, tmp_path: Path) -> None:
    from fashion_retrieval.training import train

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="not writable"):
        train(tiny_config(data_root, blocker / "run"))
    with pytest.raises(ValueError, match="no saved state"):
        train(tiny_config(data_root, tmp_path / "fresh", resume="latest"))


def test_push_to_hub_and_evaluate_cli(data_root: Path, tmp_path: Path, monkeypatch) -> None:
    from helpers import autospec_hf_api

    from fashion_retrieval.training import train
    from fashion_retrieval.training.cli import evaluate_main

    hf_api = autospec_hf_api(monkeypatch)  # the network is the only thing mocked
    final = train(tiny_config(data_root, tmp_path / "run", max_steps=2, push_to_hub="me/tiny"))
    assert [c[0] for c in hf_api.mock_calls] == ["", "().create_repo", "().upload_folder"]
    upload = hf_api.return_value.upload_folder.call_args.kwargs
    assert upload["repo_id"] == "me/tiny" and Path(upload["folder_path"]) == final
    assert (final / "model.safetensors").is_file()

    out_json = tmp_path / "eval" / "result.json"
    assert evaluate_main(["--checkpoint", str(final), "--json", str(out_json)]) == 0
    result = json.loads(out_json.read_text())
    assert result["dataset"] == "fashioniq" and result["split"] == "val"
    assert set(result["recall"]) >= {"R@10", "R@50"}
    assert evaluate_main(["--checkpoint", str(tmp_path), "--json", str(out_json)]) == 2


def test_comparison_table_and_readme_markers(tmp_path: Path) -> None:
    from fashion_retrieval.training.compare import (
        END,
        START,
        markdown_table,
        ordering_check,
        update_readme,
    )

    def row(model: str, r: float, control: float) -> dict:
        return {"model": model, "loss": "batch_classification", "recall": {"R@1": r / 4, "R@10": r, "R@50": r * 2},
                "one_gallery": {"R@1": r / 5, "R@10": r - 1, "R@50": r},
                "control": {"k": 5, "queries": 40, "both": control, "both_ceiling": 80.0,
                            "both_of_ceiling": control / 0.8, "exact": 1.0, "exact_ceiling": 10.0},
                "phrasing": {"train": {"R@10": r}, "heldout": {"R@10": r - 3}},
                "train_seconds": 10.0}

    rows = [row(m, r, c) for m, r, c in (("image_only", 5.0, 2.0), ("text_only", 8.0, 20.0),
                                        ("concat", 20.0, 30.0), ("tirg", 30.0, 40.0))]
    assert ordering_check(rows) == {"tirg_above_concat": True, "concat_above_single_modality": True,
                                    "tirg_above_baselines_on_control": True, "holds": True}
    rows[3]["control"]["both"] = 25.0  # TIRG below concat on composition control
    assert ordering_check(rows)["tirg_above_baselines_on_control"] is False and ordering_check(rows)["holds"] is False
    rows[3]["control"]["both"] = 40.0  # a stronger rival ahead of TIRG is reported, not a failure
    rival = row("combiner", 25.0, 45.0)
    assert ordering_check(rows + [rival])["holds"] is True
    rows[3]["control"]["both"] = 40.0
    rows[3]["recall"]["R@10"] = 1.0
    assert ordering_check(rows)["holds"] is False
    report = {"preset": "hard", "split": "val", "protocol": "synthetic", "image_encoder": "lite0",
              "text_encoder": "lstm", "steps": 10, "batch_size": 64, "seed": 0, "results": rows}
    table = markdown_table(report)
    # one gallery R@1/10/50, per category R@1/10/50, control both, % of ceiling, exact, phrasing, time
    assert "| concat | 4.0 | 19.0 | 20.0 | 5.0 | 20.0 | 40.0 | 30.0 | 37.5 | 1.0 | 20.0 / 17.0 | 10 s |" in table
    assert table.index("| tirg |") < table.index("| concat |")  # ordered by one-gallery R@1
    readme = tmp_path / "README.md"
    readme.write_text("# Title\n\nintro\n")
    update_readme(readme, table, "cmd")
    update_readme(readme, table.replace("concat", "concat2"), "cmd")  # replaced, not appended twice
    text = readme.read_text()
    assert text.startswith("# Title\n\nintro\n") and text.count(START) == 1 and text.count(END) == 1
    assert "concat2" in text and "| concat |" not in text


def _shared_values(n: int = 48) -> list[list[tuple[str, str]]]:
    colours, types = ("red", "green", "blue", "black"), ("dress", "shirt")
    return [[("type", types[i % 2]), ("color", colours[(i // 2) % 4])] for i in range(n)]


def test_shared_value_batches_group_targets_by_one_value() -> None:
    from fashion_retrieval.training.data import SharedValueBatches, StepBatchSampler

    values = _shared_values()
    always = SharedValueBatches(values, 6, seed=3, share=1.0)
    for step in range(50):
        batch = always.indices(step)
        assert len(batch) == len(set(batch)) == 6
        common = set(values[batch[0]]).intersection(*(set(values[i]) for i in batch[1:]))
        assert common, f"step {step}: {batch} share no value"
    # share 0: exactly the shuffled order.
    never, plain = SharedValueBatches(values, 6, seed=3, share=0.0), StepBatchSampler(len(values), 6, seed=3)
    assert [never.indices(s) for s in range(20)] == [plain.indices(s) for s in range(20)]
    # About the asked share of batches is grouped, decided by (seed, step) alone.
    half = SharedValueBatches(values, 6, seed=3, share=0.5)
    grouped = 0
    for step in range(400):
        batch = half.indices(step)
        grouped += bool(set(values[batch[0]]).intersection(*(set(values[i]) for i in batch[1:])))
    assert 150 < grouped < 280  # shuffled batches of 6 rarely share a value by chance
    again = SharedValueBatches(values, 6, seed=3, share=0.5, start_step=7)
    assert [again.indices(s) for s in range(7, 30)] == [half.indices(s) for s in range(7, 30)]


def test_shared_value_batches_split_one_global_batch_across_ranks() -> None:
    from fashion_retrieval.training.data import SharedValueBatches

    values = _shared_values()
    ranks = [SharedValueBatches(values, 3, seed=1, share=1.0, rank=r, world_size=2) for r in range(2)]
    for step in range(30):
        a, b = (s.indices(step) for s in ranks)
        assert not set(a) & set(b)
        both = a + b
        assert set(values[both[0]]).intersection(*(set(values[i]) for i in both[1:]))


def test_shared_value_batches_need_a_shared_value() -> None:
    from fashion_retrieval.training.data import SharedValueBatches

    values = [[("color", f"c{i}")] for i in range(20)]
    with pytest.raises(ValueError, match="no target value is shared by a global batch of 4"):
        SharedValueBatches(values, 4, seed=0, share=0.5)
    with pytest.raises(ValueError, match="shared_value_batches needs the in-memory input path"):
        TrainConfig(shared_value_batches=0.5, streaming=True).validate()
    with pytest.raises(ValueError, match="shared_value_batches must be in"):
        TrainConfig(shared_value_batches=1.5).validate()


def test_training_with_shared_value_batches_resumes_exactly(data_root: Path, tmp_path: Path) -> None:
    from fashion_retrieval.training import train

    kw = dict(max_steps=8, save_every=4, shared_value_batches=0.5)
    full = train(tiny_config(data_root, tmp_path / "full", **kw))
    train(tiny_config(data_root, tmp_path / "cut", **{**kw, "max_steps": 4}))
    resumed = train(tiny_config(data_root, tmp_path / "cut", resume="latest", **kw))
    a, b = _weights(full), _weights(resumed)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_save_best_keeps_the_best_evaluation_and_says_which_step(data_root: Path, tmp_path: Path) -> None:
    """As CLIP4Cir's --save-best: best/ holds the evaluation with the highest metric, named by step."""
    from safetensors.torch import load_file

    from fashion_retrieval.training import train
    from fashion_retrieval.training.state import read_best

    out = tmp_path / "run"
    train(tiny_config(
        data_root, out, max_steps=40, save_every=10, eval_every=5, save_best="avg", optimizer="adamw",
        lr=0.01, lr_schedule="constant", model={"modality_dropout": 0.0},
    ))
    evals = [(m["step"], m["eval"]["avg"]) for m in _metrics(out) if "eval" in m]
    assert [s for s, _ in evals] == list(range(5, 41, 5))
    top = max(v for _, v in evals)
    best_step = next(s for s, v in evals if v == top)  # the earliest of equal values
    best = read_best(out)
    assert best == {"metric": "avg", "value": pytest.approx(top), "step": best_step}
    saved = json.loads((out / "best" / "metrics.json").read_text())
    assert saved["step"] == best_step and saved["recall"]["avg"] == pytest.approx(top)
    assert f"Measured at training step {best_step}, the run's best validation avg" in (out / "best" / "README.md").read_text()
    assert json.loads((out / "eval.json").read_text())["best"]["step"] == best_step
    if best_step != 40:  # best/ is not the last step's weights
        assert any(not torch.equal(load_file(str(out / "best" / "model.safetensors"))[k], w)
                   for k, w in load_file(str(out / "final" / "model.safetensors")).items())


def test_save_best_rejects_a_metric_the_evaluation_does_not_report(data_root: Path, tmp_path: Path) -> None:
    from fashion_retrieval.training import train

    with pytest.raises(ValueError, match="save_best 'R@7' is not a metric of this evaluation; it reports R@10, R@50"):
        train(tiny_config(data_root, tmp_path / "run", max_steps=4, eval_every=2, save_best="R@7"))
    with pytest.raises(ValueError, match="needs an eval_split"):
        tiny_config(data_root, tmp_path / "run2", eval_split="", save_best="avg")


def test_init_from_a_run_folder_reads_its_best_checkpoint(data_root: Path, tmp_path: Path) -> None:
    """CLIP4Cir's stage 2 starts from stage 1's best CLIP, not its last step."""
    from fashion_retrieval.models import RetrievalModel

    stage1 = tmp_path / "stage1"
    for sub, seed in (("final", 0), ("best", 1)):
        torch.manual_seed(seed)
        RetrievalModel(_model_config()).save_pretrained(stage1 / sub)
    model = RetrievalModel(_model_config())
    model.load_encoders(stage1)
    best = RetrievalModel.from_pretrained(str(stage1 / "best"))
    for k, w in best.image_encoder.state_dict().items():
        torch.testing.assert_close(model.image_encoder.state_dict()[k], w, rtol=0, atol=0)


def _model_config():
    from fashion_retrieval.models import ModelConfig

    return ModelConfig(image_encoder="tiny_cnn", text_encoder="lstm", compositor="concat", embed_dim=16,
                       pretrained=False, vocab=["<pad>", "<unk>", "red"], text_kwargs={"word_dim": 8, "hidden": 8})


def test_evaluation_runs_in_float32_under_mixed_precision_training(data_root: Path, tmp_path: Path, monkeypatch) -> None:
    """The reference evaluates in fp32: bf16 training must not lower the evaluation's precision."""
    from accelerate.state import AcceleratorState, GradientState

    from fashion_retrieval import evaluation
    from fashion_retrieval.models import feature_cache
    from fashion_retrieval.training import train

    seen: list[tuple[str, str]] = []
    real_eval, real_cache = evaluation.evaluate, feature_cache.cached_image_features

    def spy_eval(*args, **kwargs):
        seen.append(("evaluate", kwargs.get("mixed_precision", "no")))
        return real_eval(*args, **kwargs)

    def spy_cache(model, items, *args, **kwargs):
        seen.append((f"features:{len(items)}", kwargs.get("mixed_precision", "no")))
        return real_cache(model, items, *args, **kwargs)

    monkeypatch.setattr(evaluation, "evaluate", spy_eval)
    monkeypatch.setattr(feature_cache, "cached_image_features", spy_cache)
    AcceleratorState._reset_state(reset_partial_state=True)  # its precision is fixed once set
    GradientState._reset_state()
    try:
        train(tiny_config(data_root, tmp_path / "run", max_steps=4, eval_every=2, mixed_precision="bf16",
                          feature_cache_dir=str(tmp_path / "features")))
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
    assert [p for name, p in seen if name == "evaluate"] == ["no", "no"]
    features = [p for name, p in seen if name.startswith("features")]
    assert features == ["bf16", "no"]  # training features at the run's precision, evaluation's in float32
