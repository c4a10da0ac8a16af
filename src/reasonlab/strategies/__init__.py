"""Test-time strategies behind one seam (``Strategy.solve``), found through a lazy registry."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from reasonlab.answers import Verifier
from reasonlab.engines import SamplingParams
from reasonlab.errors import ConfigError
from reasonlab.registry import Registry
from reasonlab.strategies.base import Attempt, Budget, Strategy, Trace, TracePolicy
from reasonlab.strategies.prompts import TEMPLATES, PromptTemplate, get_template

STRATEGIES: Registry[type[Strategy]] = Registry("strategy")
STRATEGIES.register("single", "reasonlab.strategies.single:Single")
STRATEGIES.register("tir", "reasonlab.strategies.tir:TIR")
STRATEGIES.register("hcot", "reasonlab.strategies.hcot:HCoT")
STRATEGIES.register("forced", "reasonlab.strategies.forced:Forced")
STRATEGIES.register("timed", "reasonlab.strategies.timed:Timed")
STRATEGIES.register("vote", "reasonlab.strategies.vote:Vote")
STRATEGIES.register("prompts", "reasonlab.strategies.variants:Prompts")
STRATEGIES.register("mixture", "reasonlab.strategies.variants:Mixture")
STRATEGIES.register("branch", "reasonlab.strategies.branch:Branch")
STRATEGIES.register("conversation", "reasonlab.strategies.conversation:Conversation")


def strategy_config(name: str, options: dict[str, Any] | None) -> BaseModel:
    """The typed config of registered strategy ``name`` (its ``kind``) from ``options``, checked without any
    I/O — a search strategy's trace policy and its options too — or a ConfigError naming the option."""
    cls = STRATEGIES.get(name)
    try:
        config = cls.Config(**(options or {}))
    except ValidationError as err:
        first = err.errors()[0]
        raise ConfigError(f"strategy '{name}' option {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    policy = getattr(config, "policy", None)
    if isinstance(policy, str):  # a search strategy's traces come from a registered trace policy
        if not issubclass(STRATEGIES.get(policy), TracePolicy):
            raise ConfigError(f"strategy '{name}': policy '{policy}' is a search strategy, not a trace policy "
                              f"(use single, forced, timed, tir or hcot)")
        strategy_config(policy, getattr(config, "policy_options", None))
    return config


def make_strategy(name: str, options: dict[str, Any] | None, prompt: PromptTemplate,
                  params: SamplingParams, verifier: Verifier) -> Strategy:
    """Build a registered strategy; its options are validated against the strategy's own Config."""
    return STRATEGIES.get(name)(strategy_config(name, options), prompt, params, verifier)


__all__ = ["STRATEGIES", "TEMPLATES", "Attempt", "Budget", "PromptTemplate", "Strategy", "Trace", "TracePolicy",
           "get_template", "make_strategy", "strategy_config"]
