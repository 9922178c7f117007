"""Start-up of the demo: ``python app.py`` from an empty cache to serving, and from a warm one.

The app runs as a child process with ``$FASHION_RETRIEVAL_HOME`` pointing at a scratch
folder, on a port the OS chooses (``--port 0``, read from its "Running on local URL" line);
"serving" is the first HTTP 200 on that port. Its peak memory is sampled with psutil
over its whole process tree. The quick run skips the cold start (it is a full build of
the embedded default, minutes); it measures the warm start only where a complete cache
already exists (``--options '{"startup_home": DIR}'`` or the user's default home). The
tiny run starts cold and warm with a tiny embedded default (``TINY_SPEC``, seconds).
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
COLD_LIMIT_S, WARM_LIMIT_S = 300.0, 20.0
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


def time_to_serving(
    home: Path, timeout_s: float, log: Path, spec: dict | None = None
) -> tuple[float, float]:
    """Seconds from launching ``python app.py`` until its port answers 200, and peak RSS (MiB).

    ``spec``: fields of the embedded default to change (None: the product default).
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
    with log.open("w") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
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


@register("startup")
def bench_startup(ctx: StepContext) -> list[Row]:
    """Cold (full run) and warm start-up of the Gradio demo."""
    rows = []
    if ctx.tiny:
        home, note = ctx.workdir / "tiny_home", "tiny embedded default (--tiny)"
        seconds, peak = time_to_serving(home, 120, ctx.workdir / "app_cold.log", TINY_SPEC)
        rows.append(_row("empty", seconds, COLD_LIMIT_S, peak, f"{note}, first start"))
        seconds, peak = time_to_serving(home, 60, ctx.workdir / "app_warm.log", TINY_SPEC)
        rows.append(_row("warm", seconds, WARM_LIMIT_S, peak, f"{note}, same cache"))
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
        return rows
    home = ctx.workdir / "home"
    seconds, peak = time_to_serving(home, 2 * COLD_LIMIT_S, ctx.workdir / "app_cold.log")
    rows.append(
        _row("empty", seconds, COLD_LIMIT_S, peak, "renders the catalogue, trains, indexes")
    )
    seconds, peak = time_to_serving(home, 5 * WARM_LIMIT_S, ctx.workdir / "app_warm.log")
    rows.append(_row("warm", seconds, WARM_LIMIT_S, peak, "same cache, second start"))
    ctx.analysis.append(
        "start-up: the warm start is bound by imports (torch, gradio) and loading the models "
        "and indexes; the cold start by rendering the catalogue and training the default models."
    )
    return rows
