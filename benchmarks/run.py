"""Speed and scale figures of the retrieval stack, each against its obvious alternative.

    python benchmarks/run.py [--quick | --tiny] --json OUT.json [--readme docs/RESULTS.md] [--only NAME,...]
    python benchmarks/run.py --gpu --json OUT.json      # the GPU figures (benchmarks/bench_gpu.py)

Every step runs in its own Python process (so its peak memory is its own); the parent
collects the rows into one JSON and writes the docs/RESULTS.md table from it (benchmarks/report.py).
Steps: embedding, latency, session, build_index, ann, evaluation, training, startup, realscale. ``--tiny`` runs every step
at toy sizes (seconds each) to check that the steps work; its figures mean nothing, so it
never writes docs/RESULTS.md.
``--gpu`` runs the GPU steps instead (gpu_features, gpu_training, gpu_evaluation: feature
caching, training and evaluation throughput on CUDA, fp32 and bf16) in under 10 minutes; it
prints their table and leaves docs/RESULTS.md alone. Without a GPU it says "no GPU", writes a
JSON that says so and exits 0.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `benchmarks` and the package importable
    sys.path.insert(0, str(ROOT))

from benchmarks import report  # noqa: E402
from benchmarks.common import (  # noqa: E402
    BENCHMARKS,
    DEFAULT_ORDER,
    SkipStep,
    StepContext,
    machine_info,
    max_rss_mb,
)

# Modules that register steps; imported lazily so that --help costs nothing.
STEP_MODULES = (
    "benchmarks.bench_embedding",
    "benchmarks.bench_latency",
    "benchmarks.bench_session",
    "benchmarks.bench_build_index",
    "benchmarks.bench_ann",
    "benchmarks.bench_eval",
    "benchmarks.bench_training",
    "benchmarks.bench_startup",
    "benchmarks.bench_realscale",
    "benchmarks.bench_gpu",
)
# Seconds a step may take before it is stopped and reported as a timeout.
STEP_TIMEOUT = {True: 240, False: 1200}
TINY_STEP_TIMEOUT = 180


def load_steps() -> None:
    """Import every bench module so that its steps are registered."""
    for mod in STEP_MODULES:
        importlib.import_module(mod)


def run_worker(
    name: str, quick: bool, workdir: Path, out: Path, options: dict[str, Any], tiny: bool = False
) -> int:
    """Child process: run one step and write its rows, notes and peak memory to ``out``."""
    import resource

    load_steps()
    ctx = StepContext(quick=quick or tiny, workdir=workdir, options=options, tiny=tiny)
    t0 = time.perf_counter()
    result: dict[str, Any] = {"status": "ok", "rows": []}
    try:
        rows = BENCHMARKS.get(name)(ctx)
        result["rows"] = [r.to_dict() for r in rows]
    except SkipStep as e:
        result.update(status="skipped", reason=str(e))
    except Exception as e:  # reported in the table, never hidden
        traceback.print_exc()
        result.update(status="error", error=f"{type(e).__name__}: {e}")
    result["analysis"] = ctx.analysis
    result["seconds"] = time.perf_counter() - t0
    result["peak_rss_mb"] = max_rss_mb(resource.RUSAGE_SELF)
    result["children_peak_rss_mb"] = max_rss_mb(resource.RUSAGE_CHILDREN)
    out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


def spawn_step(name: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Parent: run one step in a fresh process, with a timeout; its JSON result."""
    out = workdir / f"{name}.result.json"
    out.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        name,
        "--workdir",
        str(workdir),
        "--worker-out",
        str(out),
        "--options",
        json.dumps(args.options),
    ]
    if args.quick:
        cmd.append("--quick")
    if args.tiny:
        cmd.append("--tiny")
    if args.gpu:  # per-step limits that keep the whole --gpu run under 10 minutes
        from benchmarks.bench_gpu import GPU_STEP_TIMEOUT

        default = GPU_STEP_TIMEOUT[name]
    else:
        default = TINY_STEP_TIMEOUT if args.tiny else STEP_TIMEOUT[args.quick]
    timeout = args.step_timeout or default
    t0 = time.perf_counter()
    # A new session, so that a timeout stops the step's DataLoader workers and apps too.
    proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True)
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return {
            "status": "timeout",
            "error": f"stopped after {timeout} s",
            "rows": [],
            "seconds": time.perf_counter() - t0,
        }
    if not out.exists():
        return {
            "status": "error",
            "error": f"step process exited with code {rc} and no result",
            "rows": [],
            "seconds": time.perf_counter() - t0,
        }
    return json.loads(out.read_text(encoding="utf-8"))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (the --worker options are internal)."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="smaller sizes; under 2 minutes on 2 cores")
    p.add_argument(
        "--tiny",
        action="store_true",
        help="toy sizes, seconds per step: checks that every step runs (figures meaningless; "
        "implies --quick, never writes docs/RESULTS.md)",
    )
    p.add_argument(
        "--gpu",
        action="store_true",
        help="the GPU figures instead (feature caching, training, evaluation on CUDA, fp32 and bf16; "
        "under 10 minutes); prints their table, never writes docs/RESULTS.md; says 'no GPU' and exits 0 "
        "where there is none",
    )
    p.add_argument("--json", type=Path, help="where to write the results (required to measure)")
    p.add_argument(
        "--readme",
        type=Path,
        default=ROOT / "docs" / "RESULTS.md",
        help="Markdown file to write the table into (default: the repo's docs/RESULTS.md)",
    )
    p.add_argument("--no-readme", action="store_true", help="only write the JSON")
    p.add_argument("--only", default="", help="comma-separated steps (default: all)")
    p.add_argument(
        "--merge",
        type=Path,
        help="an earlier results JSON whose other steps are kept (with their own dates): "
        "re-measure some steps after a change without re-running the rest",
    )
    p.add_argument(
        "--workdir", type=Path, help="scratch folder kept after the run (default: a temp dir)"
    )
    p.add_argument(
        "--step-timeout", type=int, help="seconds per step (default: 240 quick, 1200 full)"
    )
    p.add_argument(
        "--options",
        type=json.loads,
        default={},
        help='JSON of per-step options, e.g. \'{"startup_home": "/path"}\'',
    )
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not args.worker and args.json is None:
        p.error("--json OUT.json is required")
    return args


def selected_steps(only: str, gpu: bool = False) -> list[str]:
    """The steps to run, in the default order (``gpu``: the GPU steps); unknown names raise a ValueError."""
    load_steps()
    from benchmarks.bench_gpu import GPU_STEPS

    names = [n.strip() for n in only.split(",") if n.strip()] or list(GPU_STEPS if gpu else DEFAULT_ORDER)
    for n in names:
        BENCHMARKS.get(n)  # raises ValueError listing the valid names
    if gpu and set(names) - set(GPU_STEPS):
        raise ValueError(f"--gpu runs only the GPU steps ({', '.join(GPU_STEPS)}), not {sorted(set(names) - set(GPU_STEPS))}")
    return names


def no_gpu_result(result: dict[str, Any], steps: list[str], reason: str) -> dict[str, Any]:
    """The JSON of a ``--gpu`` run on a machine without a GPU: every step skipped, saying why."""
    skipped = {"status": "skipped", "reason": reason, "rows": [], "seconds": 0.0}
    return {**result, "gpu": {"available": False, "reason": reason}, "steps": {n: dict(skipped) for n in steps},
            "total_seconds": 0.0}


def main(argv: list[str] | None = None) -> int:
    """Run the selected steps, write the JSON and (unless --no-readme) the table in docs/RESULTS.md."""
    args = parse_args(argv)
    if args.worker:
        return run_worker(
            args.worker, args.quick, args.workdir, args.worker_out, args.options, args.tiny
        )
    try:
        steps = selected_steps(args.only, args.gpu)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.gpu:
        from benchmarks.bench_gpu import no_gpu_reason

        reason = no_gpu_reason(args.options)
        if reason:
            base = {"version": 1, "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                    "quick": args.quick or args.tiny, "tiny": args.tiny, "machine": machine_info()}
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(no_gpu_result(base, steps, reason), indent=1), encoding="utf-8")
            print(f"[benchmarks] --gpu: {reason}")
            print(f"[benchmarks] wrote {args.json}")
            return 0
    tmp = None if args.workdir else tempfile.TemporaryDirectory(prefix="fr_bench_")
    workdir = args.workdir or Path(tmp.name)
    workdir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "version": 1,
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": args.quick or args.tiny,
        "tiny": args.tiny,
        "machine": machine_info(),
        "steps": {},
    }
    t0 = time.perf_counter()
    try:
        for name in steps:
            print(f"[benchmarks] {name} ...", flush=True)
            step = spawn_step(name, args, workdir)
            result["steps"][name] = step
            print(
                f"[benchmarks] {name}: {step['status']} in {step.get('seconds', 0):.1f} s",
                flush=True,
            )
    finally:
        if tmp is not None:
            tmp.cleanup()
    result["total_seconds"] = time.perf_counter() - t0
    if args.merge:
        earlier = json.loads(args.merge.read_text(encoding="utf-8"))
        kept = {n: {**s, "date": s.get("date", earlier.get("date"))}
                for n, s in earlier.get("steps", {}).items() if n not in result["steps"]}
        for step in result["steps"].values():
            step.setdefault("date", result["date"])
        result["steps"] = {**kept, **result["steps"]}
        result["merged_from"] = {"file": str(args.merge), "date": earlier.get("date"), "kept": sorted(kept)}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(f"[benchmarks] wrote {args.json}")
    if args.gpu:
        result["gpu"] = {"available": True, "device": result["machine"].get("gpu")}
        args.json.write_text(json.dumps(result, indent=1), encoding="utf-8")
        print(report.render_markdown(result))
        print(f"[benchmarks] --gpu: the table above is not written into {args.readme}")
    elif args.tiny:
        print(f"[benchmarks] --tiny: figures of toy sizes, {args.readme} is left alone")
    elif not args.no_readme:
        report.write_readme(result, args.readme)
        print(f"[benchmarks] wrote the table into {args.readme}")
    failed = [n for n, s in result["steps"].items() if s["status"] in ("error", "timeout")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
