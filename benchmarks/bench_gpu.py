"""GPU figures: ``python benchmarks/run.py --gpu --json OUT.json`` (one command, under 10 minutes).

Three steps, each in its own process, each through the library's own loops on CUDA, in
float32 and under bf16 autocast:

- ``gpu_features``: images/s of caching frozen-backbone features, the bare backbone forward
  on ready batches and the whole cache-miss path (JPEG decode in DataLoader workers, pinned
  memory, backbone), against the same forward on the CPU;
- ``gpu_training``: TIRG triplets/s of the trainer (``setup_run`` + ``train_loop``) on cached
  features and end to end with the backbone fine-tuned;
- ``gpu_evaluation``: the time to evaluate at FashionIQ val size (per-category galleries and
  queries as in the real split files): the backbone over every gallery image plus the heads
  and the ranking through ``evaluate`` (random features stand in for decoded images there),
  against the heads and ranking on the CPU.

The backbone defaults to ``open_clip:RN50x4`` at 288 px (random weights: speed does not
depend on them). Without a GPU every step is reported as skipped with "no GPU". Options
(``--options`` JSON): ``gpu_device`` (e.g. "cpu" for a dry run of the code at ``--tiny``
sizes), ``gpu_backbone``, ``gpu_workers``, ``fashioniq_root`` (read the sizes from its
split files).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from benchmarks.common import Row, SkipStep, StepContext, log, register, write_jpegs

GPU_STEPS = ("gpu_features", "gpu_training", "gpu_evaluation")
# Seconds each step may take under --gpu: 9.5 minutes in all, at most.
GPU_STEP_TIMEOUT = {"gpu_features": 150, "gpu_training": 270, "gpu_evaluation": 150}
BACKBONE = "open_clip:RN50x4"
PRECISIONS = ("no", "bf16")
# FashionIQ val, from image_splits/split.<cat>.val.json and captions/cap.<cat>.val.json:
# category -> (gallery images, queries). 15,536 images and 6,016 queries in all.
FASHIONIQ_VAL = {"dress": (3817, 2017), "shirt": (6346, 2038), "toptee": (5373, 1961)}
# Sizes per mode ({quick: value}) and for --tiny (a dry run of the code, e.g. on the CPU).
FORWARD = {True: (64, 10), False: (128, 30)}  # (batch, timed batches)
TINY_FORWARD = (4, 2)
PIPELINE_IMAGES = {True: 512, False: 1024}
TINY_PIPELINE_IMAGES = 8
CPU_BATCH = {True: 8, False: 16}  # the CPU reference forward: one batch
TINY_CPU_BATCH = 2
TRAIN_STEPS = {True: (50, 8), False: (200, 15)}  # (cached steps, end-to-end steps)
TINY_TRAIN_STEPS = (2, 1)
TRAIN_PRODUCTS = {True: 200, False: 300}
TINY_TRAIN_PRODUCTS = 24
TRAIN_BATCH, TINY_TRAIN_BATCH = 32, 4
TINY_EVAL_SCALE = 0.01  # --tiny evaluates 1% of the FashionIQ sizes


def no_gpu_reason(options: dict[str, Any] | None = None) -> str | None:
    """Why the GPU steps cannot run here ("no GPU: ..."), or None when they can."""
    import torch

    if (options or {}).get("gpu_device"):
        return None
    if not torch.cuda.is_available():
        return (f"no GPU: torch {torch.__version__} sees no CUDA device "
                f"(built with CUDA {torch.version.cuda or 'none'}); nothing was measured")
    return None


def gpu_device(ctx: StepContext) -> str:
    """The device of the GPU steps: ``cuda`` (or ``options['gpu_device']``); SkipStep without one."""
    reason = no_gpu_reason(ctx.options)
    if reason:
        raise SkipStep(reason)
    return str(ctx.options.get("gpu_device") or "cuda")


def synchronize(device: str) -> None:
    """Wait for queued CUDA work, so that a clock read after it measures it."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench_model(backbone: str, texts: list[str] | None = None, **overrides: Any):
    """A TIRG ``RetrievalModel`` on ``backbone`` with random weights (nothing downloaded), eval mode."""
    from benchmarks.models import QUERY_TEXTS
    from fashion_retrieval.models import ModelConfig, RetrievalModel

    config = ModelConfig(image_encoder=backbone, pretrained=False, **overrides)
    return RetrievalModel(config, texts=texts or QUERY_TEXTS).eval()


def forward_rate(model, device: str, mixed_precision: str, batch: int, batches: int) -> float:
    """Images/s of ``model.image_features`` (the cached features) on ready random batches."""
    import torch

    from fashion_retrieval.devices import autocast

    model.to(device)
    size = model.transform().size
    pixels = torch.randn(batch, 3, size, size, device=device)  # (B, 3, S, S)
    with torch.inference_mode(), autocast(device, mixed_precision):
        model.image_features(pixels)  # warm-up: kernels, allocator
        synchronize(device)
        t0 = time.perf_counter()
        for _ in range(batches):
            model.image_features(pixels)
        synchronize(device)
    return batch * batches / (time.perf_counter() - t0)


def pipeline_rate(model, paths: list[Path], device: str, mixed_precision: str, batch: int, workers: int) -> float:
    """Images/s of the feature-cache miss path: ``embed_images`` (decode in workers, pinned, backbone)."""
    from fashion_retrieval.models.embedding import embed_images

    def run(some: list[Path]) -> None:
        embed_images(model, some, batch_size=batch, num_workers=workers, target=False,
                     device=device, mixed_precision=mixed_precision)

    run(paths[: 2 * batch])  # warm-up: kernels, page cache
    t0 = time.perf_counter()
    run(paths)  # timed with its workers' start, as a cache miss pays it
    return len(paths) / (time.perf_counter() - t0)


def _workers(ctx: StepContext) -> int:
    import os

    return int(ctx.options.get("gpu_workers", min(8, os.cpu_count() or 1)))


@register("gpu_features")
def bench_gpu_features(ctx: StepContext) -> list[Row]:
    """Feature caching on the GPU: bare forward fp32/bf16, the whole miss path, the CPU forward."""
    import torch

    device = gpu_device(ctx)
    backbone = ctx.options.get("gpu_backbone", BACKBONE)
    batch, batches = ctx.size(FORWARD, TINY_FORWARD)
    model = bench_model(backbone)
    cpu_batch = ctx.size(CPU_BATCH, TINY_CPU_BATCH)
    cpu = forward_rate(model, "cpu", "no", cpu_batch, 1)
    log(f"gpu_features: {backbone} on the CPU: {cpu:.1f} img/s")
    rates = {}
    for precision in PRECISIONS:
        rates[precision] = forward_rate(model, device, precision, batch, batches)
        log(f"gpu_features: {backbone} forward on {device}, {precision}: {rates[precision]:.0f} img/s")
    paths = write_jpegs(ctx.workdir / "gpu_jpegs", ctx.size(PIPELINE_IMAGES, TINY_PIPELINE_IMAGES))
    workers = _workers(ctx)
    pipe = pipeline_rate(model, paths, device, "bf16", batch, workers)
    log(f"gpu_features: cache-miss path, bf16, {workers} workers: {pipe:.0f} img/s")
    size = model.transform().size
    name = f"{backbone} at {size} px"
    where = torch.cuda.get_device_name(0) if device.startswith("cuda") else device
    rows = [
        Row("GPU feature caching", f"{name}, backbone forward, batch {batch}, fp32", rates["no"], "img/s",
            "CPU, same forward", cpu, "reported", None,
            f"{rates['no'] / cpu:.0f}x the CPU ({torch.get_num_threads()} threads) on {where}",
            extra={"device": where, "batch": batch, "batches": batches}),
        Row("GPU feature caching", f"{name}, backbone forward, batch {batch}, bf16 autocast", rates["bf16"],
            "img/s", "fp32", rates["no"], "reported", None, f"{rates['bf16'] / rates['no']:.2f}x fp32"),
        Row("GPU feature caching", f"{name}, cache-miss path (JPEG decode in {workers} workers, pinned, bf16)",
            pipe, "img/s", "bare bf16 forward", rates["bf16"], "reported", None,
            f"{len(paths)} JPEGs 300x400, workers' start included; {pipe / rates['bf16']:.0%} of bare: "
            "decode-bound when below",
            extra={"images": len(paths), "workers": workers}),
    ]
    ctx.analysis.append(
        f"gpu_features: the bare forward is bounded by the GPU's matrix throughput ({name}); the "
        "cache-miss path adds JPEG decode and resize in the DataLoader workers, which bound it "
        "when they cannot feed the GPU."
    )
    return rows


def _reset_accelerate() -> None:
    """Accelerate keeps one global state whose precision cannot change within a process."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


@register("gpu_training")
def bench_gpu_training(ctx: StepContext) -> list[Row]:
    """TIRG triplets/s on the GPU: cached features and end to end fine-tuned, fp32 and bf16."""
    from benchmarks.bench_training import train_config, triplets_per_second

    device = gpu_device(ctx)
    backbone = ctx.options.get("gpu_backbone", BACKBONE)
    n_cached, n_e2e = ctx.size(TRAIN_STEPS, TINY_TRAIN_STEPS)
    products = ctx.size(TRAIN_PRODUCTS, TINY_TRAIN_PRODUCTS)
    batch = TINY_TRAIN_BATCH if ctx.tiny else TRAIN_BATCH
    workers = _workers(ctx)
    paths = {"cached": dict(cache_features=True), "fine-tuned": dict(cache_features=False, freeze_image_encoder=False)}
    rates: dict[tuple[str, str], float] = {}
    for path, changes in paths.items():
        for precision in PRECISIONS:
            _reset_accelerate()
            config = train_config(ctx.workdir, products, image_encoder=backbone, pretrained=False,
                                  batch_size=batch, num_workers=workers, mixed_precision=precision,
                                  **changes)
            steps = n_cached if path == "cached" else n_e2e
            rate, where = triplets_per_second(config, steps, warmup=1 if ctx.tiny else 3)
            if not where.startswith(device.split(":")[0]):
                raise RuntimeError(f"the trainer ran on {where}, not on {device}")
            rates[path, precision] = rate
    rows = []
    for path in paths:
        what = "cached frozen features" if path == "cached" else "end to end, backbone fine-tuned"
        fp32, bf16 = rates[path, "no"], rates[path, "bf16"]
        rows.append(Row("GPU training throughput", f"TIRG on {backbone}, {what}, fp32", fp32, "triplets/s",
                        notes=f"batch {batch}, {n_cached if path == 'cached' else n_e2e} timed steps, "
                              f"{workers} DataLoader workers, {device}",
                        extra={"path": path, "batch": batch}))
        rows.append(Row("GPU training throughput", f"TIRG on {backbone}, {what}, bf16 autocast", bf16,
                        "triplets/s", "fp32", fp32, "reported", None, f"{bf16 / fp32:.2f}x fp32"))
    ctx.analysis.append(
        "gpu_training: on cached features a step is the LSTM and the TIRG heads (small kernels, "
        "launch-bound); end to end it is the backbone's forward and backward over two images per "
        "triplet, where bf16 pays."
    )
    return rows


def fashioniq_sizes(root: str | None = None) -> dict[str, tuple[int, int]]:
    """(gallery images, queries) per category of FashionIQ val, from ``root``'s split files when
    given, else the sizes of the real release."""
    if not root:
        return dict(FASHIONIQ_VAL)
    base = Path(root)
    sizes = {}
    for split_file in sorted(base.glob("image_splits/split.*.val.json")):
        cat = split_file.name.split(".")[1]
        captions = base / "captions" / f"cap.{cat}.val.json"
        sizes[cat] = (len(json.loads(split_file.read_text())), len(json.loads(captions.read_text())))
    if not sizes:
        raise ValueError(f"{root} holds no image_splits/split.<category>.val.json")
    return sizes


def fake_fashioniq(sizes: dict[str, tuple[int, int]], seed: int = 0):
    """A FashionIQ-shaped val split: per-category galleries and queries (no image files)."""
    import random

    from fashion_retrieval.data.records import Item, RetrievalDataset, Triplet

    rng = random.Random(seed)
    words = ["is darker", "has longer sleeves", "is red", "has a floral print", "is shorter", "is looser"]
    items, triplets = [], []
    for cat, (n_images, n_queries) in sizes.items():
        ids = [f"{cat}{i:06d}" for i in range(n_images)]
        items += [Item(i, f"/absent/{i}.jpg", "", cat) for i in ids]
        for _ in range(n_queries):
            text = f"{rng.choice(words)} and {rng.choice(words)}"
            triplets.append(Triplet(rng.choice(ids), rng.choice(ids), text, cat))
    return RetrievalDataset("fashioniq", "val", "", items, triplets, "fashioniq")


def heads_and_ranking_seconds(model, dataset, features, device: str, mixed_precision: str) -> float:
    """Seconds of ``evaluate`` on precomputed backbone features: heads, text encoder, ranking."""
    from fashion_retrieval.evaluation import evaluate

    t0 = time.perf_counter()
    result = evaluate(model, dataset, features=features, batch_size=512, device=device,
                      mixed_precision=mixed_precision)
    if result["queries"] != len(dataset.triplets):
        raise RuntimeError(f"ranked {result['queries']} of {len(dataset.triplets)} queries")
    return time.perf_counter() - t0


@register("gpu_evaluation")
def bench_gpu_evaluation(ctx: StepContext) -> list[Row]:
    """Evaluation at FashionIQ val size on the GPU: backbone over the galleries + heads and ranking."""
    import torch

    device = gpu_device(ctx)
    backbone = ctx.options.get("gpu_backbone", BACKBONE)
    scale = TINY_EVAL_SCALE if ctx.tiny else 1.0
    sizes = {c: (max(2, int(g * scale)), max(1, int(q * scale)))
             for c, (g, q) in fashioniq_sizes(ctx.options.get("fashioniq_root")).items()}
    dataset = fake_fashioniq(sizes)
    n_images, n_queries = len(dataset.items), len(dataset.triplets)
    model = bench_model(backbone, texts=dataset.texts())
    batch = ctx.size(FORWARD, TINY_FORWARD)[0]
    backbone_s = {p: n_images / forward_rate(model, device, p, batch, -(-n_images // batch)) for p in PRECISIONS}
    features = torch.randn(n_images, model.feature_dim, generator=torch.Generator().manual_seed(0))  # (N, Dimg)
    warm = fake_fashioniq({c: (8, 4) for c in sizes})
    heads_and_ranking_seconds(model, warm, torch.randn(len(warm.items), model.feature_dim), device, "no")
    heads = {p: heads_and_ranking_seconds(model, dataset, features.to(device), device, p) for p in PRECISIONS}
    cpu_heads = heads_and_ranking_seconds(model, dataset, features, "cpu", "no")
    cpu_backbone = n_images / forward_rate(model, "cpu", "no", ctx.size(CPU_BATCH, TINY_CPU_BATCH), 1)
    log(f"gpu_evaluation: backbone {backbone_s}, heads+ranking {heads}; CPU: backbone {cpu_backbone:.0f} s "
        f"(estimated), heads+ranking {cpu_heads:.1f} s")
    size_note = f"{n_images:,} gallery images, {n_queries:,} queries ({', '.join(sizes)})"
    rows = []
    for p, label in (("no", "fp32"), ("bf16", "bf16 autocast")):
        total = backbone_s[p] + heads[p]
        rows.append(Row(
            "GPU evaluation at FashionIQ val size", f"{backbone} backbone over every gallery image + heads "
            f"and ranking, {label}", total, "s",
            "CPU (backbone estimated from one batch)" if p == "no" else "fp32",
            cpu_backbone + cpu_heads if p == "no" else backbone_s["no"] + heads["no"], "reported", None,
            f"{size_note}; backbone {backbone_s[p]:.1f} s, heads + ranking {heads[p]:.1f} s "
            "(ranking on the CPU); decoding the images is not included (see gpu_features)"
            + (f"; CPU: backbone {cpu_backbone:.0f} s, heads + ranking {cpu_heads:.1f} s" if p == "no" else ""),
            extra={"backbone_s": backbone_s[p], "heads_and_ranking_s": heads[p], "images": n_images,
                   "queries": n_queries, "sizes": sizes, "cpu_backbone_s_estimate": cpu_backbone,
                   "cpu_heads_and_ranking_s": cpu_heads},
        ))
    ctx.analysis.append(
        "gpu_evaluation: the backbone pass over the galleries dominates; the heads and the LSTM "
        "run in batches of 512 on the GPU, and the chunked top-k ranking runs on the CPU."
    )
    return rows
