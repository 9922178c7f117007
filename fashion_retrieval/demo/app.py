"""The Gradio demo: Compose (with refinement), Text to image and Image to image tabs, and the
``search``, ``refine`` and ``refine_back`` API endpoints.

``build_demo`` builds the page from a dict of Retrievers (or the embedded default);
``launch_demo`` serves it with the catalogue folders allowed and the queue configured.
The logic lives in :mod:`fashion_retrieval.demo.handlers` (and the serving layer); this
file, ``compose.py`` (the Compose tab) and ``widgets.py`` are only layout and glue.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gradio as gr

from fashion_retrieval.data.records import RetrievalDataset
from fashion_retrieval.demo.compose import DEFAULT_MODELS as DEFAULT_MODELS
from fashion_retrieval.demo.compose import compose_tab, session_api
from fashion_retrieval.demo.handlers import (
    DemoBackend,
    api_rows,
    gallery_value,
    summary_markdown,
)
from fashion_retrieval.demo.widgets import catalogue_picker, guard, query_image
from fashion_retrieval.search.query import QueryError
from fashion_retrieval.serving.batching import DEFAULT_MAX_BATCH, DEFAULT_MAX_WAIT_MS, batched
from fashion_retrieval.serving.catalogue import Catalogue

CSS = """
.fr-status {min-height: 2.5em}
.fr-results .caption-label, .fr-strip .caption-label {
  font-size: 11px; line-height: 1.25; white-space: normal; overflow: hidden;
  display: -webkit-box; -webkit-line-clamp: 2; -webkit-box-orient: vertical; max-height: 2.6em;
}
footer {visibility: hidden}
"""
INTRO = (
    "# Fashion retrieval: picture + words\n"
    "Pick a catalogue image (or upload your own), say what should be different, and see "
    "how each model answers. Then click any result to refine from it: the session's steps "
    "stay above the results, click one to go back. ✓ marks a correct hit when the query "
    "comes from the catalogue with a known target."
)


def _single_tab(backend: DemoBackend, max_k: int, default_k: int, *, mode: str) -> None:
    """Text to image (mode "text") or Image to image (mode "image"): one model, one gallery."""
    names = backend.model_names
    default = next((n for n in (("text_to_image", "text_only", "tirg") if mode == "text" else ("image_only", "tirg")) if n in names), names[0])
    with gr.Row():
        with gr.Column(scale=2):
            if mode == "text":
                query = gr.Textbox(label="Describe the garment", placeholder="e.g. red striped long-sleeve dress")
            else:
                query = query_image(label="Picture", height=260)
                showcase = backend.showcase_items(24)
                if showcase:
                    catalogue_picker(showcase, query, api_name="ui_image_pick", columns=4, height=250)
            model = gr.Dropdown(names, value=default, label="Model")
            k = gr.Slider(1, max_k, value=default_k, step=1, label="K")
            button = gr.Button("Search", variant="primary")
        with gr.Column(scale=3):
            status = gr.Markdown(elem_classes="fr-status")
            gallery = gr.Gallery(label="Results", columns=4, height=520, object_fit="contain")
    if mode == "text" and backend.items:
        captions = sorted({it.caption for it in backend.items if it.caption})[:6]
        if captions:
            gr.Examples([[c] for c in captions], inputs=[query], label="Catalogue captions")

    def search(q: Any, name: str, k_value: float) -> tuple[str, Any]:
        image_path, text = (None, q) if mode == "text" else (q, "")
        if mode == "text" and not backend.clean_text(q):
            raise QueryError("Type a description first.")
        if mode == "image" and not q:
            raise QueryError("Upload or pick a picture first.")
        outcome = backend.search(name, image_path, text, k_value, allow_text=mode == "text")
        return summary_markdown([outcome], outcome.k), gallery_value(outcome)

    triggers = [button.click] + ([query.submit] if mode == "text" else [])
    for i, trigger in enumerate(triggers):
        trigger(guard(search, lambda m: (m, gr.skip())), inputs=[query, model, k],
                outputs=[status, gallery], api_name=f"ui_{mode}_{i}", api_visibility="private")


def _api(backend: DemoBackend) -> None:
    """The ``search`` endpoint for gradio_client: (image, text, model, k) -> list of hits."""
    with gr.Column(visible=False):
        image = query_image(label="image")
        text = gr.Textbox(label="text")
        model = gr.Textbox(label="model", value=backend.model_names[0])
        k = gr.Number(label="k", value=10)
        out = gr.JSON(label="hits")
        button = gr.Button("search")

    def search(image_path: str | None, query: str, name: str, k_value: float) -> list[dict[str, Any]]:
        """Search one model; returns hits {id, score, caption, category, rank}."""
        try:
            return api_rows(backend.search(name or backend.model_names[0], image_path, query, k_value))
        except QueryError as err:
            raise gr.Error(str(err), print_exception=False) from None

    button.click(search, inputs=[image, text, model, k], outputs=out, api_name="search")


# Gradio's queue summarises the finished events for its monitoring page after every event:
# a pandas frame of up to 10,000 past events, built in the server process under the GIL
# (py-spy under the 16-client load test: about a seventh of the server's samples, growing
# with the number of events served). The demo shows no monitoring page, so the summary is
# refreshed every 1,000 events over the last 1,000. Either variable set by the user wins.
QUEUE_ANALYTICS = {"GRADIO_ANALYTICS_CACHE_FREQUENCY": "1000", "GRADIO_ANALYTICS_MAX_EVENTS": "1000"}


def build_demo(
    models: Mapping[str, Any] | None = None,
    *,
    dataset: Catalogue | RetrievalDataset | None = None,
    home: str | Path | None = None,
    default_spec: Any = None,
    title: str = "Fashion retrieval",
    max_k: int = 50,
    default_k: int = 8,
    concurrency: int = 16,
    queue_size: int = 64,
    batch_wait_ms: float | None = DEFAULT_MAX_WAIT_MS,
    max_batch: int = DEFAULT_MAX_BATCH,
    model_threads: int | None = 1,
) -> gr.Blocks:
    """Build the demo page.

    ``models`` maps names to Retrievers; None builds (or loads the cached) embedded default
    under ``home`` (default ``$FASHION_RETRIEVAL_HOME``) from ``default_spec`` (a
    :class:`~fashion_retrieval.serving.default.DefaultSpec`). ``dataset`` is the catalogue (a
    :class:`~fashion_retrieval.serving.catalogue.Catalogue` or a data set split) whose ground
    truth marks correct hits. Serve the result with :func:`launch_demo`.

    Searches that arrive together (up to ``concurrency`` queue workers) are answered in one
    model pass per model: each model sits behind a
    :class:`~fashion_retrieval.serving.batching.MicroBatcher` that waits at most
    ``batch_wait_ms`` for company (``max_batch`` searches at most); ``batch_wait_ms=None``
    serves every search alone. The batched model calls use ``model_threads`` torch threads
    (None: torch's setting): one leaves the other cores to the web server.
    """
    if models is None:
        from fashion_retrieval.serving.service import open_service

        service = open_service(home=home, default_spec=default_spec)
        models, dataset = service.models, dataset or service.catalogue
    if batch_wait_ms is not None:
        models = batched(dict(models), max_wait_ms=batch_wait_ms, max_batch=max_batch, threads=model_threads)
    backend = DemoBackend(models, dataset, max_k=max_k)
    with gr.Blocks(title=title) as demo:
        gr.Markdown(INTRO)
        with gr.Tabs():
            with gr.Tab("Compose"):
                compose_tab(demo, backend, max_k, default_k)
            with gr.Tab("Text to image"):
                _single_tab(backend, max_k, default_k, mode="text")
            with gr.Tab("Image to image"):
                _single_tab(backend, max_k, default_k, mode="image")
        _api(backend)
        session_api(backend)
    for key, value in QUEUE_ANALYTICS.items():  # read by the Queue that demo.queue() creates
        os.environ.setdefault(key, value)
    demo.queue(default_concurrency_limit=concurrency, max_size=queue_size)
    demo.fashion_retrieval_paths = backend.catalogue_dirs()  # type: ignore[attr-defined]
    demo.fashion_retrieval_backend = backend  # type: ignore[attr-defined]
    return demo


@contextmanager
def _reserved_port(host: str) -> Iterator[int]:
    """A free port chosen by the OS for ``host``, held bound (not listening) while in use.

    Gradio cannot bind port 0 itself (it builds its URLs from the number it was given).
    The holding socket and Gradio's both set SO_REUSEADDR, so Gradio can bind the port
    while the OS hands it to no one else: no pick-then-bind race.
    """
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host.strip("[]"), 0))
        yield s.getsockname()[1]


def launch_demo(
    demo: gr.Blocks,
    *,
    server_name: str | None = None,
    server_port: int | None = None,
    share: bool = False,
    allowed_paths: Sequence[str] = (),
    **kwargs: Any,
) -> Any:
    """Serve a demo from :func:`build_demo` with its catalogue folders allowed.

    ``server_name``/``server_port`` None fall back to Gradio's GRADIO_SERVER_NAME /
    GRADIO_SERVER_PORT. Port 0 (argument or variable) serves on a free port chosen by the
    OS; ``demo.server_port`` and ``demo.local_url`` then say which. Extra keyword
    arguments go to ``Blocks.launch``.
    """
    paths = [*getattr(demo, "fashion_retrieval_paths", []), *allowed_paths]
    kwargs.setdefault("max_file_size", "25mb")
    kwargs.setdefault("theme", gr.themes.Soft())
    kwargs.setdefault("css", CSS)
    if server_port is None and os.environ.get("GRADIO_SERVER_PORT", "").strip() == "0":
        server_port = 0
    block = not kwargs.pop("prevent_thread_lock", False)
    if server_port != 0:
        launched = demo.launch(server_name=server_name, server_port=server_port, share=share, allowed_paths=paths,
                               prevent_thread_lock=True, **kwargs)
    else:
        host = server_name or os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1"
        with _reserved_port(host) as port:  # released once Gradio listens on it
            launched = demo.launch(server_name=host, server_port=port, share=share, allowed_paths=paths,
                                   prevent_thread_lock=True, **kwargs)
    if block:
        demo.block_thread()
    return launched
