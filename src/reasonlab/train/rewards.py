"""GRPO rewards: plain callables as TRL calls them, ``fn(prompts, completions, **dataset_columns)``.

- ``correct``: the run's verifier — one grader for evaluation and reward; None where the gold cannot be graded
  (TRL then leaves the row out of that reward);
- ``format``: 1.0 for a completion that ends with a \\boxed{} answer and invents no ```output block;
- ``module.path:function``: a user's reward, imported by path.

    >>> format_reward(["x = 4, so \\\\boxed{4}", "x = 4", "```output\\n4\\n```\\n\\\\boxed{4}"])
    [1.0, 0.0, 0.0]
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from reasonlab.answers import Verifier
from reasonlab.errors import ConfigError

Reward = Callable[..., list]


def _text(completion: Any) -> str:
    return completion[-1]["content"] if isinstance(completion, list) else str(completion)


def format_reward(completions: list[Any], **_: Any) -> list[float]:
    out = []
    for c in completions:
        text = _text(c)
        boxed = "\\boxed{" in text[-200:]  # the answer comes at the end, not somewhere in the middle
        out.append(1.0 if boxed and "```output" not in text else 0.0)
    return out


def correct_reward(verifier: Verifier) -> Reward:
    def correct(completions: list[Any], answer: list[Any], answer_type: list[Any] | None = None,
                **_: Any) -> list[float | None]:
        return verifier.reward(completions, answer, answer_type)

    return correct


def load_reward(spec: str, verifier: Verifier) -> Reward:
    """A reward by name (correct, format) or import path (module.path:function)."""
    if spec == "correct":
        return correct_reward(verifier)
    if spec == "format":
        return format_reward
    if ":" not in spec:
        raise ConfigError(f"reward '{spec}': expected correct, format or module.path:function")
    module, _, name = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"reward '{spec}' does not import: {type(err).__name__}: {err}") from None
    if not callable(fn):
        raise ConfigError(f"reward '{spec}' is not callable")
    return fn
