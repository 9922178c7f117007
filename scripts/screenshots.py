"""Regenerate the README screenshots from the real apps in headless Chromium.

    python scripts/screenshots.py                 # the embedded default (built if missing)
    python scripts/screenshots.py --tiny /tmp/t   # tiny untrained models (seconds, for checks)

Writes ``docs/images/demo.png`` (the Gradio demo's Compose tab after a search) and
``docs/images/dashboard.png`` (the Streamlit dashboard's recall view), plus
``dashboard_query.png`` (its query browser). Needs ``/usr/bin/chromium`` and playwright.
"""

from __future__ import annotations

import argparse
import json
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
    from fashion_retrieval.serving.default import default_dir, load_default

    bundle = load_default(home)
    root = default_dir(home)
    env = {
        "FASHION_RETRIEVAL_RUNS": str(root / "models"),
        "FASHION_RETRIEVAL_DATASET": "synthetic",
        "FASHION_RETRIEVAL_DATA_ROOT": str(root / "data"),
        # The dashboard reads one split; the default's gallery joins val and test.
        "FASHION_RETRIEVAL_SPLIT": bundle.dataset.split.split("+")[0],
    }
    if home is not None:
        env["FASHION_RETRIEVAL_HOME"] = str(home)
    return {"models": bundle.models, "dataset": bundle.dataset, "env": env}


def tiny_sources(root: Path) -> dict[str, Any]:
    """Tiny untrained checkpoints over a 12-image catalogue (what the browser tests use)."""
    from fashion_retrieval.checkpoints import load_model
    from fashion_retrieval.search.retriever import Retriever

    tiny = make_tiny_results(root)
    items = tiny["dataset"].items
    models = {n: Retriever(load_model(tiny["runs"] / n / "final"), items) for n in tiny["models"]}
    return {"models": models, "dataset": tiny["dataset"], "env": tiny["env"]}


def measure_queries(sources: dict[str, Any], limit: int = 300, k: int = 8) -> list[dict[str, Any]]:
    """Each catalogue query (up to ``limit``) with the rank of the first correct hit per model
    (None: none in the top ``k``); a hit is correct when its caption is the target's."""
    from fashion_retrieval.demo.app import DEFAULT_MODELS

    dataset, models = sources["dataset"], sources["models"]
    by_id = dataset.item_by_id()
    names = [n for n in DEFAULT_MODELS if n in models]
    rows = []
    for t in dataset.triplets[:limit]:
        if t.source not in by_id or not (t.target_caption or t.target in by_id):
            continue
        wanted = t.target_caption or by_id[t.target].caption
        ranks = {}
        for name in names:
            hits = models[name].search(image=by_id[t.source].path, text=t.text, k=k, exclude_ids=[t.source])
            ranks[name] = next((h.rank for h in hits if h.caption == wanted), None)
        rows.append({"source": t.source, "text": t.text, "target_caption": wanted, "ranks": ranks})
    return rows


def pick_query(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The first measured query that TIRG answers at rank 1 and no other model in its top k
    (then: TIRG in its top 2 and no other model; None when there is no such query)."""
    for best in (1, 2):
        for row in rows:
            others = [r for name, r in row["ranks"].items() if name != "tirg"]
            if row["ranks"].get("tirg") is not None and row["ranks"]["tirg"] <= best and all(r is None for r in others):
                return row
    return None


def shoot_demo(sources: dict[str, Any], out: Path) -> None:
    """Compose tab on a request that TIRG answers and the baselines do not, chosen from the
    measured catalogue queries (the list is written beside the screenshot as JSON)."""
    from fashion_retrieval.demo import build_demo

    rows = measure_queries(sources)
    chosen = pick_query(rows) or (rows[0] if rows else None)
    (out.parent / "demo_queries.json").write_text(json.dumps({"chosen": chosen, "measured": rows}, indent=1))
    print(f"screenshots: {len(rows)} queries measured; chosen: {chosen}")
    demo = build_demo(sources["models"], dataset=sources["dataset"], default_k=8)
    with gradio_server(demo) as url, chromium_page(**VIEWPORT) as page:
        page.goto(url)
        page.locator("input[type=file]").first.wait_for(state="attached", timeout=20_000)
        if chosen is not None:
            path = sources["dataset"].item_by_id()[chosen["source"]].path
            page.locator("input[type=file]").first.set_input_files(path)
            page.wait_for_timeout(1000)  # the upload reaches the server
            page.get_by_label("What should change?").fill(chosen["text"])
        status = _search(page)
        print(f"screenshots: {status.replace(chr(10), ' | ')}")
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
