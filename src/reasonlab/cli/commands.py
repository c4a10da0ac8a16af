"""Helpers for building commands: one function serving as several subcommands."""

from __future__ import annotations

import inspect
from typing import Any, Callable, get_type_hints


def with_fixed(func: Callable[..., None], name: str, value: Any) -> Callable[..., None]:
    """``func`` with its parameter ``name`` fixed to ``value`` and left out of the signature typer reads: one
    command body under ``reasonlab train sft``, ``train dpo``, ... (annotations resolved, since this package's
    modules use string annotations and typer reads the signature, not the module)."""

    def command(**kwargs: Any) -> None:
        func(**{name: value}, **kwargs)

    hints = get_type_hints(func)
    sig = inspect.signature(func)
    params = [p.replace(annotation=hints[n]) for n, p in sig.parameters.items() if n != name]
    command.__signature__ = sig.replace(parameters=params, return_annotation=None)  # type: ignore[attr-defined]
    command.__doc__ = func.__doc__
    return command
