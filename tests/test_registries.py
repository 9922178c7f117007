"""Registries are the one source of names and per-kind facts: config choices, CLI choices,
tasks, losses and data sets are read from them, never copied."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest
import torch
from torch import nn

from fashion_retrieval.data import (
    DATASETS,
    DatasetEntry,
    Item,
    RetrievalDataset,
    Triplet,
    default_split,
)
from fashion_retrieval.evaluation import EVAL_PROTOCOLS
from fashion_retrieval.losses import LOSSES
from fashion_retrieval.registry import Registry
from fashion_retrieval.training.cli import _eval_parser
from fashion_retrieval.training.config import (
    CHOICES,
    Choices,
    TrainConfig,
    dataset_loader_options,
)
from fashion_retrieval.training.tasks import TASKS, TaskModule, build_examples

PACKAGE = Path(__file__).resolve().parents[1] / "fashion_retrieval"

TEST_KINDS: Registry[str] = Registry("test kind")
TEST_KINDS.add("first", "a")


# ----------------------------------------------------------------- choices
def test_choices_are_the_registries_names() -> None:
    assert CHOICES["dataset"] == tuple(DATASETS.names())
    assert CHOICES["task"] == tuple(TASKS.names())
    assert CHOICES["loss"] == tuple(LOSSES.names())
    for key, (module, attr) in CHOICES.sources.items():
        source = getattr(importlib.import_module(module), attr)
        expected = source.names() if isinstance(source, Registry) else list(source)
        assert list(CHOICES[key]) == expected, key
        assert hasattr(TrainConfig, key), f"choice key {key!r} is not a TrainConfig field"


def test_a_name_registered_at_run_time_is_a_choice_at_once() -> None:
    choices = Choices({"kind": (__name__, "TEST_KINDS")})
    assert choices["kind"] == ("first",)
    TEST_KINDS.add("second", "b")
    assert choices["kind"] == ("first", "second")


def test_cli_choices_come_from_the_registries(capsys: pytest.CaptureFixture[str]) -> None:
    actions = {a.dest: a for a in _eval_parser()._actions}
    assert list(actions["dataset"].choices) == DATASETS.names()
    assert list(actions["mixed_precision"].choices) == list(CHOICES["mixed_precision"])
    from fashion_retrieval.demo.cli import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--dataset", "nope"], env={})
    assert ", ".join(repr(n) for n in DATASETS.names()) in capsys.readouterr().err


def test_train_help_lists_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    from fashion_retrieval.training.cli import config_from_argv

    with pytest.raises(SystemExit):
        config_from_argv(["--help"])
    out = capsys.readouterr().out
    assert f"--loss {{{','.join(LOSSES.names())}}}" in out
    assert f"--task {{{','.join(TASKS.names())}}}" in out


# ----------------------------------------------------------------- tasks
def _toy() -> RetrievalDataset:
    """Two products in two views each, captioned, and two composed triplets."""
    items = [
        Item(f"p{p}_{v}", f"/nowhere/p{p}_{v}.jpg", f"product {p}", "dress") for p in range(2) for v in range(2)
    ]
    triplets = [Triplet("p0_0", "p1_0", "is the other one", "dress"), Triplet("p1_1", "p0_1", "is the first", "dress")]
    return RetrievalDataset("toy", "train", "/nowhere", items, triplets, protocol="fashioniq")


def test_every_task_is_one_complete_entry() -> None:
    assert TASKS.names() == ["composed", "crossmodal", "image_to_image"]
    toy = _toy()
    for name in TASKS.names():
        task = TASKS.get(name)
        assert task.name == name
        assert callable(task.build_examples) and callable(task.objective)
        assert task.protocol is None or task.protocol in EVAL_PROTOCOLS, name
        assert build_examples(toy, name), name
        assert TrainConfig(task=name, loss="cmpm").task == name
    assert TASKS.get("composed").protocol is None  # the data set's own protocol
    assert [e.target for e in build_examples(toy, "composed")] == ["p1_0", "p0_1"]
    assert [e.text for e in build_examples(toy, "crossmodal")] == ["product 0", "product 0", "product 1", "product 1"]


def test_config_accepts_exactly_the_registered_tasks() -> None:
    with pytest.raises(ValueError) as err:
        TrainConfig(task="retrieval")
    for name in TASKS.names():
        assert name in str(err.value)


def test_training_module_runs_the_tasks_objective_with_the_registered_loss() -> None:
    class Stub(nn.Module):
        """Embeds features by identity: enough for the objectives of the pair losses."""

        scale = logit_scale = torch.tensor(10.0)

        def encode_query(self, images=None, texts=None, image_features=None):
            return image_features if image_features is not None else torch.eye(3)[: len(texts)]

        def encode_target(self, images=None, image_features=None):
            return image_features

    module = TaskModule(Stub(), "composed", "batch_classification")
    assert module.task is TASKS.get("composed") and module.loss is LOSSES.get("batch_classification")
    feats = torch.eye(3)
    batch = {"source_features": feats, "target_features": feats, "text": ["a", "b", "c"], "label": torch.arange(3)}
    expected = LOSSES.get("batch_classification").pair(feats, feats, torch.arange(3), Stub.scale)
    assert torch.allclose(module(batch), expected)


# ----------------------------------------------------------------- losses
def test_one_loss_registry() -> None:
    registries = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Registry" and node.args
                    and isinstance(node.args[0], ast.Constant) and node.args[0].value in ("loss", "task", "dataset")):
                registries.append((node.args[0].value, path.relative_to(PACKAGE).as_posix()))
    assert sorted(registries) == [("dataset", "data/__init__.py"), ("loss", "losses.py"), ("task", "training/tasks.py")]
    assert "correlational" in LOSSES and "correlation" not in LOSSES


def test_the_old_loss_name_is_an_error_naming_the_valid_ones() -> None:
    with pytest.raises(ValueError) as err:
        TrainConfig.from_dict({"task": "crossmodal", "loss": "correlation"})
    msg = str(err.value)
    assert "'correlation'" in msg and "did you mean 'correlational'" in msg
    assert all(name in msg for name in LOSSES.names())
    with pytest.raises(ValueError, match="did you mean 'correlational'"):
        LOSSES.get("correlation")


def test_a_loss_for_another_task_is_a_config_error() -> None:
    assert TrainConfig(task="crossmodal", loss="correlational").loss == "correlational"
    with pytest.raises(ValueError, match="'correlational' is for task 'crossmodal', not 'composed'"):
        TrainConfig(task="composed", loss="correlational")


# ----------------------------------------------------------------- data sets
def test_dataset_entries_carry_their_default_splits() -> None:
    assert {n: default_split(n) for n in DATASETS.names()} == {
        "fashion200k": "test", "fashioniq": "val", "published": None, "synthetic": "val",
    }
    for name in DATASETS.names():
        entry = DATASETS.get(name)
        assert isinstance(entry, DatasetEntry) and entry.name == name
        assert entry.protocol is None or entry.protocol in EVAL_PROTOCOLS
    with pytest.raises(ValueError, match="fashion200k"):
        default_split("fashion200")


def test_dataset_options_are_the_loaders_keyword_parameters() -> None:
    from fashion_retrieval.data.fashion200k import load_fashion200k
    from fashion_retrieval.data.fashioniq import load_fashioniq
    from fashion_retrieval.data.published import load_published
    from fashion_retrieval.data.synthetic import load_synthetic

    def keywords(fn) -> set[str]:
        params = inspect.signature(fn).parameters.values()
        return {p.name for p in params if p.kind != p.VAR_KEYWORD} - {"root", "source", "split"}

    fiq = keywords(load_fashioniq)
    loaders = {"fashion200k": keywords(load_fashion200k), "fashioniq": fiq, "published": keywords(load_published),
               "synthetic": keywords(load_synthetic) | (fiq - {"categories"})}  # synthetic reads with load_fashioniq
    assert {n: set(DATASETS.get(n).options) for n in DATASETS.names()} == loaders
    for name in DATASETS.names():
        entry = DATASETS.get(name)
        assert set(entry.settings) <= set(entry.options)


def test_a_loader_option_the_data_set_does_not_take_is_a_config_error() -> None:
    assert TrainConfig(dataset="fashion200k", dataset_options={"caption_cleanup": "normalize"})
    with pytest.raises(ValueError, match="'fashion200k' takes no option 'caption_mode'.*caption_cleanup"):
        TrainConfig(dataset="fashion200k", dataset_options={"caption_mode": "join"})


def test_loader_options_come_from_the_entry_settings() -> None:
    synthetic = TrainConfig(
        dataset="synthetic", seed=3, categories=["dress"], dataset_options={"preset": "hard",
        "products": 40},
    ).to_dict()
    assert dataset_loader_options(synthetic) == {"preset": "hard", "products": 40, "seed": 3, "categories": ["dress"]}
    named = {**synthetic, "dataset_options": {"preset": "hard", "seed": 9}}
    assert dataset_loader_options(named)["seed"] == 9  # the data set's own option wins over the run's seed
    f200k = TrainConfig(dataset="fashion200k", seed=3, dataset_options={"caption_cleanup": "normalize"}).to_dict()
    assert dataset_loader_options(f200k) == {"caption_cleanup": "normalize"}  # no catalogue settings


def _dataset_name_comparisons(path: Path, names: set[str]) -> list[str]:
    """``lineno: source`` of each comparison in ``path`` with a data set name as a string constant."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Compare):
            continue
        sides = [node.left, *node.comparators]
        consts = [s for s in sides if isinstance(s, ast.Constant)]
        consts += [e for s in sides if isinstance(s, (ast.Tuple, ast.List, ast.Set)) for e in s.elts]
        if any(isinstance(c, ast.Constant) and c.value in names for c in consts):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def test_the_check_finds_a_dataset_name_comparison(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text('if cfg.dataset == "synthetic" or name in ("fashioniq", "x"):\n    pass\nok = "a" == "b"\n')
    assert len(_dataset_name_comparisons(probe, set(DATASETS.names()))) == 2


def test_no_module_outside_data_compares_a_dataset_name() -> None:
    names = set(DATASETS.names())
    offenders = {
        path.relative_to(PACKAGE).as_posix(): hits
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.relative_to(PACKAGE).parts[0] != "data" and (hits := _dataset_name_comparisons(path, names))
    }
    assert offenders == {}, f"ask the data set's DatasetEntry instead: {offenders}"


@pytest.mark.parametrize("dataset", ["fashioniq", "fashion200k"])
@pytest.mark.parametrize("option", ["generated_pairs", "generated_descriptions"])
def test_generated_examples_on_data_without_attributes_are_an_error(dataset: str, option: str) -> None:
    """Asking for what the data cannot supply names the option and the data set (never a silent no-op)."""
    changes = {option: 10, "task": "crossmodal" if option == "generated_descriptions" else "composed"}
    with pytest.raises(ValueError, match=f"{option} needs items that carry attributes; data set '{dataset}'"):
        TrainConfig(dataset=dataset, **changes)
    assert TrainConfig(dataset="synthetic", **changes)


def test_what_an_entry_carries_decides_what_training_may_ask() -> None:
    from fashion_retrieval.data import DatasetEntry

    bare = DatasetEntry("bare", lambda root, split: None, eval_split="val", train_split="train", options=())
    for option, needs in (("shared_value_batches", ("attributes", "categories")), ("relevance_weight", ("categories",))):
        with pytest.raises(ValueError, match=f"{option} needs items that carry {' or '.join(needs)}; data set 'bare'"):
            bare.require(option, *needs)
    unknown = DatasetEntry("later", lambda root, split: None, eval_split="val", train_split="train", options=(),
                           carries=None)
    unknown.require("shared_value_batches", "attributes")  # known once loaded: the loaded data decides
    with pytest.raises(ValueError, match="generated_pairs needs a data set that generates examples; 'later'"):
        unknown.require("generated_pairs", "attributes")
    assert TrainConfig(dataset="fashioniq", shared_value_batches=0.5, relevance_weight=1.0)  # categories suffice
