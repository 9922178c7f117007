"""Real data sizes through the project's own commands, on CPU: do they fit, how long, how
much memory.

FashionIQ: the real annotation files (all of dress, shirt, toptee) with a generated
stand-in image for every image they name, 300 left out on purpose. Fashion200k: a label
set of the published sizes in the release layout (``realscale_data``). For each:
``python -m fashion_retrieval.data.inspect`` (the loader's counts), a few hundred steps of
``python training/train.py`` (tiny_cnn + LSTM, 32 px images, end to end), then the whole
standard protocol through ``python training/evaluate.py``. Every command is a subprocess
whose own peak resident memory comes from ``os.wait4``; the loader's and the evaluation's
counts are checked against what the generator wrote.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import Row, SkipStep, StepContext, log, register
from benchmarks.realscale_data import (
    fashioniq_expected_counts,
    slice_fashioniq,
    write_fashion200k_standins,
    write_fashioniq_standins,
)

ROOT = Path(__file__).resolve().parents[1]
FASHIONIQ_ANNOTATIONS = Path(
    os.environ.get("FASHIONIQ_ANNOTATIONS", ROOT.parent / "shared" / "data" / "fashioniq")
)
PARTS = ("fashioniq", "fashion200k")
MEMORY_TARGET_MB = 4096  # fits a laptop
# Per mode (quick, full) and for --tiny: training steps, images left out, the FashionIQ
# slice (caption entries, gallery ids per category and split; None: the whole release) and
# the Fashion200k sizes (train images, test images, test queries).
STEPS = {True: 50, False: 300}
MISSING = {True: 100, False: 300}
FIQ_SLICE = {True: (300, 1000), False: None}
F200K_SIZES = {True: (17_205, 2_979, 3_348), False: (172_049, 29_789, 33_480)}
TINY = {"steps": 2, "missing": 10, "fiq_slice": (20, 40), "f200k": (300, 150, 120)}
# A small model: tiny_cnn at 32 px, a 128-d LSTM, 128-d embeddings; no evaluation inside
# the run (evaluate.py does it), no DataLoader workers (2 shared CPUs).
TRAIN_ARGS = (
    "--model.image-encoder", "tiny_cnn", "--model.text-encoder", "lstm", "--model.pretrained", "false",
    "--model.image-size", "32", "--model.embed-dim", "128",
    "--model.text-kwargs", '{"word_dim": 128, "hidden": 128}',
    "--eval-split", "", "--num-workers", "0",
    "--save-every", "1000000", "--eval-every", "1000000", "--log-every", "25",
)
CONFIGS = {"fashioniq": "training/configs/tirg_fashioniq.yaml",
           "fashion200k": "training/configs/tirg_fashion200k.yaml"}
EVAL_SPLIT = {"fashioniq": "val", "fashion200k": "test"}
FLOOR_NAME = "a process that only imports the library"
# Torch threads of the commands: on 2 CPUs shared with other work, a tiny_cnn backward pass
# on 64 images took 95 ms with 2 threads and 12 ms with 1 (spinning OpenMP threads wait
# for a busy core).
THREADS = 1


def run_measured(cmd: list[str], logdir: Path, name: str, threads: int = THREADS) -> dict[str, Any]:
    """Run ``cmd`` from the repo root with ``threads`` OpenMP/torch threads (0: the default);
    its seconds, exit code and own peak RSS (MiB).

    ``os.wait4`` gives the resource use of that one child (and of the children it waited
    for), so each command's peak is its own, not the largest of the step so far.
    """
    logdir.mkdir(parents=True, exist_ok=True)
    out, err = logdir / f"{name}.stdout", logdir / f"{name}.stderr"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    t0 = time.perf_counter()
    with out.open("wb") as fo, err.open("wb") as fe:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=fo, stderr=fe, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = rc = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - t0
    if rc != 0:
        tail = err.read_text(errors="replace")[-1500:]
        raise RuntimeError(f"{name} exited with code {rc}: {' '.join(cmd)}\n{tail}")
    log(f"realscale: {name} {seconds:.1f} s, peak RSS {usage.ru_maxrss / 1024:.0f} MiB")
    return {"cmd": cmd, "seconds": seconds, "peak_rss_mb": usage.ru_maxrss / 1024.0,
            "stdout": out.read_text(errors="replace")}


@dataclass
class Commands:
    """The project's commands as measured subprocesses; their output under ``workdir/logs``."""

    workdir: Path
    threads: int = THREADS
    _floor_mb: float | None = None

    def run(self, cmd: list[str], name: str) -> dict[str, Any]:
        """``run_measured`` with this plan's log folder and threads."""
        return run_measured(cmd, self.workdir / "logs", name, self.threads)

    def inspect(self, dataset: str, root: Path, split: str) -> dict[str, Any]:
        """The loader's counts of one split, from ``python -m fashion_retrieval.data.inspect``."""
        m = self.run([sys.executable, "-m", "fashion_retrieval.data.inspect", "--dataset", dataset,
                      "--root", str(root), "--split", split], f"{dataset}_inspect_{split}")
        return {**json.loads(m["stdout"]), "seconds": m["seconds"], "peak_rss_mb": m["peak_rss_mb"]}

    def import_floor(self) -> float:
        """Peak RSS (MiB) of a process that only imports what train.py and evaluate.py import
        (measured once per step)."""
        if self._floor_mb is None:
            code = ("import fashion_retrieval.training.trainer, fashion_retrieval.evaluation, "
                    "fashion_retrieval.checkpoints, fashion_retrieval.data, fashion_retrieval.models")
            self._floor_mb = self.run([sys.executable, "-c", code], "import_floor")["peak_rss_mb"]
        return self._floor_mb

    def train_and_evaluate(self, dataset: str, root: Path, steps: int) -> dict[str, Any]:
        """``training/train.py`` for ``steps`` steps, then ``training/evaluate.py`` on its checkpoint."""
        run_dir, out_json = self.workdir / f"{dataset}_run", self.workdir / f"{dataset}_eval.json"
        train = self.run(
            [sys.executable, "training/train.py", "--config", CONFIGS[dataset], "--data-root",
             str(root), "--max-steps", str(steps), "--output-dir", str(run_dir), *TRAIN_ARGS],
            f"{dataset}_train",
        )
        metrics = (run_dir / "metrics.jsonl").read_text().splitlines()
        losses = [json.loads(line)["loss"] for line in metrics if '"loss"' in line]
        evaluation = self.run(
            [sys.executable, "training/evaluate.py", "--checkpoint", str(run_dir / "final"),
             "--dataset", dataset, "--data-root", str(root), "--split", EVAL_SPLIT[dataset],
             "--json", str(out_json)],
            f"{dataset}_evaluate",
        )
        return {"train": train, "losses": losses, "evaluate": evaluation,
                "result": json.loads(out_json.read_text())}


def _memory_row(what: str, peak_mb: float, floor_mb: float) -> Row:
    """A peak-RSS row of one subprocess, beside the RSS of the library's imports alone."""
    return Row("memory", f"{what}: peak RSS", peak_mb, "MiB", baseline_name=FLOOR_NAME,
               baseline=floor_mb, target=f"< {MEMORY_TARGET_MB:,} MiB",
               passed=peak_mb < MEMORY_TARGET_MB,
               notes=f"os.wait4 of the subprocess; {peak_mb - floor_mb:,.0f} MiB above the imports")


def _rows(name: str, gen: dict, train_split: dict, eval_split: dict, runs: dict,
          expected: dict, steps: int, floor: float) -> list[Row]:
    """The five rows of one data set: generation, training and evaluation (time, memory)."""
    result, train, ev = runs["result"], runs["train"], runs["evaluate"]
    loader_ok = all(eval_split[k] == v for k, v in expected.items())
    ranked_ok = result["queries"] == eval_split["queries"]
    recall = ", ".join(f"{k} {v:.2f}" for k, v in result["recall"].items())
    skipped = ", ".join(f"{k} {v:,}" for k, v in result.get("skipped", {}).items() if v) or "none"
    loss = f"; loss {runs['losses'][0]:.2f} -> {runs['losses'][-1]:.2f}" if runs["losses"] else ""
    split = EVAL_SPLIT[name]
    return [
        Row("real scale", f"{name} stand-ins: {gen['images']:,} JPEGs 48x64 written ({gen['sizes']})",
            gen["seconds"], "s", target="reported",
            notes=f"{gen['images'] / gen['seconds']:,.0f} files/s in the step's process; "
            f"{gen['missing']} named images left out (seeded)",
            extra={k: v for k, v in gen.items() if k != "seconds"}),
        Row("real scale", f"{name} training via training/train.py: {steps} steps, tiny_cnn + LSTM "
            f"(128-d), 32 px, batch 32; loader: {train_split['images']:,} images, "
            f"{train_split['queries']:,} training queries", train["seconds"], "s",
            target="completes", passed=True,
            notes=f"whole process: start-up, data loading, steps, checkpoint{loss}",
            extra={"losses": runs["losses"], "loader": train_split}),
        _memory_row(f"{name} training process (train.py)", train["peak_rss_mb"], floor),
        Row("real scale", f"{name} {split} protocol via training/evaluate.py: "
            f"{eval_split['images']:,} gallery images, {result['queries']:,} queries ranked",
            ev["seconds"], "s", target="completes; loader and ranked counts match the files",
            passed=loader_ok and ranked_ok,
            notes=f"loader: {eval_split['missing_images']:,} images missing; evaluation skipped: "
            f"{skipped}; recall of the {steps}-step model (stand-in images carry no signal): "
            f"{recall}",
            extra={"loader": eval_split, "expected": expected, "evaluation": result}),
        _memory_row(f"{name} evaluation process (evaluate.py)", ev["peak_rss_mb"], floor),
    ]


def fashioniq_part(ctx: StepContext, cmd: Commands, steps: int, missing: int) -> list[Row]:
    """The real FashionIQ annotations (or a slice of them) with stand-in images."""
    annotations = Path(ctx.options.get("fashioniq_annotations") or FASHIONIQ_ANNOTATIONS)
    if not (annotations / "captions").is_dir():
        raise SkipStep(f"real FashionIQ annotations not found at {annotations} "
                       "(set FASHIONIQ_ANNOTATIONS or the fashioniq_annotations option)")
    cut = TINY["fiq_slice"] if ctx.tiny else FIQ_SLICE[ctx.quick]
    if cut is not None:
        annotations = slice_fashioniq(annotations, ctx.workdir / "fiq_slice", *cut)
    root = ctx.workdir / "fashioniq"
    t0 = time.perf_counter()
    written = write_fashioniq_standins(annotations, root, missing=missing)
    gen = {"images": written["images"], "missing": missing, "seconds": time.perf_counter() - t0}
    absent = set(written["missing"])
    sizes = "the whole release" if cut is None else f"a slice: {cut[0]} triplets per file"
    gen["sizes"] = f"{sizes}, {len(written['named']):,} named images"
    train_split = cmd.inspect("fashioniq", root, "train")
    val = cmd.inspect("fashioniq", root, "val")
    runs = cmd.train_and_evaluate("fashioniq", root, steps)
    expected = fashioniq_expected_counts(root, "val", absent)
    return _rows("fashioniq", gen, train_split, val, runs, expected, steps, cmd.import_floor())


def fashion200k_part(ctx: StepContext, cmd: Commands, steps: int, missing: int) -> list[Row]:
    """A Fashion200k-sized label set in the release layout, with stand-in images."""
    n_train, n_test, n_queries = TINY["f200k"] if ctx.tiny else F200K_SIZES[ctx.quick]
    root = ctx.workdir / "fashion200k"
    t0 = time.perf_counter()
    written = write_fashion200k_standins(root, n_train, n_test, n_queries, missing=missing)
    gen = {"images": written["images"], "missing": missing, "seconds": time.perf_counter() - t0}
    gen["sizes"] = f"{n_train:,} train + {n_test:,} test images, {n_queries:,} test queries"
    train_split = cmd.inspect("fashion200k", root, "train")
    test = cmd.inspect("fashion200k", root, "test")
    runs = cmd.train_and_evaluate("fashion200k", root, steps)
    expected = {"images": n_test - written["missing_test"],
                "queries": n_queries - written["queries_with_missing"],
                "missing_images": written["missing_test"]}
    return _rows("fashion200k", gen, train_split, test, runs, expected, steps, cmd.import_floor())


@register("realscale")
def bench_realscale(ctx: StepContext) -> list[Row]:
    """FashionIQ and Fashion200k at their real sizes: generate, inspect, train, evaluate."""
    parts = ctx.options.get("realscale_parts") or list(PARTS)
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise ValueError(f"unknown realscale_parts {unknown}; valid: {', '.join(PARTS)}")
    steps = ctx.options.get("realscale_steps") or (TINY["steps"] if ctx.tiny else STEPS[ctx.quick])
    missing = TINY["missing"] if ctx.tiny else MISSING[ctx.quick]
    cmd = Commands(ctx.workdir, int(ctx.options.get("realscale_threads", THREADS)))
    rows: list[Row] = []
    if "fashioniq" in parts:
        rows += fashioniq_part(ctx, cmd, steps, missing)
    if "fashion200k" in parts:
        rows += fashion200k_part(ctx, cmd, steps, missing)
    ctx.analysis.append(
        "realscale: each command is a fresh Python process (imports of torch and the library "
        f"included in its seconds) with {cmd.threads or 'the default number of'} torch "
        "thread(s), on this machine's shared CPUs (step times swing several-fold with other "
        "load); the training steps are tiny_cnn and LSTM forward and backward on one core, "
        "data loading is decoding 2 small JPEGs per triplet; evaluation embeds every "
        "gallery image once with the backbone, then ranks chunks of 1,024 queries, so its "
        "memory grows with the gallery's embeddings (N x D floats), never with Q x G."
    )
    return rows
