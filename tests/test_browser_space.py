"""The Space assembled ``--with-default``, started as on Hugging Face: an empty
``$FASHION_RETRIEVAL_HOME``, no network. It installs the bundled default, serves without
training or embedding anything, and answers a search in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

from browser_utils import browser_marks, chromium_page
from playwright.sync_api import expect

from benchmarks.bench_startup import TINY_SPEC, served_url
from fashion_retrieval.demo import space
from fashion_retrieval.serving.default import DefaultSpec, default_catalogue

pytestmark = browser_marks()


def _wait_for_url(proc: subprocess.Popen, log) -> str:
    """The app's "Running on local URL" once it prints it (fails at once if the app exits)."""
    deadline = time.monotonic() + 300  # a guard against a hang, not a measurement
    while time.monotonic() < deadline:
        url = served_url(log)
        if url:
            return url
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    raise AssertionError(f"the Space did not serve (exit code {proc.poll()}):\n{log.read_text()[-4000:]}")


def test_space_with_bundled_default_serves_from_an_empty_home(tmp_path):
    spec_json = json.dumps(TINY_SPEC)
    folder = space.main(["--out", str(tmp_path / "space"), "--with-default", "--dry-run",
                         "--home", str(tmp_path / "build-home"), "--default-spec", spec_json])
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **os.environ,
        "FASHION_RETRIEVAL_HOME": str(home),
        "FASHION_RETRIEVAL_DEFAULT_SPEC": spec_json,
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": "0",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONPATH": str(folder),  # the Space's own copy of the package
    }
    log = tmp_path / "space.log"
    with log.open("wb") as out:  # a file, not a pipe: the server never blocks on output
        proc = subprocess.Popen([sys.executable, "app.py"], cwd=folder, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = _wait_for_url(proc, log)
        with chromium_page() as page:
            page.goto(url)
            page.get_by_role("tab", name="Text to image").click()
            page.get_by_label("Describe the garment").fill("red dress")
            page.locator("button:visible", has_text=re.compile(r"^\s*Search\s*$")).click()
            labels = page.locator(".block:visible button.thumbnail-item .caption-label")
            expect(labels.first).to_be_visible()
            captions = [c.split(" · ")[-1] for c in labels.all_inner_texts()]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    spec = DefaultSpec.from_overrides(spec_json)
    gallery = default_catalogue(home, spec).items
    assert captions and set(captions) <= {it.caption for it in gallery}
    text = log.read_text()
    assert "[space] installed the bundled default" in text
    assert "[default] building" not in text and "training" not in text, text[-4000:]
    # the home holds the served default and nothing of a build: no feature cache, no
    # optimizer state, no training images
    default = home / "default"
    assert not (default / "features").exists() and not list(default.rglob("state"))
    assert len(list((default / "data").rglob("*.jpg"))) == len(gallery)
