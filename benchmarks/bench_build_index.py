"""Catalogue indexing throughput: ``build_index`` in 1 process against 2 (issue 25).

The default model (efficientnet_lite0, 512-d TIRG) saved as a checkpoint indexes a folder of
generated 300x400 JPEGs on the CPU: once as ``python -m fashion_retrieval.build_index`` (one
process, every core) and once under ``accelerate launch --num_processes 2`` (half the cores
each). The rate is the command's own ``images_per_s`` (embedding, chunk writes and the waits
for the slowest process; start-up, scan and merge are in the notes as wall time). Both runs
must give the same ids and embeddings within 1e-5.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import Row, StepContext, log, register, write_jpegs

ROOT = Path(__file__).resolve().parents[1]
SIZES = {True: 192, False: 960}  # about a minute for both runs on 2 cores in the full run
TINY_SIZE = 24
CHUNK, BATCH = 32, 32


def run_build(
    ck: Path, gallery: Path, home: Path, processes: int, threads: int, chunk: int
) -> tuple[dict, float]:
    """One ``build_index`` run on the CPU: its JSON summary and its wall seconds."""
    cmd = [sys.executable, "-m", "fashion_retrieval.build_index", "--checkpoint", str(ck),
           "--gallery", str(gallery), "--chunk-size", str(chunk), "--batch-size", str(BATCH)]
    if processes > 1:
        cmd[1:3] = ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
                    "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                    "--main_process_port", "0", "-m", "fashion_retrieval.build_index"]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": str(threads),
           "FASHION_RETRIEVAL_HOME": str(home), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    for attempt in range(2):  # a free port taken between its choice and its use: retried once
        shutil.rmtree(ck / "index", ignore_errors=True)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode == 0 or "EADDRINUSE" not in proc.stderr or attempt:
            break
    if proc.returncode != 0:
        raise RuntimeError(f"build_index with {processes} process(es) failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), wall


@register("build_index")
def bench_build_index(ctx: StepContext) -> list[Row]:
    """Images/s of ``build_index`` with 1 and 2 CPU processes on a generated photo folder."""
    import numpy as np

    from benchmarks.models import default_model
    from fashion_retrieval.checkpoints import save_checkpoint
    from fashion_retrieval.search.gallery_store import GalleryStore
    from fashion_retrieval.serving.photos import scan_cache_path, scan_photo_folder

    n = int(ctx.options.get("build_index_size") or ctx.size(SIZES, TINY_SIZE))
    work = ctx.workdir.resolve()
    gallery, home = work / f"build_index_photos_{n}", work / "build_index_home"
    write_jpegs(gallery, n, size=(300, 400), seed=25)
    tiny = {"image_encoder": "tiny_cnn", "pretrained": False, "embed_dim": 32} if ctx.tiny else {}
    ck = save_checkpoint(default_model(**tiny), work / "build_index_ck")
    scan_photo_folder(gallery, cache=scan_cache_path(gallery, home))  # cached for both runs
    chunk = max(1, min(CHUNK, n // 8))  # several chunks per process
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    runs = {}
    for procs in (1, 2):
        summary, wall = run_build(ck, gallery, home, procs, max(1, cores // procs), chunk)
        runs[procs] = (summary, wall, GalleryStore.load(summary["index_dir"]))
        log(f"build_index: {procs} process(es): {summary['images_per_s']} img/s, {wall:.1f} s wall")
    one, two = runs[1][2], runs[2][2]
    same_ids = one.ids == two.ids
    diff = float(np.abs(one.embeddings - two.embeddings).max()) if same_ids else float("inf")
    if not same_ids or diff > 1e-5:
        raise AssertionError(f"1 and 2 processes disagree: same ids {same_ids}, max |diff| {diff}")
    r1, r2 = runs[1][0]["images_per_s"], runs[2][0]["images_per_s"]
    ctx.analysis.append(
        "build_index: on the CPU both runs share the same cores, so two processes mostly trade "
        "intra-op threads for processes; the gain comes where each process has its own device "
        "(one per GPU) or its own machine."
    )
    model = "tiny_cnn model" if ctx.tiny else "default model"
    common = f"{n} JPEGs 300x400, chunks of {chunk}, batch {BATCH}, {model}, {cores} cores"
    return [
        Row(figure="catalogue indexing throughput (build_index)", measure="1 process (CPU)",
            value=r1, unit="img/s", target="reported",
            notes=f"{common}, torch threads {cores}; wall {runs[1][1]:.1f} s with start-up and merge",
            extra={"images": n, "processes": 1}),
        Row(figure="catalogue indexing throughput (build_index)",
            measure="2 processes (accelerate launch, CPU)", value=r2, unit="img/s",
            baseline_name="1 process", baseline=r1, target="same ids and vectors as 1 process",
            passed=True,
            notes=(f"{r2 / r1:.2f}x of 1 process; {common}, torch threads {max(1, cores // 2)} each; "
                   f"wall {runs[2][1]:.1f} s; max |embedding diff| vs 1 process {diff:.1e}"),
            extra={"images": n, "processes": 2, "max_abs_diff": diff}),
    ]
