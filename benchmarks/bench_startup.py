"""Start-up of the demo: ``python app.py`` from an empty cache to serving, and from a warm one.

The app runs as a child process with ``$FASHION_RETRIEVAL_HOME`` pointing at a scratch
folder, on a port the OS chooses (``--port 0``, read from its "Running on local URL" line);
"serving" is the first HTTP 200 on that port. Its peak memory is sampled with psutil
over its whole process tree. The quick run skips the cold start (it is a full build of
the embedded default, minutes); it measures the warm start only where a complete cache
already exists (``--options '{"startup_home": DIR}'`` or the user's default home). The
tiny run starts cold and warm with a tiny embedded default (``TINY_SPEC``, seconds).
Each run then starts a Space assembled ``--with-default`` from that default, with an
empty home (:func:`space_row`).

Beside them, in the same run: the bare imports (``import torch, gradio`` in a fresh
process), which bound the warm start, and the bare work (one backbone pass over every
image the cold start embeds, one text-encoder pass over every distinct text it encodes),
which bounds the cold start; rows give the warm start minus the first and the cold start
over the second. The cold start's stages come from its log and ``COMPLETE.json``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from benchmarks.common import Row, SkipStep, StepContext, register

ROOT = Path(__file__).resolve().parents[1]
COLD_LIMIT_S, WARM_LIMIT_S = 150.0, 20.0
COLD_OVER_WORK, WARM_OVER_IMPORTS_S = 2.0, 3.0  # cold start / bare work; warm start - bare imports
SPACE_LIMIT_S = 60.0  # a Space with the bundled default (issue 25)
# The embedded default of --tiny: fields of DefaultSpec changed (a build of seconds).
TINY_SPEC = {
    "preset": "easy",
    "products": 24,
    "image_encoder": "tiny_cnn",
    "pretrained": False,
    "embed_dim": 32,
    "compositors": ["tirg", "image_only"],
    "crossmodal": False,
    "max_steps": 4,
    "batch_size": 8,
}
URL_LINE = re.compile(r"Running on local URL:\s+(https?://\S+)")
# The app's "[render] ...: 12.3 s", "[features] text features of ...: 45.6 s" and "[train] ...: 7.8 s" lines.
STAGE_LINE = re.compile(r"^\[(render|features|train)\] (.*): ([0-9.]+) s$", re.M)


def served_url(log: Path) -> str | None:
    """The URL from the app's "Running on local URL" line in its log, once it is there."""
    match = URL_LINE.search(log.read_text(errors="replace")) if log.exists() else None
    return match.group(1) if match else None


def _tree_rss_mb(proc) -> float:
    """Resident memory of a psutil process and its children, MiB (0 for vanished ones)."""
    import psutil

    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


def bare_imports_s() -> float:
    """Seconds of ``import torch, gradio`` in a fresh Python process (what any start pays)."""
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch, gradio"], cwd=ROOT, env=env, check=True)
    return time.perf_counter() - start


def cold_start_inputs(home: Path, spec) -> tuple[list[str], list[str]]:
    """Every image path the cold start of ``spec`` (a ``DefaultSpec``) embeds and every distinct
    text its frozen text encoder encodes (the catalogue under ``home`` is rendered if absent)."""
    from fashion_retrieval.paths import default_dir
    from fashion_retrieval.serving.default import _train_config, synthetic_catalogue
    from fashion_retrieval.training.trainer import (
        build_examples,
        frozen_text_inputs,
        generated_examples,
        load_split,
    )

    root, texts = default_dir(home), set()
    for model in spec.models() if spec.freeze_text_encoder else []:
        config = _train_config(root, spec, *model)
        train_set = load_split(config, config.train_split)
        examples = build_examples(train_set, config.task) + generated_examples(train_set, config)
        texts.update(frozen_text_inputs(examples, load_split(config, config.eval_split), config))
    paths = {it.path: None for split in ("train", spec.gallery_split)
             for it in synthetic_catalogue(root, spec, split).items}
    return list(paths), sorted(texts)


def bare_work_s(home: Path, spec) -> tuple[float, dict]:
    """Seconds of one backbone pass (``image_features``: the default's encoder at its image
    size, with its colour and mid-grid features) over every image the cold start embeds,
    plus one text-encoder pass over every distinct text it encodes; and the parts."""
    import torch

    from fashion_retrieval.models.embedding import embed_images
    from fashion_retrieval.paths import default_dir
    from fashion_retrieval.serving.default import _train_config
    from fashion_retrieval.training.trainer import build_model

    paths, texts = cold_start_inputs(home, spec)
    model = build_model(_train_config(default_dir(home), spec, *spec.models()[0]), texts).eval()
    start = time.perf_counter()
    embed_images(model, paths, batch_size=64, target=False)
    image_s = time.perf_counter() - start
    by_length = sorted(texts, key=len)
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(by_length), 128):
            model.text_encoder(by_length[i : i + 128])
    text_s = time.perf_counter() - start
    return image_s + text_s, {"images": len(paths), "texts": len(texts), "image_s": image_s, "text_s": text_s}


def cold_stages(log: Path, home: Path) -> dict[str, float]:
    """Seconds of the cold start's stages: its log's render and feature lines, summed by
    kind, then the build timings in its ``COMPLETE.json`` (the training stage's wall time,
    indexing, total); without a training time there, the models' training lines summed."""
    from fashion_retrieval.paths import default_dir

    stages: dict[str, float] = {}
    for kind, what, seconds in STAGE_LINE.findall(log.read_text(errors="replace") if log.exists() else ""):
        name = {"render": "render_s", "train": "training_s"}.get(kind) or what.split(" of ")[0].replace(" ", "_") + "_s"
        stages[name] = stages.get(name, 0.0) + float(seconds)
    try:
        marker = json.loads((default_dir(home) / "COMPLETE.json").read_text())
    except (OSError, ValueError):
        marker = {}
    timings = marker.get("timings", {})
    if "training_s" in timings:  # the wall time of the training stage (models trained side by side)
        stages["training_s"] = timings["training_s"]
    stages["indexing_s"] = sum(v for k, v in timings.items() if k.endswith("_index_s"))
    stages["total_build_s"] = timings.get("total_s", 0.0)
    return stages


def time_to_serving(
    home: Path, timeout_s: float, log: Path, spec: dict | None = None, space: Path | None = None
) -> tuple[float, float]:
    """Seconds from launching ``python app.py`` until its port answers 200, and peak RSS (MiB).

    ``spec``: fields of the embedded default to change (None: the product default).
    ``space``: start that assembled Space folder's app.py instead (settings in its environment).
    Raises ``RuntimeError`` (with the end of the app's log) when it exits or times out first.
    """
    import psutil

    env = {
        **os.environ,
        "FASHION_RETRIEVAL_HOME": str(home),
        "HF_HUB_OFFLINE": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "PYTHONUNBUFFERED": "1",  # the URL line reaches the log at once
    }
    for key in ("GRADIO_SERVER_PORT", "FASHION_RETRIEVAL_DEFAULT_SPEC"):
        env.pop(key, None)
    cmd = [sys.executable, "app.py", "--port", "0"]
    if spec is not None:
        cmd += ["--default-spec", json.dumps(spec)]
    if space is not None:  # the Space's app.py takes no options: the same ones as variables
        cmd = cmd[:2]
        env.update(GRADIO_SERVER_PORT="0", PYTHONPATH=str(space))
        env.update({"FASHION_RETRIEVAL_DEFAULT_SPEC": json.dumps(spec)} if spec is not None else {})
    with log.open("w") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd,
            cwd=space or ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    ps, peak = psutil.Process(proc.pid), 0.0
    try:
        while True:
            elapsed = time.perf_counter() - t0
            peak = max(peak, _tree_rss_mb(ps))
            if proc.poll() is not None or elapsed > timeout_s:
                why = (
                    f"exited with code {proc.returncode}"
                    if proc.poll() is not None
                    else f"not serving after {timeout_s:.0f} s"
                )
                tail = log.read_text(errors="replace")[-600:]
                raise RuntimeError(f"python app.py {why}; log ends: {tail}")
            url = served_url(log)
            try:
                if url is not None:
                    with urllib.request.urlopen(url, timeout=2) as r:
                        if r.status == 200:
                            return time.perf_counter() - t0, peak
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.25)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def warm_home(ctx: StepContext) -> Path | None:
    """A home with a complete embedded default for the quick run's warm start, if any."""
    from fashion_retrieval.paths import fashion_home
    from fashion_retrieval.serving.default import is_complete

    home = Path(ctx.options.get("startup_home") or fashion_home())
    return home if is_complete(home) else None


def _row(kind: str, seconds: float, limit: float, peak: float, note: str) -> Row:
    return Row(
        figure="start-up",
        measure=f"`python app.py` to serving, {kind} cache",
        value=seconds,
        unit="s",
        baseline_name="—",
        target=f"< {limit:.0f} s",
        passed=seconds < limit,
        notes=f"peak RSS of the app {peak:,.0f} MiB; {note}",
        extra={"seconds": seconds, "peak_rss_mb": peak},
    )


def space_row(ctx: StepContext, build_home: Path, spec: dict | None = None) -> Row:
    """A Space assembled ``--with-default`` from ``build_home``'s default, started with an
    empty home and no network: seconds to serving (it installs the bundle, trains nothing)."""
    from fashion_retrieval.demo.space import assemble_space, bundle_default, folder_bytes
    from fashion_retrieval.serving.default import DefaultSpec

    folder = assemble_space(ctx.workdir / "space")
    spec_obj = DefaultSpec.from_overrides(json.dumps(spec) if spec else None)
    bundle_default(folder, build_home, spec_obj, log=lambda _: None)
    log = ctx.workdir / "app_space.log"
    seconds, peak = time_to_serving(ctx.workdir / "space_home", 5 * SPACE_LIMIT_S, log, spec, folder)
    size = folder_bytes(folder / "default") / 1e6
    return Row(
        figure="start-up", measure="Space with the bundled default to serving, empty home",
        value=seconds, unit="s", baseline_name="—", target=f"< {SPACE_LIMIT_S:.0f} s",
        passed=seconds < SPACE_LIMIT_S, notes=f"peak RSS of the app {peak:,.0f} MiB; bundle {size:.0f} MB",
        extra={"seconds": seconds, "peak_rss_mb": peak, "bundle_mb": size},
    )


def _stage_notes(stages: dict[str, float]) -> str:
    return "stages: " + ", ".join(f"{k.removesuffix('_s').replace('_', ' ')} {v:.0f} s" for k, v in stages.items())


def bound_rows(warm: float, imports: float, cold: float | None = None, work: tuple | None = None) -> list[Row]:
    """The rows of what bounds each start: bare imports and warm minus them; with ``cold``
    and ``work`` (``bare_work_s``'s answer), the bare work and the cold start over it."""
    over = warm - imports
    rows = [
        Row(figure="start-up", measure="bare imports: `import torch, gradio` in a fresh process",
            value=imports, unit="s", baseline_name="—", notes="what every start pays",
            extra={"seconds": imports}),
        Row(figure="start-up", measure="warm start minus bare imports", value=over, unit="s",
            baseline_name="bare imports", baseline=imports, target=f"<= {WARM_OVER_IMPORTS_S:.0f} s",
            passed=over <= WARM_OVER_IMPORTS_S, notes="loading the models, indexes and the page",
            extra={"seconds": over}),
    ]
    if cold is None or work is None:
        return rows
    seconds, parts = work
    ratio = cold / seconds
    return [
        Row(figure="start-up", measure="bare work: one backbone pass over every image, one text-encoder "
            "pass over every distinct text", value=seconds, unit="s", baseline_name="—",
            notes=f"{parts['images']} images in {parts['image_s']:.0f} s, {parts['texts']} texts in "
                  f"{parts['text_s']:.0f} s", extra={"seconds": seconds, **parts}),
        Row(figure="start-up", measure="cold start / bare work", value=ratio, unit="x",
            baseline_name=f"bare work {seconds:.1f} s", target=f"<= {COLD_OVER_WORK:.0f}x",
            passed=ratio <= COLD_OVER_WORK, notes="rendering, training and indexing beyond the bare work",
            extra={"ratio": ratio}),
        *rows,
    ]


@register("startup")
def bench_startup(ctx: StepContext) -> list[Row]:
    """Cold (full run) and warm start-up of the Gradio demo."""
    rows = []
    if ctx.tiny:
        home, note = ctx.workdir / "tiny_home", "tiny embedded default (--tiny)"
        from fashion_retrieval.serving.default import DefaultSpec

        cold, peak = time_to_serving(home, 120, ctx.workdir / "app_cold.log", TINY_SPEC)
        stages = cold_stages(ctx.workdir / "app_cold.log", home)
        rows.append(_row("empty", cold, COLD_LIMIT_S, peak, f"{note}, first start; {_stage_notes(stages)}"))
        rows[-1].extra["stages"] = stages
        warm, peak = time_to_serving(home, 60, ctx.workdir / "app_warm.log", TINY_SPEC)
        rows.append(_row("warm", warm, WARM_LIMIT_S, peak, f"{note}, same cache"))
        work = bare_work_s(home, DefaultSpec.from_overrides(json.dumps(TINY_SPEC)))
        rows += bound_rows(warm, bare_imports_s(), cold, work)
        rows.append(space_row(ctx, home, TINY_SPEC))
        return rows
    if ctx.quick:
        home = warm_home(ctx)
        if home is None:
            raise SkipStep(
                "quick run: cold start skipped (a full build, minutes) and no complete "
                "cache found for a warm start; run the full benchmark"
            )
        seconds, peak = time_to_serving(home, 60, ctx.workdir / "app_warm.log")
        rows.append(
            _row(
                "warm", seconds, WARM_LIMIT_S, peak, "existing cache; cold start skipped in --quick"
            )
        )
        rows += bound_rows(seconds, bare_imports_s())
        rows.append(space_row(ctx, home))
        return rows
    home = ctx.workdir / "home"
    from fashion_retrieval.serving.default import DefaultSpec

    cold, peak = time_to_serving(home, 4 * COLD_LIMIT_S, ctx.workdir / "app_cold.log")
    stages = cold_stages(ctx.workdir / "app_cold.log", home)
    rows.append(_row("empty", cold, COLD_LIMIT_S, peak, _stage_notes(stages)))
    rows[-1].extra["stages"] = stages
    warm, peak = time_to_serving(home, 5 * WARM_LIMIT_S, ctx.workdir / "app_warm.log")
    rows.append(_row("warm", warm, WARM_LIMIT_S, peak, "same cache, second start"))
    rows += bound_rows(warm, bare_imports_s(), cold, bare_work_s(home, DefaultSpec()))
    rows.append(space_row(ctx, home))
    ctx.analysis.append(
        "start-up: the warm start is bound by imports (torch and gradio, then timm and torchvision "
        "for the backbone) and loading the models and indexes; the cold start by the bare work "
        "(MiniLM over every distinct text, the backbone over every image), then training (the "
        "models two at a time) and rendering."
    )
    return rows
