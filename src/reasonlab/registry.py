"""Name -> object registries that import lazily and answer typos with "did you mean".

Backends, strategies and datasets register *import strings* ("pkg.module:attr"), so naming
``llamacpp`` never imports torch and a missing optional dependency only matters when used.

    >>> reg = Registry("engine")
    >>> reg.register("json", "json:loads")
    >>> reg.get("json")('{"a": 1}')
    {'a': 1}
    >>> reg.get("jsn")
    Traceback (most recent call last):
    ...
    reasonlab.errors.UnknownNameError: unknown engine 'jsn'; did you mean 'json'? (known: json)
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any, Generic, TypeVar

from reasonlab.errors import UnknownNameError

T = TypeVar("T")


def did_you_mean(kind: str, name: str, known: list[str]) -> UnknownNameError:
    """Build the error for an unknown ``name`` among ``known`` choices."""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return UnknownNameError(f"unknown {kind} '{name}'{hint} (known: {', '.join(sorted(known))})")


class Registry(Generic[T]):
    """Maps names to lazily imported objects (import strings) or to objects themselves."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, str | T] = {}

    def register(self, name: str, target: str | T) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} '{name}' is already registered")
        self._entries[name] = target

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise did_you_mean(self.kind, name, self.names())
        target = self._entries[name]
        if isinstance(target, str):
            module_name, _, attr = target.partition(":")
            obj: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
            return obj
        return target
