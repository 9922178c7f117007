"""A small name -> factory registry, so users can type names and get clear errors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories; unknown names raise a ``ValueError`` listing valid ones.

    A factory may also be found by prefix: ``open_clip:ViT-B-32`` resolves to the factory
    registered as ``open_clip:`` and receives the full name.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator: register ``fn`` under ``name`` (a name ending in ':' is a prefix)."""

        def deco(fn: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._factories[name] = fn
            return fn

        return deco

    def names(self) -> list[str]:
        """Registered names, sorted (prefix entries shown as 'prefix:<...>')."""
        return sorted(n + "<...>" if n.endswith(":") else n for n in self._factories)

    def get(self, name: str) -> Callable[..., T]:
        """The factory for ``name``; prefix entries match ``prefix:anything``."""
        if name in self._factories and not name.endswith(":"):
            return self._factories[name]
        prefix, sep, _ = name.partition(":")
        if sep and prefix + ":" in self._factories:
            return self._factories[prefix + ":"]
        raise ValueError(
            f"unknown {self.kind} {name!r}; valid {self.kind}s: {', '.join(self.names())}"
        )

    def __getitem__(self, name: str) -> Callable[..., T]:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        try:
            self.get(str(name))
        except ValueError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
