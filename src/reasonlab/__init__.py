"""reasonlab: make small language models reason better at math, and measure it honestly.

    >>> from reasonlab import load_engine, solve, evaluate, EvalConfig            # doctest: +SKIP
    >>> engine = load_engine("qwen2.5-coder-0.5b")                               # doctest: +SKIP
    >>> solve("What is 17 * 3?", engine).answer                                  # doctest: +SKIP
    '51'
    >>> evaluate(EvalConfig.from_layers({"dataset": {"limit": 20}}), out="runs/demo", engine=engine)  # doctest: +SKIP

Most names load lazily so that ``import reasonlab`` stays light. ``evaluate`` and ``solve`` are bound
eagerly: ``reasonlab.evaluate`` is also a subpackage, and a lazy name would lose to the submodule
once anything imports it.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

from reasonlab.evaluate import EvalConfig as EvalConfig, evaluate as evaluate, solve as solve  # noqa: E402  (see the docstring)

_EXPORTS = {
    "load_engine": "reasonlab.engines",
    "Engine": "reasonlab.engines",
    "EngineConfig": "reasonlab.engines",
    "SamplingParams": "reasonlab.engines",
    "Generation": "reasonlab.engines",
    "Verifier": "reasonlab.answers",
    "VerifierConfig": "reasonlab.answers",
    "load_problems": "reasonlab.data",
    "Problem": "reasonlab.data",
    "DatasetConfig": "reasonlab.data",
    "ReasonlabError": "reasonlab.errors",
    "read_run": "reasonlab.runs",
    "ProblemRecord": "reasonlab.runs",
    "ScorerConfig": "reasonlab.strategies.scoring",
    "load_scorer": "reasonlab.strategies.scoring",
}
__all__ = sorted([*_EXPORTS, "EvalConfig", "evaluate", "solve"])


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'reasonlab' has no attribute '{name}'")
