"""Config layers: YAML recipes override defaults, CLI flags override recipes. Shared by every typed config
(evaluation, training) so layering means one thing everywhere.

    >>> merged = {}
    >>> for layer in ({"a": {"x": 1, "y": 2}}, {"a": {"y": 3}}):
    ...     deep_merge(merged, layer)
    >>> merged
    {'a': {'x': 1, 'y': 3}}
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from reasonlab.errors import ConfigError

C = TypeVar("C", bound=BaseModel)


def deep_merge(into: dict[str, Any], new: dict[str, Any]) -> None:
    """Merge ``new`` into ``into``; values are copied, so the layers a caller passes are never changed."""
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            deep_merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


def flags_layer(pairs: dict[tuple[str, ...], Any]) -> dict[str, Any]:
    """The nested layer of the flags a user actually gave: {(section, field): value}, None meaning not given.

    >>> flags_layer({("sampling", "seed"): 1, ("model",): None})
    {'sampling': {'seed': 1}}
    """
    layer: dict[str, Any] = {}
    for path, value in pairs.items():
        if value is None:
            continue
        node = layer
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return layer


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A recipe file as a dict; one line naming the file when it is missing, not YAML or not a mapping."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"recipe not found: {path}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe must be a mapping of config sections")
    return data


def from_layers(cls: type[C], *layers: dict[str, Any]) -> C:
    """Merge nested dicts left to right (later wins) onto ``cls``'s defaults and validate; a bad field is one
    line naming it."""
    merged: dict[str, Any] = {}
    for layer in layers:
        deep_merge(merged, layer)
    try:
        return cls.model_validate(merged)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "config"
        raise ConfigError(f"config field {where}: {first['msg']}") from None
