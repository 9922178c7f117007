"""A plain folder of photos in a real browser: ``python app.py --gallery DIR`` on 200 generated
photos (nested folders, JPEG/PNG/WebP, no captions, one unreadable file), then an image to
image search that starts from a catalogue pick. Nothing is uploaded.

Headless Debian Chromium driven by Playwright (see ``browser_utils``); tiny untrained
checkpoints, so the page's answer is checked against the library's own search.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _demo_data import write_tiny_checkpoint
from _photo_data import write_folder
from browser_utils import (
    REPO,
    artifacts_dir,
    browser_marks,
    chromium_page,
    listening_port,
    wait_http,
)
from playwright.sync_api import expect

pytestmark = browser_marks()

PHOTOS = 200
K = 8  # the demo's default number of results per model


@contextlib.contextmanager
def app_server(args: list[str], env: dict[str, str], log_path: Path) -> Iterator[str]:
    """Run ``python app.py ARGS --port 0`` on loopback; yield its URL; stop it on exit."""
    cmd = [sys.executable, "app.py", *args, "--host", "127.0.0.1", "--port", "0"]
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", **env}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
        try:
            try:
                url = f"http://127.0.0.1:{listening_port(proc, timeout=240)}"
                wait_http(url + "/", timeout=60, proc=proc)
            except (RuntimeError, TimeoutError) as exc:
                raise RuntimeError(f"{exc}\n--- app output ---\n{log_path.read_text()}") from None
            yield url
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)


def test_app_searches_a_photo_folder_from_a_catalogue_pick(tmp_path):
    from fashion_retrieval.checkpoints import load_model
    from fashion_retrieval.search.retriever import Retriever
    from fashion_retrieval.serving.photos import scan_photo_folder

    shop = tmp_path / "shop_photos"
    write_folder(shop, PHOTOS)
    (shop / "tops" / "broken.jpg").write_text("not a picture")  # skipped, listed once
    ckpts = [write_tiny_checkpoint(tmp_path / "models" / name, name) for name in ("image_only", "tirg")]
    args = [a for c in ckpts for a in ("--checkpoint", str(c))] + ["--gallery", str(shop)]
    env = {"FASHION_RETRIEVAL_HOME": str(tmp_path / "home")}
    artifacts = artifacts_dir(tmp_path / "artifacts")
    log = tmp_path / "app.log"
    with app_server(args, env, log) as url, chromium_page() as page:
        page.goto(url)
        # The Compose tab's catalogue: click a photo to make it the picture; no words, so
        # each chosen model runs an image to image search.
        picker = page.locator(".block:visible", has_text="Catalogue: click an image")
        thumbs = picker.locator("button.thumbnail-item")
        expect(thumbs.first).to_be_visible()
        picked_id = thumbs.nth(3).locator(".caption-label").inner_text()
        thumbs.nth(3).click()
        expect(page.get_by_label("What should change?")).to_have_value("")
        page.wait_for_function(  # the picture box shows the pick
            "() => [...document.querySelectorAll('img')].some(i => i.closest('[data-testid=\"image\"]'))"
        )
        page.locator("button:visible", has_text=re.compile(r"^\s*Search\s*$")).click()
        shown = {}
        for name in ("image_only", "tirg"):
            scope = page.locator(f'.fr-results .block:visible:has(label:text-is("{name}"))')
            labels = scope.locator("button.thumbnail-item .caption-label")
            expect(labels).to_have_count(K)
            shown[name] = labels
        page.wait_for_timeout(800)  # the galleries fade in
        shown = {name: labels.all_inner_texts() for name, labels in shown.items()}
        page.screenshot(path=artifacts / "demo_photos_image_to_image.png", full_page=True)
        # The Image to image tab has its own catalogue picker: pick another photo there.
        page.get_by_role("tab", name="Image to image").click()
        tab_picker = page.locator(".block:visible", has_text="Catalogue: click an image")
        tab_thumbs = tab_picker.locator("button.thumbnail-item")
        expect(tab_thumbs.first).to_be_visible()
        tab_picked_id = tab_thumbs.nth(5).locator(".caption-label").inner_text()
        tab_thumbs.nth(5).click()
        page.wait_for_timeout(300)
        page.locator("button:visible", has_text=re.compile(r"^\s*Search\s*$")).click()
        tab_labels = page.locator('.block:visible:has(label:text-is("Results")) button.thumbnail-item .caption-label')
        expect(tab_labels).to_have_count(K)
        page.wait_for_timeout(500)
        tab_shown = tab_labels.all_inner_texts()
        page.screenshot(path=artifacts / "demo_photos_image_tab.png", full_page=True)
    scan = scan_photo_folder(shop)
    assert len(scan.items) == PHOTOS and [p for p, _ in scan.unreadable] == ["tops/broken.jpg"]
    assert picked_id in {it.id for it in scan.items}
    # The page's answer is the library's: the picked photo's nearest neighbours, itself left out.
    picked = next(it for it in scan.items if it.id == picked_id)
    for ckpt in ckpts:
        retriever = Retriever(load_model(str(ckpt)), scan.items)
        want = retriever.search(image=picked.path, k=K, exclude_ids=[picked_id])
        got = shown[ckpt.name]
        assert [s.split(" · ")[-1] for s in got] == [h.id for h in want]
        scores = [float(s.split(" · ")[1]) for s in got]
        assert scores == pytest.approx([h.score for h in want], abs=2e-3)
    tab_picked = next(it for it in scan.items if it.id == tab_picked_id)  # the tab's model: image_only
    want = Retriever(load_model(str(ckpts[0])), scan.items).search(image=tab_picked.path, k=K,
                                                                    exclude_ids=[tab_picked_id])
    assert [s.split(" · ")[-1] for s in tab_shown] == [h.id for h in want]
    # The unreadable file was named once; each model's index of the folder persists, whole.
    text = log.read_text()
    assert text.count("broken.jpg") == 1, text
    for ckpt in ckpts:
        (meta,) = (ckpt / "index").glob("*/gallery.json")
        assert json.loads(meta.read_text())["ids"] == [it.id for it in scan.items]


@pytest.mark.slow
def test_dashboard_searches_the_same_photo_folder(tmp_path):
    from browser_utils import streamlit_screenshot, streamlit_server, wait_streamlit_idle

    from fashion_retrieval.checkpoints import load_model
    from fashion_retrieval.search.retriever import Retriever
    from fashion_retrieval.serving.photos import scan_photo_folder

    shop = tmp_path / "shop_photos"
    write_folder(shop, PHOTOS)
    runs = tmp_path / "runs"
    ckpts = [write_tiny_checkpoint(runs / name / "final", name) for name in ("image_only", "tirg")]
    scan = scan_photo_folder(shop)
    picked = scan.items[17]
    args = ["--runs", str(runs), "--dataset", "photos", "--data-root", str(shop)]
    env = {"FASHION_RETRIEVAL_HOME": str(tmp_path / "home")}
    with streamlit_server(env, tmp_path / "streamlit.log", app_args=args) as url, chromium_page() as page:
        page.goto(url)
        wait_streamlit_idle(page)
        page.get_by_text("Query browser", exact=True).click()
        wait_streamlit_idle(page)
        page.get_by_text("Make one", exact=True).click()
        wait_streamlit_idle(page)
        box = page.get_by_label("Catalogue image (optional)")  # the dashboard's catalogue pick
        box.click()
        page.keyboard.type(picked.id)
        page.keyboard.press("Enter")
        wait_streamlit_idle(page)
        images = page.locator('[data-testid="stImage"]')
        expect(images).to_have_count(1 + 5 * len(ckpts))  # the query, then top 5 per model
        streamlit_screenshot(page, artifacts_dir(tmp_path / "artifacts") / "dashboard_photos.png")
        assert not page.locator('[data-testid="stException"]').count()
        shown = page.inner_text('[data-testid="stMain"]')
    for ckpt in ckpts:
        want = Retriever(load_model(str(ckpt)), scan.items).search(
            image=picked.path, k=5, exclude_ids=[picked.id]
        )
        assert all(f"{h.rank}. {h.id} · {h.score:.3f}" in shown for h in want), shown
