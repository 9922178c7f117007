"""Serving the apps on loopback and driving headless Debian Chromium with Playwright.

Used by tests/test_browser.py and scripts/screenshots.py. Chromium is the system package
(``apt-get install chromium``), found as ``$CHROMIUM_PATH``, else where ``command -v chromium``
finds it; Playwright's own browser download is never used. Servers bind port 0 and the
port they chose is read back, so parallel runs never race for one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
REPO = Path(__file__).resolve().parents[1]
STREAMLIT_APP = REPO / "streamlit_app" / "app.py"


def chromium_missing_reason() -> str | None:
    """Why browser tests cannot run here, or None when they can."""
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        return f"no Chromium executable at {CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH)"
    return None


def browser_marks() -> list:
    """A browser test module's ``pytestmark``: marked ``browser``, skipped where Chromium is
    missing (under ``REQUIRE_ALL=1``, as in CI, that skip is a failure)."""
    import pytest

    reason = chromium_missing_reason()
    return [pytest.mark.browser, pytest.mark.skipif(reason is not None, reason=reason or "")]


def listening_port(proc: subprocess.Popen, timeout: float = 90.0) -> int:
    """The TCP port the server process ``proc`` (bound to port 0) listens on, once it does.

    Raises ``RuntimeError`` if the process exits, or listens on no port within ``timeout``.
    """
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            ports = {c.laddr.port for c in psutil.Process(proc.pid).net_connections(kind="tcp")
                     if c.status == psutil.CONN_LISTEN}
        except psutil.NoSuchProcess:
            break
        if ports:
            if len(ports) > 1:
                raise RuntimeError(f"server listens on several ports: {sorted(ports)}")
            return ports.pop()
        time.sleep(0.2)
    if proc.poll() is not None:
        raise RuntimeError(f"server exited with code {proc.returncode} before listening")
    raise RuntimeError(f"server listened on no port within {timeout:.0f} s")


def wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    """Poll ``url`` until it answers 200; raise with the server's output on timeout or exit."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError as exc:
            last = exc
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s (last error: {last})")


@contextlib.contextmanager
def streamlit_server(
    env: Mapping[str, str],
    log_path: Path,
    timeout: float = 90.0,
    app: Path = STREAMLIT_APP,
    app_args: Sequence[str] = (),
) -> Iterator[str]:
    """Run ``streamlit run app`` headless on loopback port 0; yield its URL (the port it chose).

    ``env`` is added to the environment (result folders, gallery); ``app_args`` go to the
    app after ``--`` (e.g. ``["--runs", DIR]``). The server's output goes
    to ``log_path``; the process group is stopped on exit.
    """
    cmd = [
        sys.executable, "-m", "streamlit", "run", str(app),
        "--server.headless", "true", "--server.port", "0",
        "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none",
    ]  # fmt: skip
    if app_args:
        cmd += ["--", *app_args]
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **env}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=full_env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            try:
                url = f"http://127.0.0.1:{listening_port(proc, timeout)}"
                wait_http(f"{url}/_stcore/health", timeout=timeout, proc=proc)
            except (RuntimeError, TimeoutError) as exc:
                raise RuntimeError(
                    f"{exc}\n--- streamlit output ---\n{log_path.read_text()}"
                ) from None
            yield url
        finally:
            _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    """Stop a server we started (its whole session), politely then firmly."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@contextlib.contextmanager
def gradio_server(demo: Any, timeout: float = 60.0) -> Iterator[str]:
    """Serve a Gradio Blocks from ``build_demo`` in this process on loopback port 0."""
    from fashion_retrieval.demo import launch_demo

    launch_demo(demo, server_name="127.0.0.1", server_port=0, prevent_thread_lock=True,
                quiet=True)  # fmt: skip
    try:
        url = demo.local_url.rstrip("/")
        wait_http(url + "/", timeout=timeout)
        yield url
    finally:
        demo.close()


@contextlib.contextmanager
def chromium_page(width: int = 1400, height: int = 1000) -> Iterator[Any]:
    """A Playwright page in headless system Chromium (no network beyond loopback)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": width, "height": height})
            page = context.new_page()
            page.set_default_timeout(60_000)
            yield page
        finally:
            browser.close()


def artifacts_dir(default: Path) -> Path:
    """Where screenshots go: ``$BROWSER_ARTIFACTS`` if set, else ``default``."""
    path = Path(os.environ.get("BROWSER_ARTIFACTS") or default)
    path.mkdir(parents=True, exist_ok=True)
    return path


def wait_streamlit_idle(page: Any, timeout_ms: int = 90_000, started_ms: int = 3_000) -> None:
    """Wait for Streamlit to finish a script run: its status widget shows, then goes away.

    After a click the run starts with a short delay, so the widget is first awaited for up
    to ``started_ms`` (a run that already ended by then is fine).
    """
    page.wait_for_selector('[data-testid="stMainBlockContainer"]', timeout=timeout_ms)
    try:
        page.wait_for_selector('[data-testid="stStatusWidget"]', timeout=started_ms)
    except Exception:  # noqa: BLE001 - playwright's TimeoutError: the run was quick
        pass
    page.wait_for_function(
        """() => !document.querySelector('[data-testid="stStatusWidget"]')
                 && !document.querySelector('[data-testid="stSkeleton"]')""",
        timeout=timeout_ms,
    )
    page.wait_for_timeout(500)  # let charts and images finish drawing


def streamlit_screenshot(page: Any, path: Path, width: int = 1440) -> None:
    """Screenshot the whole Streamlit page: its main area scrolls inside the window, so the
    window is first made as tall as the content."""
    height = page.evaluate(
        """() => Math.max(...['stMain', 'stSidebarContent', 'stMainBlockContainer'].map(
            id => document.querySelector(`[data-testid="${id}"]`)?.scrollHeight || 0))"""
    )
    page.set_viewport_size({"width": width, "height": int(min(max(height, 600), 6000))})
    page.wait_for_timeout(700)  # charts re-lay out at the new size
    page.screenshot(path=path, full_page=True)


TINY_MODELS = ("tirg", "concat", "image_only")


def make_tiny_results(root: Path, models: tuple[str, ...] = TINY_MODELS) -> dict[str, Any]:
    """Tiny but real results to show: a 12-image FashionIQ-layout catalogue, one untrained
    tiny_cnn + LSTM checkpoint per compositor (``runs/<name>/final``), each one's evaluation
    JSON computed by ``evaluate`` on the catalogue (``runs/<name>/eval.json``) and a short
    ``metrics.jsonl``. Returns the paths and the environment the dashboard needs."""
    from _demo_data import write_tiny_checkpoint, write_tiny_fashioniq

    from fashion_retrieval.checkpoints import load_model
    from fashion_retrieval.data import load_retrieval_dataset
    from fashion_retrieval.evaluation import evaluate

    data = write_tiny_fashioniq(root / "catalogue")
    dataset = load_retrieval_dataset("fashioniq", data, "val")
    runs = root / "runs"
    for i, name in enumerate(models):
        run = runs / name
        ckpt = write_tiny_checkpoint(run / "final", compositor=name)
        result = evaluate(load_model(ckpt), dataset)
        result["model"] = name
        (run / "eval.json").write_text(json.dumps(result))
        lines = [
            {"step": s, "loss": (3.0 + i) / s, "lr": 0.01 * (1 - s / 20)} for s in range(1, 11)
        ]
        lines.append({"step": 10, "eval": {"R@10": result["recall"]["R@10"]}})
        (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    env = {
        "FASHION_RETRIEVAL_RUNS": str(runs),
        "FASHION_RETRIEVAL_DATASET": "fashioniq",
        "FASHION_RETRIEVAL_DATA_ROOT": str(data),
        "FASHION_RETRIEVAL_SPLIT": "val",
        "FASHION_RETRIEVAL_HOME": str(root / "home"),
    }
    return {"runs": runs, "data": data, "dataset": dataset, "env": env, "models": list(models)}
