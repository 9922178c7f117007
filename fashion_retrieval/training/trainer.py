"""``train(config) -> Path``: one training run on Accelerate, CPU or GPUs, one or many processes.

Two input paths: with a frozen image backbone and ``cache_features`` the backbone features
of every image are computed once (and cached on disk) and only the heads train on them;
otherwise images are decoded and augmented in a DataLoader, end to end.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fashion_retrieval.data import dataset_entry
from fashion_retrieval.data.records import RetrievalDataset
from fashion_retrieval.devices import image_batch_bytes, image_loader_options, to_device
from fashion_retrieval.training.config import TrainConfig, dataset_loader_options
from fashion_retrieval.training.data import (
    Example,
    FeatureBatches,
    ImageBatches,
    SharedValueBatches,
    StepBatchSampler,
    build_sample_draw,
    target_values,
)
from fashion_retrieval.training.optim import build_optimizer
from fashion_retrieval.training.state import (
    MetricsLog,
    check_output_dir,
    keep_best,
    read_best,
    read_trainer_state,
    resolve_resume,
    save_state,
)
from fashion_retrieval.training.tasks import (
    TASKS,
    TaskModule,
    build_examples,
    generated_examples,
)

logger = logging.getLogger(__name__)


@dataclass
class Run:
    """Everything one run holds while it trains."""

    config: TrainConfig
    accelerator: Any
    model: Any  # the unwrapped RetrievalModel
    module: Any  # the prepared TaskModule (DDP-wrapped on several processes)
    optimizer: Any
    scheduler: Any
    examples: list[Example]
    train_set: RetrievalDataset
    eval_set: RetrievalDataset | None
    train_features: torch.Tensor | None = None  # (N_train_items, Dimg) when cached
    eval_features: torch.Tensor | None = None  # (N_eval_items, Dimg) when cached
    metrics: MetricsLog | None = None
    draw: Any = None  # a SampleDraw: examples redrawn per sample (Fashion200k siblings, random captions)
    last_eval: dict[str, Any] = field(default_factory=dict)
    best: dict[str, Any] | None = None  # {"metric", "value", "step"} of <output_dir>/best (save_best)


def tracker_name() -> str | None:
    """"tensorboard" when it is installed, else None (metrics.jsonl is always written)."""
    import importlib.util

    return "tensorboard" if importlib.util.find_spec("tensorboard") is not None else None


def make_accelerator(config: TrainConfig) -> Any:
    """An ``Accelerator`` for the config: precision, accumulation, tracker if installed."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration

    return Accelerator(
        mixed_precision=config.mixed_precision,
        gradient_accumulation_steps=config.grad_accum_steps,
        log_with=tracker_name(),
        project_config=ProjectConfiguration(project_dir=config.output_dir, logging_dir=str(Path(config.output_dir) / "logs")),
        # Unused heads (a null embedding, an ignored modality) must not stall DDP.
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )


def load_split(config: TrainConfig, split: str) -> RetrievalDataset:
    """Split ``split`` of the configured data set."""
    from fashion_retrieval.data import load_retrieval_dataset

    options = dataset_loader_options(config.to_dict())
    if config.streaming and split == config.train_split and "images" in dataset_entry(config.dataset).options:
        options.setdefault("images", False)  # training streams the images from the parquet shards
    return load_retrieval_dataset(config.dataset, config.data_root, split, **options)


def build_model(config: TrainConfig, texts: list[str]) -> Any:
    """A fresh ``RetrievalModel`` of ``config.model`` (LSTM vocabulary from ``texts``; the logit scale
    from ``temperature``; encoders that ``init_from`` replaces are not downloaded first)."""
    import copy

    from fashion_retrieval.models import RetrievalModel

    model_config = copy.deepcopy(config.model)  # checked with the TrainConfig: not rebuilt
    model_config.normalize_scale = (1.0 / config.temperature) ** (0.5 if model_config.scale_both_sides else 1.0)
    model_config.pretrained = config.model.pretrained and not config.init_from
    model = RetrievalModel(model_config, texts=texts)
    if config.init_from:  # e.g. CLIP4Cir stage 2 on the CLIP fine-tuned in stage 1
        model.load_encoders(config.init_from)
        model.config.pretrained = config.model.pretrained
    return model


def frozen_text_inputs(examples: list[Example], eval_set: RetrievalDataset | None, config: TrainConfig) -> list[str]:
    """Every text a frozen text encoder will see, to encode once into the on-disk cache: the
    examples' texts, each of the four forms ``train_caption_mode: random`` draws from an
    example's captions (CLIP4Cir stage 2), and the eval split's query texts."""
    from fashion_retrieval.training.data import random_caption_forms

    texts = {e.text for e in examples if e.text}
    if config.train_caption_mode == "random":
        texts.update(form for e in examples if e.captions for form in random_caption_forms(e.captions))
    if eval_set is not None:
        texts.update(t.text for t in eval_set.triplets if t.text)
    return sorted(texts)


def uses_cached_features(config: TrainConfig) -> bool:
    """Whether the run trains the heads on cached backbone features."""
    return config.model.freeze_image_encoder and config.cache_features and not config.streaming


def split_features(
    model: Any, dataset: RetrievalDataset, config: TrainConfig, device: torch.device | None = None,
    mixed_precision: str | None = None,
) -> torch.Tensor:
    """(N, Dimg) backbone features of the data set's items, from the on-disk cache (a miss runs
    the backbone on ``device`` under ``mixed_precision``, default the config's; ``num_workers``
    decoding)."""
    from fashion_retrieval.models.feature_cache import cached_image_features

    precision = config.mixed_precision if mixed_precision is None else mixed_precision
    return cached_image_features(
        model, dataset.items, feature_dir(config), batch_size=config.eval_batch_size,
        num_workers=config.num_workers, device=device, mixed_precision=precision,
    ).float()


def feature_dir(config: TrainConfig) -> str:
    """Where the run's feature caches live: ``feature_cache_dir``, else ``<output_dir>/features``."""
    return config.feature_cache_dir or str(Path(config.output_dir) / "features")


def setup_run(config: TrainConfig, accelerator: Any) -> Run:
    """Load the data, build the model, optimiser and schedule, and prepare them."""
    from accelerate.utils import set_seed

    from fashion_retrieval.models.feature_cache import cached_text_features

    set_seed(config.seed)
    with accelerator.main_process_first():  # the synthetic catalogue renders once
        train_set = load_split(config, config.train_split)
        eval_set = load_split(config, config.eval_split) if config.eval_split else None
    examples = build_examples(train_set, config.task)
    extra = generated_examples(train_set, config)
    examples += extra
    model = build_model(config, train_set.texts() + [e.text for e in extra if e.text])
    module = TaskModule(model, config.task, config.loss, config.relevance_weight)
    backbone = None if config.model.freeze_image_encoder else model.image_encoder
    optimizer, scheduler = build_optimizer(module, backbone, config)
    run = Run(config, accelerator, model, module, optimizer, scheduler, examples, train_set, eval_set)
    run.draw = build_sample_draw(train_set, config)
    if uses_cached_features(config):
        device = accelerator.device  # the backbone runs there, not on the CPU before prepare
        model.to(device)
        with accelerator.main_process_first():  # the main process fills the cache, the others read it
            # Evaluation sees float32 features, as the reference code evaluates; the frozen text
            # features serve training and evaluation both, so they are float32 too.
            if config.model.freeze_text_encoder:
                texts = frozen_text_inputs(examples, eval_set, config)
                model.remember_text_features(texts, cached_text_features(
                    model, texts, feature_dir(config), device=device, mixed_precision="no"))
            run.train_features = split_features(model, train_set, config, device).to(device)
            if eval_set is not None and accelerator.is_main_process:
                run.eval_features = split_features(model, eval_set, config, device, mixed_precision="no").to(device)
        if config.relevance_weight > 0:
            from fashion_retrieval.training.relevance import Relevance, RelevanceBank

            module.relevance = RelevanceBank(Relevance(train_set.items), run.train_features, config.relevance_refresh,
                                             config.relevance_candidates, config.seed)
    # The scheduler is not prepared: Accelerate would step it once per process, and here
    # a step is an optimiser step whatever the number of processes.
    run.module, run.optimizer = accelerator.prepare(module, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    if module.relevance is not None:
        accelerator.register_for_checkpointing(module.relevance)
    # Building the feature cache draws from the global RNG (DataLoader seeds) only when the
    # cache misses: re-seed so that training is the same whether or not it hit.
    set_seed(config.seed + 1)
    return run


def prepare_features(config: TrainConfig, device: torch.device | str | None = None) -> None:
    """Fill the on-disk caches a run of ``config`` reads before its first step (the frozen text
    encoder's features of every text it will see, the backbone features of its train and
    eval splits) without training, on ``device``: several runs started after it (the embedded
    default's models, trained side by side) read them instead of each computing its own."""
    from accelerate.utils import set_seed

    from fashion_retrieval.models.feature_cache import cached_text_features

    if not uses_cached_features(config):
        return
    set_seed(config.seed)  # the examples setup_run makes, so the same texts
    train_set = load_split(config, config.train_split)
    eval_set = load_split(config, config.eval_split) if config.eval_split else None
    examples = build_examples(train_set, config.task)
    extra = generated_examples(train_set, config)
    model = build_model(config, train_set.texts() + [e.text for e in extra if e.text]).eval()
    if config.model.freeze_text_encoder:
        cached_text_features(model, frozen_text_inputs(examples + extra, eval_set, config), feature_dir(config),
                             device=device, mixed_precision="no")
    for split in (train_set, eval_set) if eval_set is not None else (train_set,):
        split_features(model, split, config, device, mixed_precision="no" if split is eval_set else None)


def batches(run: Run, start_micro_step: int) -> Iterator[dict[str, Any]]:
    """This process's batches from ``start_micro_step`` on (disjoint across processes)."""
    acc, cfg = run.accelerator, run.config
    if cfg.shared_value_batches > 0:
        values = target_values(run.examples, {it.id: it for it in run.train_set.items})
        sampler = SharedValueBatches(values, cfg.batch_size, cfg.seed, cfg.shared_value_batches,
                                     acc.process_index, acc.num_processes, start_micro_step)
    else:
        sampler = StepBatchSampler(
            len(run.examples), cfg.batch_size, cfg.seed, acc.process_index, acc.num_processes, start_micro_step
        )
    if cfg.streaming:
        from fashion_retrieval.training.stream import stream_batches

        yield from stream_batches(run, start_micro_step)
        return
    if run.train_features is not None:
        make = FeatureBatches(run.examples, {it.id: i for i, it in enumerate(run.train_set.items)}, run.train_features, run.draw)
        for step, indices in sampler:
            yield make(step, indices)
        return
    transform = run.model.transform(train=cfg.train_augment)
    dataset = ImageBatches(run.examples, {it.id: it.path for it in run.train_set.items}, transform, cfg.seed, run.draw)
    # Whole decoded batches cross the worker queues: the prefetch is bounded by /dev/shm.
    options = image_loader_options(acc.device, cfg.num_workers, image_batch_bytes(cfg.batch_size, transform.size))
    # A generator of its own: starting the loader draws its workers' base seed from it, not
    # from the global RNG that dropout uses, so a resumed run draws what the whole one did.
    loader = torch.utils.data.DataLoader(
        dataset, sampler=sampler, batch_size=None, persistent_workers=cfg.num_workers > 0,
        generator=torch.Generator().manual_seed(cfg.seed), **options,
    )
    yield from loader


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Tensors of the batch moved to ``device`` (asynchronously from pinned memory on CUDA);
    lists and ints left as they are."""
    return to_device(batch, device)


def run_eval(run: Run, step: int) -> dict[str, Any]:
    """Evaluate on the eval split (main process), log it, write ``eval.json``; all processes wait."""
    acc, cfg = run.accelerator, run.config
    result: dict[str, Any] = {}
    if run.eval_set is not None and acc.is_main_process:
        from fashion_retrieval.evaluation import evaluate
        from fashion_retrieval.io_utils import atomic_write_json

        # In float32 whatever the training precision, as the reference code evaluates.
        result = evaluate(
            run.model, run.eval_set, protocol=TASKS.get(cfg.task).protocol,
            batch_size=cfg.eval_batch_size, features=run.eval_features, num_workers=cfg.num_workers,
            device=acc.device, mixed_precision="no",
        )
        result = {**result, "step": step}
        if cfg.save_best:
            keep_best(run, result)
            result["best"] = dict(run.best)
        atomic_write_json(Path(cfg.output_dir) / "eval.json", result)
        run.metrics.write(step, {"eval": result.get("recall", {}), "eval_categories": result.get("categories", {})})
        run.last_eval = result
    acc.wait_for_everyone()
    return result


def _debug_ids(run: Run, step: int, batch: dict[str, Any]) -> None:
    """With ``debug_log_ids``: append the ids this rank trained on (for the disjointness test)."""
    path = Path(run.config.output_dir) / f"debug_ids_rank{run.accelerator.process_index}.jsonl"
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps({"micro_step": step, "index": batch["index"], "target": batch["target_ids"]}) + "\n")


def sync_buffers(run: Run) -> None:
    """Copy rank 0's buffers (BatchNorm statistics) to every rank.

    DDP broadcasts buffers at the start of each forward, so after the last step each rank
    holds the statistics of its own last batch; this makes all ranks end identical.
    """
    if run.accelerator.num_processes == 1:
        return
    from accelerate.utils import broadcast

    with torch.no_grad():
        for buf in run.model.buffers():
            buf.copy_(broadcast(buf.detach().clone(), from_process=0))


def train_loop(run: Run, start_step: int) -> int:
    """Optimise from optimiser step ``start_step`` to ``max_steps``; returns the last step."""
    from tqdm.auto import tqdm

    acc, cfg = run.accelerator, run.config
    step, running, count = start_step, torch.zeros((), device=acc.device), 0
    bar = tqdm(total=cfg.max_steps, initial=step, disable=not acc.is_local_main_process, desc="train")
    run.module.train()
    stream = batches(run, start_step * cfg.grad_accum_steps)
    while step < cfg.max_steps:
        batch = _to_device(next(stream), acc.device)
        if cfg.debug_log_ids:
            _debug_ids(run, batch["step"], batch)
        with acc.accumulate(run.module):
            loss = run.module(batch)
            acc.backward(loss)
            if acc.sync_gradients and cfg.max_grad_norm:
                acc.clip_grad_norm_(run.module.parameters(), cfg.max_grad_norm)
            run.optimizer.step()
            run.optimizer.zero_grad()
        running, count = running + loss.detach().float(), count + 1
        if not acc.sync_gradients:
            continue
        if not acc.optimizer_step_was_skipped:
            run.scheduler.step()
        step += 1
        bar.update(1)
        if step % cfg.log_every == 0 or step == cfg.max_steps:
            mean = acc.reduce(running / count, reduction="mean").item()
            lr = run.optimizer.param_groups[0]["lr"]
            run.metrics.write(step, {"loss": mean, "lr": lr, "epoch": step * cfg.grad_accum_steps // max(1, len(run.examples) // (cfg.batch_size * acc.num_processes))})
            bar.set_postfix(loss=f"{mean:.4f}", lr=f"{lr:.2e}")
            running, count = torch.zeros((), device=acc.device), 0
        if step % cfg.save_every == 0 and step < cfg.max_steps:
            save_state(acc, cfg.output_dir, step, {"micro_step": step * cfg.grad_accum_steps})
        if step % cfg.eval_every == 0 and step < cfg.max_steps:
            run_eval(run, step)
            run.module.train()
    bar.close()
    return step


def finish(run: Run, step: int) -> Path:
    """Final state, final evaluation, the checkpoint folder and the optional Hub upload."""
    acc, cfg = run.accelerator, run.config
    sync_buffers(run)
    save_state(acc, cfg.output_dir, step, {"micro_step": step * cfg.grad_accum_steps})
    if cfg.debug_log_ids:
        from safetensors.torch import save_file

        state = {k: v.detach().cpu().contiguous() for k, v in run.model.state_dict().items()}
        save_file(state, str(Path(cfg.output_dir) / f"debug_weights_rank{acc.process_index}.safetensors"))
    run_eval(run, step)
    final = Path(cfg.output_dir) / "final"
    if acc.is_main_process:
        from fashion_retrieval.checkpoints import push_to_hub, save_checkpoint

        save_checkpoint(run.model, final, train_config=cfg.to_dict(), metrics=run.last_eval or None)
        if cfg.push_to_hub:
            push_to_hub(final, cfg.push_to_hub)
    acc.wait_for_everyone()
    acc.end_training()
    return final


def check_run(config: TrainConfig) -> tuple[Path, Path | None]:
    """The run's output folder (created, writable, with room) and the state it resumes from:
    checked once, before any data or model is loaded."""
    out = check_output_dir(config.output_dir)
    return out, resolve_resume(config.resume, out) if config.resume else None


def train(config: TrainConfig, checked: tuple[Path, Path | None] | None = None) -> Path:
    """Train as ``config`` says; returns the final checkpoint folder ``<output_dir>/final``.

    With ``save_best`` every evaluation that beats the best so far is also saved as
    ``<output_dir>/best`` (its ``metrics.json`` and model card name the step).

    Saves the resolved config as ``<output_dir>/config.yaml``, the Accelerate state every
    ``save_every`` steps under ``<output_dir>/state/step_N`` (the last two kept), metrics
    to ``metrics.jsonl`` and the evaluation to ``eval.json``. ``config.resume`` ("latest" or
    a state folder) continues a run exactly where it stopped. ``checked``: ``check_run``'s
    answer when the caller has it.
    """
    out, resume_dir = checked or check_run(config)
    accelerator = make_accelerator(config)
    if accelerator.is_main_process:
        config.save(out / "config.yaml")
    if tracker_name() is not None:
        flat = {**config.to_dict(), **{f"model.{k}": v for k, v in config.model.to_dict().items()}}
        accelerator.init_trackers("train", config={k: v for k, v in flat.items() if isinstance(v, (int, float, str, bool))})
    run = setup_run(config, accelerator)
    run.metrics = MetricsLog(accelerator, out)
    start = 0
    if resume_dir is not None:
        run.best = read_best(out) if config.save_best else None
        accelerator.load_state(str(resume_dir))
        start = int(read_trainer_state(resume_dir)["step"])
        if accelerator.is_main_process:
            logger.info("resumed from %s at step %d", resume_dir, start)
    began = time.perf_counter()
    step = train_loop(run, start)
    if accelerator.is_main_process:  # a stage line of the start-up benchmark
        print(f"[train] {config.model.compositor}/{config.task}, {step - start} steps: "
              f"{time.perf_counter() - began:.1f} s", file=sys.stderr, flush=True)
    return finish(run, step)
