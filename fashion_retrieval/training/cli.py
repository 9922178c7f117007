"""Command-line front ends of training and evaluation (``training/train.py``, ``training/evaluate.py``)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

from fashion_retrieval.data import DATASETS, default_split
from fashion_retrieval.models.config import ModelConfig
from fashion_retrieval.training.config import CHOICES, TrainConfig, dataset_loader_options

TRAIN_USAGE = (
    "accelerate launch training/train.py --config training/configs/NAME.yaml [--key value ...]\n"
    "Any TrainConfig key can be overridden as --key value or --key-with-dashes value; a model key as\n"
    "--model.compositor concat."
)


def config_from_argv(argv: list[str]) -> TrainConfig:
    """``--config FILE`` (optional) plus ``--key value`` overrides -> a new TrainConfig."""
    parser = argparse.ArgumentParser(prog="train.py", usage=TRAIN_USAGE, add_help=False)
    parser.add_argument("--config", default=None)
    parser.add_argument("-h", "--help", action="store_true")
    known, rest = parser.parse_known_args(argv)
    if known.help:
        names = [f.name for f in dataclasses.fields(TrainConfig) if f.name != "model"]
        names += [f"model.{f.name}" for f in dataclasses.fields(ModelConfig)]
        keys = "\n".join(f"  --{n.replace('_', '-')}" + (f" {{{','.join(CHOICES[n])}}}" if n in CHOICES else "")
                         for n in names)
        print(f"usage: {TRAIN_USAGE}\n\nkeys:\n{keys}")
        raise SystemExit(0)
    return TrainConfig.load(known.config, rest)


def train_main(argv: list[str] | None = None) -> int:
    """Entry point of ``training/train.py``: prints the final checkpoint folder."""
    try:
        config = config_from_argv(sys.argv[1:] if argv is None else argv)
        from fashion_retrieval.training.trainer import check_run, train

        checked = check_run(config)  # before any data or model is loaded
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    final = train(config, checked)
    if os.environ.get("RANK", "0") == "0":  # one line, from the main process of a launch
        print(final)
    return 0


def _eval_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="evaluate.py", description="Recall of a checkpoint under a data set's standard protocol."
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint folder or Hugging Face Hub repo id")
    p.add_argument("--json", required=True, help="where to write the results JSON")
    p.add_argument("--dataset", default=None, choices=DATASETS.names(),
                   help="default: the dataset of the checkpoint's training config")
    p.add_argument("--data-root", default=None,
                   help="the data set's folder; for --dataset published a `publish --out` folder or Hub dataset repo id")
    p.add_argument("--split", default=None,
                   help="default: the training config's eval_split on its own data set, else the data set's "
                        "evaluation split (test for Fashion200k, val for FashionIQ and synthetic, the card's for published)")
    p.add_argument("--protocol", default=None, help="default: the data set's own protocol")
    p.add_argument("--categories", default=None, help="comma-separated, e.g. dress,shirt,toptee")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default=None,
                   help="where to run: cpu, cuda, cuda:1, ... (default: cuda when available, else cpu)")
    p.add_argument("--num-workers", type=int, default=None,
                   help="DataLoader workers decoding the gallery (default: the training config's num_workers)")
    p.add_argument("--mixed-precision", default="no", choices=CHOICES["mixed_precision"],
                   help="autocast precision of the forward passes (default: no, float32)")
    return p


def _train_config_of(checkpoint: str) -> dict[str, Any]:
    """The training config saved with a checkpoint folder, in today's layout ({} when there is none)."""
    from fashion_retrieval.training.config import migrate_saved

    path = Path(checkpoint) / "train_config.json"
    if path.is_file():
        try:
            return migrate_saved(json.loads(path.read_text(encoding="utf-8")))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{err.lineno}: invalid JSON: {err.msg}") from None
    return {}


def _check_writable(path: Path) -> None:
    """ValueError naming ``path`` when its folder cannot be created or written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = path.parent / f".write_probe_{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"--json {path}: cannot write there ({err.strerror or err}); choose a writable path") from None


def evaluate_main(argv: list[str] | None = None) -> int:
    """Entry point of ``training/evaluate.py``: writes the evaluation JSON atomically.

    The JSON is :func:`fashion_retrieval.evaluation.base.evaluate_embeddings`'s object.
    """
    args = _eval_parser().parse_args(argv)
    try:
        _check_writable(Path(args.json))  # before the model and data are loaded
        saved = _train_config_of(args.checkpoint)
        dataset = args.dataset or saved.get("dataset")
        if dataset is None:
            raise ValueError(f"{args.checkpoint} has no saved training config: pass --dataset")
        own = dataset == saved.get("dataset")  # evaluated on the data set it was trained on
        split = args.split or (saved.get("eval_split") if own else None) or default_split(dataset)
        root = args.data_root if args.data_root is not None else saved.get("data_root")
        # The loader settings the model was trained with (e.g. Fashion200k's caption clean-up,
        # the synthetic catalogue's preset, size and seed)
        options: dict[str, Any] = dataset_loader_options(saved) if own else {}
        categories = args.categories.split(",") if args.categories else saved.get("categories")
        if categories:
            options["categories"] = categories
        from fashion_retrieval.checkpoints import load_model
        from fashion_retrieval.data import load_retrieval_dataset
        from fashion_retrieval.devices import resolve_device
        from fashion_retrieval.evaluation import evaluate
        from fashion_retrieval.io_utils import atomic_write_json

        device = resolve_device(args.device)  # an unavailable --device fails before loading
        workers = args.num_workers if args.num_workers is not None else int(saved.get("num_workers") or 0)
        model = load_model(args.checkpoint)
        data = load_retrieval_dataset(dataset, root, split, **options)
        result = evaluate(model, data, protocol=args.protocol, batch_size=args.batch_size,
                          num_workers=workers, device=device, mixed_precision=args.mixed_precision)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    atomic_write_json(args.json, result)
    print(json.dumps(result.get("recall", {})))
    return 0
