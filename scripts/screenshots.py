"""Regenerate the README screenshots from the real apps in headless Chromium.

    python scripts/screenshots.py                 # the embedded default (built if missing)
    python scripts/screenshots.py --tiny /tmp/t   # tiny untrained models (seconds, for checks)

Writes ``docs/images/demo.png`` (the Gradio demo's Compose tab after a search) and
``docs/images/dashboard.png`` (the Streamlit dashboard's recall view), plus
``dashboard_query.png`` (its query browser). Needs ``/usr/bin/chromium`` and playwright.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the browser helpers shared with tests/test_browser.py

from browser_utils import (  # noqa: E402
    chromium_missing_reason,
    chromium_page,
    gradio_server,
    make_tiny_results,
    streamlit_screenshot,
    streamlit_server,
    wait_streamlit_idle,
)

VIEWPORT = {"width": 1440, "height": 1000}


def default_sources(home: Path | None) -> dict[str, Any]:
    """The embedded default (built on first use): its Retrievers, catalogue and result folders."""
    from fashion_retrieval.demo.default import default_dir, load_default

    bundle = load_default(home)
    root = default_dir(home)
    env = {
        "FASHION_RETRIEVAL_RUNS": str(root / "models"),
        "FASHION_RETRIEVAL_DATASET": "synthetic",
        "FASHION_RETRIEVAL_DATA_ROOT": str(root / "data"),
        "FASHION_RETRIEVAL_SPLIT": bundle.dataset.split,
    }
    if home is not None:
        env["FASHION_RETRIEVAL_HOME"] = str(home)
    return {"models": bundle.models, "dataset": bundle.dataset, "env": env}


def tiny_sources(root: Path) -> dict[str, Any]:
    """Tiny untrained checkpoints over a 12-image catalogue (what the browser tests use)."""
    from fashion_retrieval.hub import load_model
    from fashion_retrieval.retriever import Retriever

    tiny = make_tiny_results(root)
    items = tiny["dataset"].items
    models = {n: Retriever(load_model(tiny["runs"] / n / "final"), items) for n in tiny["models"]}
    return {"models": models, "dataset": tiny["dataset"], "env": tiny["env"]}


def shoot_demo(sources: dict[str, Any], out: Path) -> None:
    """Compose tab: search the catalogue query examples in turn, screenshot the first one
    that TIRG answers correctly (the last one tried when none does)."""
    from fashion_retrieval.demo import build_demo

    demo = build_demo(sources["models"], dataset=sources["dataset"], default_k=8)
    with gradio_server(demo) as url, chromium_page(**VIEWPORT) as page:
        page.goto(url)
        examples = page.locator("tr.tr-body")  # the "Catalogue queries" examples table
        try:
            examples.first.wait_for(timeout=20_000)
            count = examples.count()
        except Exception:  # noqa: BLE001 - playwright's TimeoutError: a catalogue without queries
            count = 0
        if not count:  # no examples: pick the first catalogue image and type a change
            page.locator("button.thumbnail-item").first.click()
            page.get_by_label("What should change?").fill("is blue")
            _search(page)
        pages = page.locator("button", has_text="2").filter(has_not_text="1")
        for i in range(2 * count):  # every example on the first two pages
            if i == count:
                if not pages.count():
                    break
                pages.first.click()
                page.wait_for_timeout(500)
            examples.nth(i % count).click()
            page.wait_for_timeout(1000)  # the picture and the text fill in
            status = _search(page)
            print(f"screenshots: example {i + 1}: {status.replace(chr(10), ' | ')}")
            if "tirg: ✓" in status.replace("\n", " "):
                break
        page.wait_for_timeout(1500)  # images finish loading
        page.screenshot(path=out, full_page=True)


def _search(page: Any) -> str:
    """Click Search and return the status text once this search has finished.

    While a request is pending Gradio overlays a progress line ("processing | 0.4s") on
    the status block, above the previous result; so wait until the text differs from the
    one before the click, shows no progress line, and stays the same for half a second.
    """
    status = page.locator(".fr-status").first  # the Compose tab's
    before = status.inner_text() if status.count() else ""
    page.locator("button:visible", has_text="Search").first.click()
    last, stable_since, deadline = None, time.monotonic(), time.monotonic() + 30
    while time.monotonic() < deadline:
        text = status.inner_text()
        if text != last:
            last, stable_since = text, time.monotonic()
        settled = text.strip() and text != before and "processing" not in text.lower()
        if settled and time.monotonic() - stable_since >= 0.5:
            break
        page.wait_for_timeout(100)
    return last or ""


def shoot_dashboard(sources: dict[str, Any], out_dir: Path, log: Path) -> None:
    """Recall view (dashboard.png) and the query browser on a test query."""
    with streamlit_server(sources["env"], log) as url, chromium_page(**VIEWPORT) as page:
        page.goto(url)
        wait_streamlit_idle(page)
        page.locator('[data-testid="stTable"]').first.wait_for()
        streamlit_screenshot(page, out_dir / "dashboard.png")
        page.get_by_text("Query browser", exact=True).click()
        wait_streamlit_idle(page, timeout_ms=300_000)
        page.locator('[data-testid="stImage"]').first.wait_for(timeout=300_000)
        page.wait_for_timeout(1000)
        streamlit_screenshot(page, out_dir / "dashboard_query.png")


def main(argv: list[str] | None = None) -> None:
    """Parse options, serve both apps, take the screenshots."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, default=REPO / "docs" / "images", help="output folder")
    p.add_argument("--home", type=Path, default=None, help="FASHION_RETRIEVAL_HOME to use")
    p.add_argument("--tiny", type=Path, default=None, help="use tiny models written under DIR")
    args = p.parse_args(argv)
    if (reason := chromium_missing_reason()) is not None:
        sys.exit(f"screenshots: {reason}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args.out.mkdir(parents=True, exist_ok=True)
    sources = tiny_sources(args.tiny) if args.tiny else default_sources(args.home)
    shoot_demo(sources, args.out / "demo.png")
    log = Path(tempfile.gettempdir()) / "fashion_retrieval_screenshots_streamlit.log"
    shoot_dashboard(sources, args.out, log)
    for name in ("demo.png", "dashboard.png", "dashboard_query.png"):
        print(f"wrote {args.out / name}")


if __name__ == "__main__":
    main()
