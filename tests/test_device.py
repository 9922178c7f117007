"""Every heavy loop runs on the device it is given, with the configured workers and precision.

A CPU cannot stand in for a GPU, so the device given here is ``cpu:0``: a real device that
works everywhere, yet a different *argument* from the ``cpu`` that a loop ignoring it would
fall back to (a model's parameters report ``cpu``). The loops run unchanged; only their
boundary is recorded: the destination of every ``Tensor.to`` / ``Module.to``, every
DataLoader built, and the dtype of every convolution and linear layer's output (bfloat16
exactly when the loop runs under bf16 autocast).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw
from torch.utils.data import DataLoader

from fashion_retrieval.devices import autocast, loader_options, resolve_device, to_device

GIVEN = torch.device("cpu:0")
ROOT = Path(__file__).resolve().parents[1]
COLOURS = {"red": (210, 30, 30), "green": (30, 160, 60), "blue": (40, 70, 210)}
SHAPES = ("circle", "square")


@dataclass
class Boundary:
    """What crossed the device boundary: ``.to`` destinations, DataLoaders, layer output dtypes."""

    tensors: list[torch.device] = field(default_factory=list)
    modules: list[torch.device] = field(default_factory=list)
    loaders: list[DataLoader] = field(default_factory=list)
    dtypes: list[torch.dtype] = field(default_factory=list)

    def clear(self) -> None:
        for part in (self.tensors, self.modules, self.loaders, self.dtypes):
            part.clear()

    def loader_settings(self) -> list[tuple[int, bool]]:
        return [(dl.num_workers, dl.pin_memory) for dl in self.loaders]

    def moved_to_given(self) -> int:
        return sum(d == GIVEN for d in self.tensors)


def _destination(args: tuple, kwargs: dict) -> torch.device | None:
    """The device a ``.to(...)`` call names, if it names one."""
    target = kwargs.get("device", args[0] if args else None)
    if isinstance(target, torch.device):
        return target
    if isinstance(target, str):
        try:
            return torch.device(target)
        except RuntimeError:
            return None
    return None


@pytest.fixture()
def boundary(monkeypatch) -> Boundary:
    """Record the device boundary while the real loops run (their results are untouched)."""
    rec = Boundary()
    tensor_to, module_to, loader_init = torch.Tensor.to, torch.nn.Module.to, DataLoader.__init__
    inside_module_to = [0]  # a module's own parameters moving are not inputs moving

    def recording_tensor_to(self, *args, **kwargs):
        dest = _destination(args, kwargs)
        if dest is not None and not inside_module_to[0]:
            rec.tensors.append(dest)
        return tensor_to(self, *args, **kwargs)

    def recording_module_to(self, *args, **kwargs):
        dest = _destination(args, kwargs)
        if dest is not None:
            rec.modules.append(dest)
        inside_module_to[0] += 1
        try:
            return module_to(self, *args, **kwargs)
        finally:
            inside_module_to[0] -= 1

    def recording_loader_init(self, *args, **kwargs):
        loader_init(self, *args, **kwargs)
        rec.loaders.append(self)

    def layer_output(module, inputs, output):
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)) and isinstance(output, torch.Tensor):
            rec.dtypes.append(output.dtype)

    monkeypatch.setattr(torch.Tensor, "to", recording_tensor_to)
    monkeypatch.setattr(torch.nn.Module, "to", recording_module_to)
    monkeypatch.setattr(DataLoader, "__init__", recording_loader_init)
    handle = torch.nn.modules.module.register_module_forward_hook(layer_output)
    yield rec
    handle.remove()


@pytest.fixture()
def fresh_accelerate():
    """Accelerate keeps one global state whose precision cannot change: reset it around a test."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    yield
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


@pytest.fixture(scope="module")
def fiq_root(tmp_path_factory) -> Path:
    """A FashionIQ-layout catalogue: 6 products (val: 5 of them), "make it <colour|shape>" queries."""
    root = tmp_path_factory.mktemp("fiq_device")
    for sub in ("images", "captions", "image_splits"):
        (root / sub).mkdir()
    ids = []
    for c, rgb in COLOURS.items():
        for s in SHAPES:
            img = Image.new("RGB", (40, 36), (245, 245, 245))
            draw = ImageDraw.Draw(img)
            (draw.ellipse if s == "circle" else draw.rectangle)((6, 6, 30, 30), fill=rgb)
            img.save(root / "images" / f"{c}_{s}.png")
            ids.append(f"{c}_{s}")
    for split, gallery in (("train", ids), ("val", ids[1:])):  # two galleries: two cache entries
        triplets = [
            {"candidate": a, "target": b, "captions": [f"make it {b.split('_')[0]}", f"a {b.split('_')[1]}"]}
            for a in gallery for b in gallery if a != b
        ]
        (root / "captions" / f"cap.dress.{split}.json").write_text(json.dumps(triplets))
        (root / "image_splits" / f"split.dress.{split}.json").write_text(json.dumps(gallery))
    return root


def tiny_model():
    from fashion_retrieval.models import ModelConfig, RetrievalModel

    torch.manual_seed(0)
    config = ModelConfig(image_encoder="tiny_cnn", compositor="tirg", embed_dim=16, pretrained=False,
                         text_kwargs={"word_dim": 8, "hidden": 8})
    return RetrievalModel(config, texts=["make it red", "a square"]).eval()


def _paths(root: Path) -> list[str]:
    return sorted(str(p) for p in (root / "images").iterdir())


# --------------------------------------------------------------------------- the helpers


def test_resolve_device_defaults_and_clear_errors():
    assert resolve_device(None) == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("auto") == resolve_device(None)
    assert resolve_device("cpu:0") == GIVEN
    with pytest.raises(ValueError, match="'cuda:99' is not available"):
        resolve_device("cuda:99")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU is visible.*--device cpu"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="not a valid torch device"):
        resolve_device("gpu-please")


def test_loader_options_pin_memory_exactly_on_cuda():
    assert loader_options(torch.device("cuda"), 3) == {"num_workers": 3, "pin_memory": True}
    assert loader_options("cuda:1", 0) == {"num_workers": 0, "pin_memory": True}
    assert loader_options(torch.device("cpu"), 2) == {"num_workers": 2, "pin_memory": False}
    with pytest.raises(ValueError, match="num_workers"):
        loader_options("cpu", -1)


def test_autocast_only_when_asked_and_to_device_moves_dict_batches():
    layer = torch.nn.Linear(4, 3)
    x = torch.randn(2, 4)
    with autocast("cpu", "no"):
        assert layer(x).dtype == torch.float32
    with autocast("cpu", "bf16"):
        assert layer(x).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="fp8"):
        autocast("cpu", "fp8")
    batch = to_device({"x": x, "text": ["a", "b"], "step": 3}, GIVEN)
    assert torch.equal(batch["x"], x) and batch["text"] == ["a", "b"] and batch["step"] == 3


# --------------------------------------------------------------------------- feature caching


def test_feature_caching_runs_on_the_given_device_with_workers_and_precision(boundary, fiq_root, tmp_path):
    from fashion_retrieval.models.feature_cache import cached_image_features

    model, paths = tiny_model(), _paths(fiq_root)
    fp32 = cached_image_features(model, paths, tmp_path, batch_size=4, num_workers=1, device=GIVEN)
    assert boundary.moved_to_given() >= 2  # both batches (4 + 2 images) went to the device
    assert GIVEN in boundary.modules and set(boundary.modules) == {GIVEN}
    assert boundary.loader_settings() == [(1, False)]
    assert boundary.dtypes and set(boundary.dtypes) == {torch.float32}

    boundary.clear()
    bf16 = cached_image_features(model, paths, tmp_path, batch_size=4, num_workers=0, device=GIVEN,
                                 mixed_precision="bf16")
    assert boundary.moved_to_given() >= 2 and boundary.loader_settings() == [(0, False)]
    assert boundary.dtypes and set(boundary.dtypes) == {torch.bfloat16}  # a new cache entry, under autocast
    assert bf16.dtype == fp32.dtype == torch.float32 and bf16.device.type == "cpu"
    assert torch.allclose(bf16, fp32, rtol=0.05, atol=0.05) and not torch.equal(bf16, fp32)
    assert len(list(tmp_path.glob("*.safetensors"))) == 2


# --------------------------------------------------------------------------- training


def _train_config(root: Path, out: Path, **changes):
    from fashion_retrieval.training.config import TrainConfig, merge

    base = dict(
        dataset="fashioniq", data_root=str(root), batch_size=4, max_steps=2, save_every=100,
        eval_every=100, log_every=1, eval_batch_size=4, num_workers=1, mixed_precision="bf16",
        output_dir=str(out), feature_cache_dir=str(out.parent / "features"), model={"image_encoder":
        "tiny_cnn", "text_encoder": "lstm", "compositor": "tirg", "embed_dim": 16, "text_kwargs":
        {"word_dim": 8, "hidden": 8}, "pretrained": False},
    )
    return TrainConfig.from_dict(merge(base, changes))


def _setup(config, monkeypatch):
    """A run on an accelerator whose device is ``cpu:0`` (Accelerate picks it; here it is given)."""
    from accelerate import Accelerator

    from fashion_retrieval.training.state import MetricsLog
    from fashion_retrieval.training.trainer import make_accelerator, setup_run

    Path(config.output_dir).mkdir(parents=True)
    monkeypatch.setattr(Accelerator, "device", property(lambda self: GIVEN))
    accelerator = make_accelerator(config)
    run = setup_run(config, accelerator)
    run.metrics = MetricsLog(accelerator, Path(config.output_dir))
    return run


def test_cached_training_caches_trains_and_evaluates_on_the_accelerators_device(
    boundary, fresh_accelerate, fiq_root, tmp_path, monkeypatch
):
    from fashion_retrieval.training.trainer import run_eval, train_loop

    run = _setup(_train_config(fiq_root, tmp_path / "run", cache_features=True), monkeypatch)
    # Caching: train and eval galleries (6 and 5 images, batch 4: 2 batches each) through the
    # backbone there, and both feature tables kept there.
    assert boundary.moved_to_given() >= 2 + 2 + 2 and GIVEN in boundary.modules
    assert boundary.loader_settings() == [(1, False), (1, False)]
    # The training gallery at the run's precision, the evaluation gallery in float32 (as the reference evaluates).
    assert boundary.dtypes[0] == torch.bfloat16 and boundary.dtypes[-1] == torch.float32
    assert set(boundary.dtypes) == {torch.bfloat16, torch.float32}

    boundary.clear()
    assert train_loop(run, 0) == 2
    assert boundary.moved_to_given() >= 2 * 3  # each step's label, source and target features
    assert boundary.dtypes and set(boundary.dtypes) == {torch.bfloat16}  # Accelerate's autocast

    boundary.clear()
    result = run_eval(run, 2)
    assert "R@10" in result["recall"]
    # The cached features of 5 gallery items (2 batches) and of 20 query sources (5 batches).
    assert boundary.moved_to_given() >= 2 + 5 and set(boundary.dtypes) == {torch.float32}  # evaluation: float32


def test_end_to_end_training_decodes_in_workers_and_evaluates_on_the_device(
    boundary, fresh_accelerate, fiq_root, tmp_path, monkeypatch
):
    from fashion_retrieval.training.trainer import run_eval, train_loop

    config = _train_config(
        fiq_root, tmp_path / "run", cache_features=False, mixed_precision="no", num_workers=2,
        model={"freeze_image_encoder": False},
    )
    run = _setup(config, monkeypatch)
    boundary.clear()
    train_loop(run, 0)
    assert boundary.loader_settings() == [(2, False)]  # the training batches
    assert boundary.moved_to_given() >= 2 * 3 and set(boundary.dtypes) == {torch.float32}  # label, pixels x 2

    boundary.clear()
    run_eval(run, 2)
    assert boundary.loader_settings() == [(2, False)]  # the gallery, decoded in workers
    assert boundary.moved_to_given() >= 2 + 2 + 5  # pixels, then gallery and query features


# --------------------------------------------------------------------------- evaluate.py


def test_evaluate_cli_runs_on_the_named_device(boundary, fiq_root, tmp_path, capsys):
    from fashion_retrieval.checkpoints import save_checkpoint
    from fashion_retrieval.training.cli import evaluate_main

    save_checkpoint(tiny_model(), tmp_path / "ckpt")
    out = tmp_path / "eval.json"
    common = ["--checkpoint", str(tmp_path / "ckpt"), "--json", str(out), "--dataset", "fashioniq",
              "--data-root", str(fiq_root), "--split", "val"]
    boundary.clear()
    assert evaluate_main([*common, "--device", "cpu:0", "--num-workers", "1", "--mixed-precision", "bf16"]) == 0
    assert "R@10" in json.loads(out.read_text())["recall"]
    assert GIVEN in boundary.modules and boundary.moved_to_given() >= 3  # pixels, gallery, queries
    assert boundary.loader_settings() == [(1, False)]
    assert boundary.dtypes and set(boundary.dtypes) == {torch.bfloat16}

    assert evaluate_main([*common, "--device", "cuda:99"]) == 2
    assert "'cuda:99' is not available" in capsys.readouterr().err


# --------------------------------------------------------------------------- Retriever and demo


def test_retriever_embeds_the_gallery_and_encodes_queries_on_its_device(boundary, fiq_root):
    from fashion_retrieval.data import load_retrieval_dataset
    from fashion_retrieval.search.retriever import Retriever

    items = load_retrieval_dataset("fashioniq", str(fiq_root), "val").items
    retriever = Retriever(tiny_model(), items, device="cpu:0", num_workers=1, batch_size=4,
                          mixed_precision="bf16")
    assert retriever.device == GIVEN and GIVEN in boundary.modules
    assert boundary.loader_settings() == [(1, False)] and boundary.moved_to_given() >= 2 + 2
    assert set(boundary.dtypes) == {torch.bfloat16}

    boundary.clear()
    hits = retriever.search(image=items[0].path, text="make it blue", k=3)
    assert len(hits) == 3
    assert boundary.moved_to_given() >= 1 and boundary.dtypes and set(boundary.dtypes) == {torch.bfloat16}
    with pytest.raises(ValueError, match="not available"):
        Retriever(tiny_model(), items, device="cuda:99")


def test_demo_models_load_onto_the_device(boundary, fiq_root, tmp_path):
    from fashion_retrieval.checkpoints import save_checkpoint
    from fashion_retrieval.demo.cli import parse_args
    from fashion_retrieval.serving.service import open_service

    assert parse_args([], env={}).device == str(resolve_device(None))
    assert parse_args([], env={"FASHION_RETRIEVAL_DEVICE": "cpu:0"}).device == "cpu:0"
    with pytest.raises(SystemExit):
        parse_args(["--device", "cuda:99"], env={})

    save_checkpoint(tiny_model(), tmp_path / "ckpt")
    boundary.clear()
    bundle = open_service([str(tmp_path / "ckpt")], gallery=str(fiq_root), home=tmp_path / "home",
                          device="cpu:0", log=lambda _: None)
    (retriever,) = bundle.models.values()
    assert retriever.device == GIVEN and GIVEN in boundary.modules and boundary.moved_to_given() >= 2
    boundary.clear()
    assert len(retriever.search(image=bundle.dataset.items[0].path, text="make it red", k=2)) == 2
    assert boundary.moved_to_given() >= 1  # the query's pixels


# --------------------------------------------------------------------------- GPU benchmark


def test_gpu_benchmark_says_no_gpu_and_exits_0(tmp_path):
    import subprocess

    out = tmp_path / "gpu.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--gpu", "--json", str(out)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""},  # no GPU, even on a GPU machine
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "no GPU" in proc.stdout
    result = json.loads(out.read_text())
    assert result["gpu"]["available"] is False and "no GPU" in result["gpu"]["reason"]
    assert set(result["steps"]) == {"gpu_features", "gpu_training", "gpu_evaluation"}
    assert all(s["status"] == "skipped" and "no GPU" in s["reason"] for s in result["steps"].values())


def test_gpu_steps_dry_run_on_the_cpu_at_toy_sizes(tmp_path):
    """The GPU steps' code, run on the CPU (``gpu_device``) with a tiny backbone: rows come back."""
    from benchmarks.bench_gpu import bench_gpu_evaluation, bench_gpu_features, fashioniq_sizes
    from benchmarks.common import StepContext

    options = {"gpu_device": "cpu", "gpu_backbone": "tiny_cnn", "gpu_workers": 0}
    ctx = StepContext(quick=True, workdir=tmp_path, options=options, tiny=True)
    features = bench_gpu_features(ctx)
    assert [r.unit for r in features] == ["img/s"] * 3 and all(r.value > 0 for r in features)
    evaluation = bench_gpu_evaluation(ctx)
    assert [r.unit for r in evaluation] == ["s", "s"]
    assert evaluation[0].extra["sizes"] == {"dress": (38, 20), "shirt": (63, 20), "toptee": (53, 19)}
    assert all(r.extra["backbone_s"] > 0 and r.extra["heads_and_ranking_s"] > 0 for r in evaluation)

    (tmp_path / "fiq" / "image_splits").mkdir(parents=True)
    (tmp_path / "fiq" / "captions").mkdir()
    (tmp_path / "fiq" / "image_splits" / "split.dress.val.json").write_text(json.dumps(["a", "b", "c"]))
    (tmp_path / "fiq" / "captions" / "cap.dress.val.json").write_text(json.dumps([{}, {}]))
    assert fashioniq_sizes(str(tmp_path / "fiq")) == {"dress": (3, 2)}
    assert sum(g for g, _ in fashioniq_sizes().values()) == 15536
    assert sum(q for _, q in fashioniq_sizes().values()) == 6016
