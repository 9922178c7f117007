"""Both apps in a real browser: headless Debian Chromium driven by Playwright.

The Gradio demo and the Streamlit dashboard are served on loopback with tiny checkpoints;
each test performs a search through the page and checks what it shows. Screenshots are
saved under ``$BROWSER_ARTIFACTS`` (default: the test's tmp_path/artifacts).
"""

from __future__ import annotations

import re

import pytest
from browser_utils import (
    artifacts_dir,
    chromium_missing_reason,
    chromium_page,
    gradio_server,
    make_tiny_results,
    streamlit_server,
    wait_streamlit_idle,
)

REASON = chromium_missing_reason()
pytestmark = [pytest.mark.browser, pytest.mark.skipif(REASON is not None, reason=REASON or "")]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Tiny checkpoints, their evaluation JSONs and logs, and the catalogue they rank."""
    return make_tiny_results(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def artifacts(tmp_path):
    """Folder for screenshots (kept by CI when $BROWSER_ARTIFACTS is set)."""
    return artifacts_dir(tmp_path / "artifacts")


def _catalogue_captions(tiny) -> set[str]:
    return {it.caption for it in tiny["dataset"].items}


def test_gradio_demo_search_in_browser(tiny, artifacts, monkeypatch):
    from fashion_retrieval.demo import build_demo
    from fashion_retrieval.retriever import Retriever

    monkeypatch.setenv("FASHION_RETRIEVAL_HOME", tiny["env"]["FASHION_RETRIEVAL_HOME"])
    items = tiny["dataset"].items
    models = {n: Retriever(_load(tiny, n), items) for n in tiny["models"]}
    demo = build_demo(models, dataset=tiny["dataset"], default_k=4)
    with gradio_server(demo) as url, chromium_page() as page:
        page.goto(url)
        # Text to image: type a description, press Search, read the result gallery.
        page.get_by_role("tab", name="Text to image").click()
        page.get_by_label("Describe the garment").fill("red striped dress")
        page.locator("button:visible", has_text=re.compile(r"^\s*Search\s*$")).click()
        thumbs = page.locator(".gallery-item:visible, .thumbnail-item:visible")
        thumbs.first.wait_for()
        page.screenshot(path=artifacts / "demo_text.png", full_page=True)
        assert thumbs.count() == 4
        shown = page.inner_text("body")
        assert sum(cap in shown for cap in _catalogue_captions(tiny)) >= 4
        # Compose: pick a catalogue query from the examples, search, every model answers.
        page.get_by_role("tab", name="Compose").click()
        page.get_by_label("What should change?").fill("is blue")
        page.locator(".fr-results").wait_for(state="attached")
        page.locator("button:visible", has_text=re.compile(r"^\s*Search\s*$")).click()
        page.wait_for_function("() => document.querySelector('.fr-status')?.innerText.trim()")
        status = page.inner_text(".fr-status")
        page.screenshot(path=artifacts / "demo_compose.png", full_page=True)
        assert "⚠" in status or all(n in status for n in ("tirg", "concat"))


def _load(tiny, name):
    from fashion_retrieval.hub import load_model

    return load_model(tiny["runs"] / name / "final")


def test_streamlit_dashboard_in_browser(tiny, artifacts, tmp_path):
    with streamlit_server(tiny["env"], tmp_path / "streamlit.log") as url, chromium_page() as page:
        page.goto(url)
        wait_streamlit_idle(page)
        table = page.locator('[data-testid="stTable"]')
        table.wait_for()
        rows = table.locator("tbody tr").all_inner_texts()
        assert sorted(r.split()[0] for r in rows) == sorted(tiny["models"])
        assert page.locator('[data-testid="stVegaLiteChart"]').count() >= 1
        page.screenshot(path=artifacts / "dashboard_recall.png", full_page=True)
        # Query browser: make a query by typing, every model shows its top-K images.
        page.get_by_text("Query browser", exact=True).click()
        wait_streamlit_idle(page)
        page.get_by_text("Make one", exact=True).click()
        wait_streamlit_idle(page)
        box = page.get_by_label("Change to make (or words to search)")
        box.fill("green solid dress")
        box.press("Enter")
        wait_streamlit_idle(page)
        images = page.locator('[data-testid="stImage"]')
        images.first.wait_for()
        page.screenshot(path=artifacts / "dashboard_query.png", full_page=True)
        assert not page.locator('[data-testid="stException"]').count()
        assert images.count() == 5 * len(tiny["models"])  # top 5 per model, no query image
        shown = page.inner_text('[data-testid="stMain"]')
        assert all(name in shown for name in tiny["models"])
        assert sum(cap in shown for cap in _catalogue_captions(tiny)) >= 5
