"""One small registry per kind of named thing: presets, models, samplers, datasets, schedules.

A registry maps a name to an object (a function, a class, a spec) and a one-line help. The
CLI's `choices`, its `--help` and every "unknown X" error come from it, never from a second
list (timm's `register_model` / `create_model`, without registration through `import *`):

    MODELS = Registry("model")

    @MODELS.register("dense", "the tutorial's network")
    def dense(cfg): ...

    MODELS.get("dense")      # the function
    MODELS.get("densse")     # AelabError: unknown model 'densse'; choose from dense
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .errors import AelabError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Names in registration order -> (object, one-line help)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, tuple[T, str]] = {}

    def add(self, name: str, obj: T, help: str = "") -> T:
        """Register `obj` under `name`; a name registered twice is a bug, so it raises."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = (obj, help)
        return obj

    def register(self, name: str, help: str = "") -> Callable[[T], T]:
        """Decorator form of `add`."""
        return lambda obj: self.add(name, obj, help)

    def get(self, name: str) -> T:
        """The object registered as `name`; an unknown name is one line that lists the choices."""
        if not isinstance(name, str) or name not in self._entries:
            raise AelabError(f"unknown {self.kind} {name!r}; choose from {', '.join(self._entries)}")
        return self._entries[name][0]

    def help(self, name: str) -> str:
        self.get(name)
        return self._entries[name][1]

    def names(self) -> list[str]:
        return list(self._entries)

    def helps(self) -> dict[str, str]:
        """Name -> one-line help, in registration order."""
        return {name: help for name, (_, help) in self._entries.items()}

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"
