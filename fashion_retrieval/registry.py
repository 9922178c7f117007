"""A small name -> entry registry, so users can type names and get clear errors.

Registries are the one place a kind's names live: configuration choices and command-line
``choices=`` are read from them (``names()``), never copied.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to entries (factories, or records such as a data set's); unknown names
    raise a ``ValueError`` listing the valid ones.

    A factory may also be found by prefix: ``open_clip:ViT-B-32`` resolves to the factory
    registered as ``open_clip:`` and receives the full name.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register ``fn`` under ``name`` (a name ending in ':' is a prefix)."""

        def deco(fn: T) -> T:
            self.add(name, fn)
            return fn

        return deco

    def add(self, name: str, entry: T) -> T:
        """Register ``entry`` under ``name``; a name registered twice is an error."""
        if name in self._factories:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._factories[name] = entry
        return entry

    def names(self) -> list[str]:
        """Registered names, sorted (prefix entries shown as 'prefix:<...>')."""
        return sorted(n + "<...>" if n.endswith(":") else n for n in self._factories)

    def get(self, name: str) -> T:
        """The factory for ``name``; prefix entries match ``prefix:anything``."""
        if name in self._factories and not name.endswith(":"):
            return self._factories[name]
        prefix, sep, _ = name.partition(":")
        if sep and prefix + ":" in self._factories:
            return self._factories[prefix + ":"]
        close = difflib.get_close_matches(name, list(self._factories), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"unknown {self.kind} {name!r}{hint}; valid {self.kind}s: {', '.join(self.names())}"
        )

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        try:
            self.get(str(name))
        except ValueError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
