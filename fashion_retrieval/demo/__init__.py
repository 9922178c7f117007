"""The Gradio demo, its embedded default and the Hugging Face Space assembler.

``build_demo`` and ``launch_demo`` are imported lazily so that importing this package
does not import Gradio.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_demo", "launch_demo"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from fashion_retrieval.demo import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
