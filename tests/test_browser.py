"""Both apps in a real browser: headless Debian Chromium driven by Playwright.

The Gradio demo and the Streamlit dashboard are served on loopback with tiny checkpoints;
each test performs a search through the page and checks what it shows. Screenshots are
saved under ``$BROWSER_ARTIFACTS`` (default: the test's tmp_path/artifacts).
"""

from __future__ import annotations

import re

import pytest
from _shopper_reports import comparison_report, write_json
from browser_utils import (
    artifacts_dir,
    browser_marks,
    chromium_page,
    gradio_server,
    make_tiny_results,
    streamlit_screenshot,
    streamlit_server,
    wait_streamlit_idle,
)
from playwright.sync_api import expect

pytestmark = browser_marks()


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
    from fashion_retrieval.search.retriever import Retriever

    monkeypatch.setenv("FASHION_RETRIEVAL_HOME", tiny["env"]["FASHION_RETRIEVAL_HOME"])
    items = tiny["dataset"].items
    models = {n: Retriever(_load(tiny, n), items) for n in tiny["models"]}
    demo = build_demo(models, dataset=tiny["dataset"], default_k=4)
    with gradio_server(demo) as url, chromium_page() as page:
        page.goto(url)
        # Text to image: type a description, press Search, read the result gallery.
        page.get_by_role("tab", name="Text to image").click()
        page.get_by_label("Describe the garment").fill("red striped dress")
        _click_search(page)
        captions = _gallery_captions(page, ".block:visible", 4)
        page.screenshot(path=artifacts / "demo_text.png", full_page=True)
        expected = models["tirg"].search(text="red striped dress", k=4)
        assert [c.split(" · ")[-1] for c in captions] == [h.caption for h in expected]
        scores = [float(c.split(" · ")[1]) for c in captions]
        assert scores == sorted(scores, reverse=True)
        # Compose: click a catalogue query with a known target; each chosen model answers.
        page.get_by_role("tab", name="Compose").click()
        triplet = tiny["dataset"].triplets[0]
        page.locator("tr.tr-body", has_text=triplet.text).first.click()
        expect(page.get_by_label("What should change?")).to_have_value(triplet.text)
        _click_search(page)
        page.wait_for_function(
            "() => document.querySelector('.fr-status')?.innerText.includes('Known target')"
        )
        for name in ("tirg", "image_only"):  # the demo's default models among ours
            _gallery_captions(page, f'.fr-results .block:visible:has(label:text-is("{name}"))', 4)
        status = page.inner_text(".fr-status")
        page.screenshot(path=artifacts / "demo_compose.png", full_page=True)
        assert "tirg" in status and "image_only" in status


def _click_search(page) -> None:
    page.locator("button:visible", has_text=re.compile(r"^\s*Search\s*$")).click()


def _gallery_captions(page, scope: str, k: int) -> list[str]:
    """Wait until the gallery in ``scope`` shows ``k`` thumbnails; return their captions."""
    labels = page.locator(f"{scope} button.thumbnail-item .caption-label")
    expect(labels).to_have_count(k)
    page.wait_for_timeout(800)  # the gallery fades in
    return labels.all_inner_texts()


def _load(tiny, name):
    from fashion_retrieval.checkpoints import load_model

    return load_model(tiny["runs"] / name / "final")


@pytest.mark.slow
def test_streamlit_dashboard_in_browser(tiny, artifacts, tmp_path):
    env = {k: v for k, v in tiny["env"].items() if k != "FASHION_RETRIEVAL_RUNS"}
    write_json(tiny["runs"] / "comparison.json", comparison_report())  # found: the shopper view
    args = ["--runs", str(tiny["runs"])]  # as in `streamlit run streamlit_app/app.py -- --runs`
    server = streamlit_server(env, tmp_path / "streamlit.log", app_args=args)
    with server as url, chromium_page() as page:
        page.goto(url)
        wait_streamlit_idle(page)
        table = page.locator('[data-testid="stTable"]').first
        table.wait_for()
        rows = table.locator("tbody tr").all_inner_texts()
        assert sorted(r.split()[0] for r in rows) == sorted(tiny["models"])
        assert page.locator('[data-testid="stVegaLiteChart"]').count() >= 1
        streamlit_screenshot(page, artifacts / "dashboard_recall.png")
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
        streamlit_screenshot(page, artifacts / "dashboard_query.png")
        assert not page.locator('[data-testid="stException"]').count()
        assert images.count() == 5 * len(tiny["models"])  # top 5 per model, no query image
        shown = page.inner_text('[data-testid="stMain"]')
        assert all(name in shown for name in tiny["models"])
        assert sum(cap in shown for cap in _catalogue_captions(tiny)) >= 5
        # Shopper view: offered because the folder holds a comparison report.
        page.get_by_text("Shopper view", exact=True).click()
        wait_streamlit_idle(page)
        expect(page.get_by_role("heading", name="Shopper view: composition control")).to_be_visible()
        tables = page.locator('[data-testid="stTable"]')
        expect(tables).to_have_count(3)  # one gallery, control, phrasing
        assert tables.nth(0).locator("tbody tr").all_inner_texts()[0].split()[:2] == ["tirg", "16.7"]
        assert page.locator('[data-testid="stVegaLiteChart"]').count() == 1  # control vs ceiling
        shown = page.inner_text('[data-testid="stMain"]')
        assert "Composition control" in shown and "Held-out phrasing" in shown
        assert not page.locator('[data-testid="stException"]').count()
        streamlit_screenshot(page, artifacts / "dashboard_shopper.png")
