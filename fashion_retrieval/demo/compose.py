"""The Compose tab (picture + words, the chosen models side by side, refinement) and the
session API (``/refine``, ``/refine_back``).

Refinement: every Compose search starts a session (its step 1). Clicking any result of any
model makes it the next picture; the shopper types the next change and presses Refine: every
shown model answers that picture with every request so far, each leaving out what it already
showed. The strip above the results shows the steps (picture + words); clicking one goes
back to it. The session lives in the serving layer (``serving/refine.py``) behind
:class:`DemoBackend`; the page keeps only its id, in the browser's storage, so a reloaded
page shows its session again, or starts cleanly when the server no longer holds it.

Layout and glue only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from fashion_retrieval.demo.handlers import (
    POLICY_NOTES,
    DemoBackend,
    SessionOutcome,
    gallery_value,
    session_markdown,
)
from fashion_retrieval.demo.widgets import catalogue_picker, guard, guarded, query_image
from fashion_retrieval.search.query import QueryError
from fashion_retrieval.serving.refine import DEFAULT_POLICY

DEFAULT_MODELS = ("tirg", "text_only", "image_only")
STRIP_LABEL = "Session: click a step to go back to it"
NEXT_PICTURE_LABEL = "Next picture: click any result below"


def _blank_picture() -> Any:
    """What the strip shows for a step with no catalogue picture (a words-only search)."""
    from PIL import Image

    return Image.new("RGB", (96, 96), (236, 236, 240))


@dataclass
class _Page:
    """The components a session event writes, in one order."""

    names: list[str]
    session: gr.BrowserState
    status: gr.Markdown
    strip: gr.Gallery
    pick: gr.State
    pick_image: gr.Image
    words: gr.Textbox
    galleries: list[gr.Gallery]
    columns: list[gr.Column]

    def outputs(self) -> list[Any]:
        """Session, status, strip, next picture (id, image), next words, galleries, columns."""
        return [self.session, self.status, self.strip, self.pick, self.pick_image, self.words,
                *self.galleries, *self.columns]

    def show(self, result: SessionOutcome) -> list[Any]:
        """The values of :meth:`outputs` for a session at its current step."""
        by_name = {o.model: gallery_value(o) for o in result.outcomes}
        strip = [(path or _blank_picture(), caption) for path, caption in result.strip()]
        return [result.session.id, session_markdown(result), gr.update(value=strip, selected_index=None),
                None, None, "",
                *(gr.update(value=by_name.get(n, []), selected_index=None) for n in self.names),
                *(gr.update(visible=n in by_name) for n in self.names)]

    def clean(self) -> list[Any]:
        """No session (a first visit, or one the server no longer holds)."""
        n = len(self.names)
        return ["", "", [], None, None, "", *([[]] * n), *([gr.skip()] * n)]

    def failed(self, message: str) -> list[Any]:
        """Only the status changes: it says what was wrong."""
        return [gr.skip(), message, *([gr.skip()] * (4 + 2 * len(self.names)))]


def _query_column(backend: DemoBackend, max_k: int, default_k: int) -> tuple[Any, ...]:
    """Picture, words, models, K, history policy and the Search button."""
    names = backend.model_names
    chosen = [n for n in DEFAULT_MODELS if n in names] or names[:3]
    image = query_image(label="Picture", height=260)
    text = gr.Textbox(label="What should change?", placeholder="e.g. is blue with long sleeves")
    models = gr.CheckboxGroup(names, value=chosen, label="Models")
    k = gr.Slider(1, max_k, value=default_k, step=1, label="K (results per model)")
    policy = gr.Radio(
        list(POLICY_NOTES), value=DEFAULT_POLICY, label="Refinement reads",
        info="; ".join(f"{name}: {note}" for name, note in POLICY_NOTES.items()),
    )
    button = gr.Button("Search", variant="primary")
    return image, text, models, k, policy, button


def compose_tab(demo: gr.Blocks, backend: DemoBackend, max_k: int, default_k: int) -> None:
    """The Compose tab: catalogue picker, query, model choice, one gallery per model, and the
    refinement controls (next picture, next change, the strip of steps)."""
    names = backend.model_names
    with gr.Row():
        with gr.Column(scale=2):
            image, text, models, k, policy, button = _query_column(backend, max_k, default_k)
        with gr.Column(scale=3):
            catalogue_picker(backend.showcase_items(24), image, api_name="ui_pick", columns=6, height=330)
            examples = backend.example_triplets(8)
            if examples:
                gr.Examples(
                    [[backend.by_id[t.source].path, t.text] for t in examples],
                    inputs=[image, text], label="Catalogue queries with a known answer",
                    examples_per_page=4,
                )
    session = gr.BrowserState("")  # the session's id only; the session is on the server
    status = gr.Markdown(elem_classes="fr-status")
    with gr.Row(equal_height=True):
        strip = gr.Gallery(label=STRIP_LABEL, columns=8, height=190, allow_preview=False, fit_columns=False,
                           object_fit="contain", elem_classes="fr-strip", scale=4)
        pick_image = gr.Image(label=NEXT_PICTURE_LABEL, type="filepath", interactive=False,
                              height=190, scale=1, elem_classes="fr-next")
        with gr.Column(scale=2):
            words = gr.Textbox(label="Next change", placeholder="e.g. now with long sleeves")
            refine = gr.Button("Refine", variant="secondary")
    galleries, columns = [], []
    with gr.Row(elem_classes="fr-results"):
        for name in names:
            with gr.Column(visible=name in models.value, min_width=220) as col:
                galleries.append(gr.Gallery(label=name, columns=2, height=560, object_fit="contain",
                                            allow_preview=False))
            columns.append(col)
    page = _Page(names, session, status, strip, gr.State(None), pick_image, words, galleries, columns)
    _wire(demo, backend, page, dict(image=image, text=text, models=models, k=k, policy=policy),
          button, refine)


def _wire(demo: gr.Blocks, backend: DemoBackend, page: _Page, query: dict[str, Any],
          button: gr.Button, refine: gr.Button) -> None:
    """The tab's events: search, pick a result, refine, back to a step, restore on load."""
    names, out = page.names, page.outputs()

    def search(image_path: str | None, text: str, selected: list[str], k: float, policy: str) -> list[Any]:
        chosen = [n for n in names if n in (selected or [])]
        return page.show(backend.compose(chosen, image_path, text, k, policy=policy))

    inputs = [query[key] for key in ("image", "text", "models", "k", "policy")]
    for i, trigger in enumerate((button.click, query["text"].submit)):
        trigger(guard(search, page.failed), inputs=inputs, outputs=out,
                api_name=f"ui_compose_{i}", api_visibility="private")

    def step(session_id: str, pick: str | None, words: str, selected: list[str], k: float,
             policy: str) -> list[Any]:
        if not pick:
            raise QueryError("Click a result first: it becomes the next picture.")
        chosen = [n for n in names if n in (selected or [])]
        if not chosen:
            raise QueryError("Choose at least one model.")
        return page.show(backend.refine(session_id, pick, words, chosen, k, policy=policy))

    inputs = [page.session, page.pick, page.words, query["models"], query["k"], query["policy"]]
    for i, trigger in enumerate((refine.click, page.words.submit)):
        trigger(guard(step, page.failed), inputs=inputs, outputs=out,
                api_name=f"ui_refine_{i}", api_visibility="private")

    for i, (name, gallery) in enumerate(zip(names, page.galleries, strict=True)):
        gallery.select(_picker(backend, name), inputs=page.session, outputs=[page.pick, page.pick_image],
                       api_name=f"ui_refine_pick_{i}", api_visibility="private")

    def back(session_id: str, evt: gr.SelectData) -> list[Any]:
        return guarded(lambda: page.show(backend.back(session_id, evt.index + 1)), page.failed)

    page.strip.select(back, inputs=page.session, outputs=out, api_name="ui_refine_back",
                      api_visibility="private")

    def restore(session_id: str) -> list[Any]:
        result = backend.restore(session_id)
        return page.show(result) if result is not None else page.clean()

    demo.load(restore, inputs=page.session, outputs=out, api_name="ui_restore", api_visibility="private")
    query["models"].change(lambda sel: [gr.update(visible=n in sel) for n in names],
                           inputs=query["models"], outputs=page.columns, api_name="ui_models",
                           api_visibility="private")


def _picker(backend: DemoBackend, name: str) -> Any:
    """The handler of a click on one of ``name``'s results: it becomes the next picture."""

    def pick(session_id: str, evt: gr.SelectData) -> tuple[Any, Any]:
        def chosen() -> tuple[Any, Any]:
            hit = backend.sessions.result(session_id, name, evt.index)
            return hit.id, hit.path

        return guarded(chosen, lambda _message: (gr.skip(), gr.skip()))

    return pick


def session_api(backend: DemoBackend) -> None:
    """``/refine`` (session, picture id, words, models, k, policy) and ``/refine_back``
    (session, step): the session as JSON with each model's hits. Nothing is uploaded."""
    with gr.Column(visible=False):
        session = gr.Textbox(label="session")
        picture = gr.Textbox(label="picture")
        words = gr.Textbox(label="words")
        models = gr.Textbox(label="models")
        k = gr.Number(label="k", value=10)
        policy = gr.Textbox(label="policy")
        step = gr.Number(label="step", value=1)
        out = gr.JSON(label="session")
        refine, back = gr.Button("refine"), gr.Button("refine_back")

    def refine_step(session_id: str, picture_id: str, text: str, names: str, k_value: float,
                    policy_name: str) -> dict[str, Any]:
        """One refinement step: ``session`` ("" starts one), a catalogue item ``picture`` id,
        the ``words``, ``models`` (comma-separated; "" every model), ``k``, ``policy``
        ("" the session's, else history or last_turn). Returns the session and its hits."""
        try:
            return backend.refine(session_id, picture_id, text, names, k_value, policy=policy_name).to_json()
        except QueryError as err:
            raise gr.Error(str(err), print_exception=False) from None

    def back_to(session_id: str, number: float) -> dict[str, Any]:
        """The session back at step ``step`` (1-based), with that step's hits."""
        try:
            return backend.back(session_id, number).to_json()
        except QueryError as err:
            raise gr.Error(str(err), print_exception=False) from None

    refine.click(refine_step, inputs=[session, picture, words, models, k, policy], outputs=out,
                 api_name="refine")
    back.click(back_to, inputs=[session, step], outputs=out, api_name="refine_back")
