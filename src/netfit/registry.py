"""Named registries: one place where activations, losses, optimizers and datasets are listed.

A registry maps a name a user writes in a spec to the object that implements it. The spec
validates names against the registry, and the contract tests iterate over every entry, so
registering an entry is all it takes to expose it and to put it under test.
"""

from __future__ import annotations

import difflib
from typing import Generic, Iterator, TypeVar

from .errors import NetfitError

__all__ = ["Registry", "nearest"]

T = TypeVar("T")


def nearest(name: str, choices: list[str]) -> str | None:
    """The choice closest to a misspelt ``name``, or None if nothing is close."""
    matches = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return matches[0] if matches else None


class Registry(Generic[T]):
    """An ordered name -> entry table with a helpful error for unknown names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T | None = None):
        """Register ``entry`` under ``name``; usable as a decorator when ``entry`` is omitted."""

        def add(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return add(entry) if entry is not None else add

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            hint = nearest(name, self.names())
            did_you_mean = f" (did you mean {hint!r}?)" if hint else ""
            raise NetfitError(
                f"unknown {self.kind} {name!r}{did_you_mean}; choose one of: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)
