"""Refinement in a real browser: a Compose search over a plain photo folder, three turns of
"refine from this" (results of either model), back one step through the strip, then a page
reload that finds the session again on the server.

Headless Debian Chromium driven by Playwright (see ``browser_utils``); tiny untrained
checkpoints, so every step the page shows is checked against the library's own session search
(``Retriever.search_session``: the picture with the requests so far, what that model showed
and the pictures picked left out). Every wait is on the page's elements, none on a clock.
"""

from __future__ import annotations

import re

import pytest
from _demo_data import tiny_model
from _photo_data import write_folder
from browser_utils import artifacts_dir, browser_marks, chromium_page, gradio_server
from playwright.sync_api import expect

pytestmark = browser_marks()

K = 4
WAIT = 60_000  # ms: the longest any element is waited for (a loaded 2-core machine)
NAMES = ("tirg", "image_only")
WORDS = ["is red", "is striped", "is blue", "is green"]  # the search's, then three refinements
PICKS = [("tirg", 1), ("image_only", 0), ("tirg", 2)]  # which result each refinement starts from


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """A photo folder (no captions) and a tiny model per compositor over it."""
    from fashion_retrieval.search.retriever import Retriever
    from fashion_retrieval.serving.catalogue import open_catalogue

    root = tmp_path_factory.mktemp("refine") / "shop"
    write_folder(root, 60)
    catalogue = open_catalogue(root, log=lambda _: None)
    return catalogue, {n: Retriever(tiny_model(n, seed=i), catalogue.items) for i, n in enumerate(NAMES)}


class Expected:
    """The library's answer to each step, from the pictures the shopper picked."""

    def __init__(self, catalogue, models):
        self.catalogue, self.models = catalogue, models
        self.steps: list[dict[str, list[str]]] = []
        self.pictures: list[str] = []
        self.shown = {n: set() for n in models}

    def step(self, picture: str) -> dict[str, list[str]]:
        from fashion_retrieval.search.retriever import CatalogueImage

        self.pictures.append(picture)
        requests = WORDS[: len(self.pictures)]
        image = CatalogueImage(picture, self.catalogue.by_id[picture].path)
        ids = {n: [h.id for h in m.search_session(image, requests, K, policy="history",
                                                  exclude_ids=self.shown[n] | set(self.pictures))]
               for n, m in self.models.items()}
        for n in ids:
            self.shown[n] |= set(ids[n])
        self.steps.append(ids)
        return ids


def _results(page, name):
    return page.locator(f'.fr-results .block:visible:has(label:text-is("{name}")) button.thumbnail-item')


def _expect_step(page, ids: dict[str, list[str]], strip: list[str]) -> None:
    """Wait until the strip shows ``strip`` and each model's gallery shows ``ids`` in order."""
    expect(page.locator(".fr-strip button.thumbnail-item .caption-label")).to_have_text(strip, timeout=WAIT)
    expect(page.locator(".block.fr-status")).to_contain_text(f"Step {len(strip)} of this session", timeout=WAIT)
    for name, want in ids.items():
        labels = _results(page, name).locator(".caption-label")
        expect(labels).to_have_text([re.compile(rf"^#{r} · -?[0-9.]+ · {re.escape(i)}$")
                                     for r, i in enumerate(want, 1)], timeout=WAIT)


def _strip(n: int) -> list[str]:
    return [f"{i}. {w}" for i, w in enumerate(WORDS[:n], 1)]


def test_three_refinements_then_back_one_step_then_reload(shop, tmp_path):
    from fashion_retrieval.demo import build_demo

    catalogue, models = shop
    demo = build_demo(models, dataset=catalogue, default_k=K)
    expected = Expected(catalogue, models)
    artifacts = artifacts_dir(tmp_path / "artifacts")
    with gradio_server(demo) as url, chromium_page(height=1300) as page:
        page.goto(url)
        # Step 1: a Compose search from a catalogue pick; it starts the session.
        thumbs = page.locator(".block:visible", has_text="Catalogue: click an image").locator("button.thumbnail-item")
        expect(thumbs.first).to_be_visible()
        first = thumbs.nth(3).locator(".caption-label").inner_text()
        thumbs.nth(3).click()
        expect(page.locator('[data-testid="image"] img').first).to_be_visible()
        page.get_by_label("What should change?").fill(WORDS[0])
        page.locator("button:visible", has_text=re.compile(r"^\s*Search\s*$")).click()
        _expect_step(page, expected.step(first), _strip(1))
        # Three turns: click a result of either model, say the next change, Refine.
        next_picture = page.locator(".fr-next img")
        for turn, (name, index) in enumerate(PICKS, 2):
            result = _results(page, name).nth(index)
            picked = result.locator(".caption-label").inner_text().split(" · ")[-1]
            result.click()
            expect(next_picture).to_be_visible(timeout=WAIT)
            page.get_by_label("Next change").fill(WORDS[turn - 1])
            page.get_by_role("button", name="Refine", exact=True).click()
            _expect_step(page, expected.step(picked), _strip(turn))
            expect(next_picture).to_have_count(0, timeout=WAIT)  # the next picture is picked anew
        page.screenshot(path=artifacts / "demo_refine_step4.png", full_page=True)
        # Back one step: click step 3 in the strip; its results come back, step 4 is gone.
        page.locator(".fr-strip button.thumbnail-item").nth(2).click()
        _expect_step(page, expected.steps[2], _strip(3))
        page.screenshot(path=artifacts / "demo_refine_back.png", full_page=True)
        # A reload finds the session on the server, at step 3.
        page.reload()
        _expect_step(page, expected.steps[2], _strip(3))
    assert len({p for p in expected.pictures}) == 4
    assert all(len(ids) == K for step in expected.steps for ids in step.values())
