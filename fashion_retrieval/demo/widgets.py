"""Pieces every tab of the Gradio demo uses: the picture input, the catalogue picker and the
guard that turns a :class:`QueryError` into a message in the page."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradio as gr

from fashion_retrieval.search.query import QueryError


def query_image(**kwargs: Any) -> gr.Image:
    """An image input (file path) that passes undecodable uploads on instead of failing.

    Gradio's own decoding would fail with a bare "Error"; the search handler decodes with
    ``load_image`` and says what is wrong with the file. (The instance's ``preprocess`` is
    wrapped rather than subclassing ``gr.Image``: Gradio writes a ``.pyi`` stub beside
    every component subclass when it is defined.)
    """
    image = gr.Image(type="filepath", image_mode=None, **kwargs)
    strict = image.preprocess

    def lenient(payload: Any) -> Any:
        try:
            return strict(payload)
        except Exception:  # any decoder error: the handler reports it readably
            return None if payload is None else getattr(payload, "path", None)

    image.preprocess = lenient  # type: ignore[method-assign]
    return image


def guard(fn: Callable[..., Any], on_error: Callable[[str], Any]) -> Callable[..., Any]:
    """Wrap a UI handler: a QueryError shows a warning toast and ``on_error("⚠ message")``."""

    def wrapper(*args: Any) -> Any:
        try:
            return fn(*args)
        except QueryError as err:
            gr.Warning(str(err))
            return on_error(f"⚠ {err}")

    wrapper.__name__ = getattr(fn, "__name__", "handler")
    wrapper.__doc__ = fn.__doc__
    return wrapper


def guarded(call: Callable[[], Any], on_error: Callable[[str], Any]) -> Any:
    """``call()`` under :func:`guard`."""
    return guard(call, on_error)()


def catalogue_picker(showcase: list[Any], image: Any, *, api_name: str, columns: int, height: int) -> None:
    """Catalogue thumbnails; clicking one makes it the query ``image`` (a catalogue pick: its
    stored features are used, nothing is decoded)."""
    catalogue = gr.Gallery(
        [(it.path, it.caption or it.id) for it in showcase],
        label="Catalogue: click an image to use it as the picture",
        columns=columns, height=height, allow_preview=False, object_fit="contain",
    )

    def pick(evt: gr.SelectData) -> str:
        return showcase[evt.index].path

    catalogue.select(pick, outputs=image, api_name=api_name, api_visibility="private")
