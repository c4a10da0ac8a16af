"""The strategy seam: how a compute budget is spent on one problem.

    strategy.solve(problem, engine, budget) -> Attempt

A *trace* is one generated solution; an *attempt* is everything a strategy did for one problem:
its traces, the votes they cast, the final answer, and what it cost. Strategies never touch files;
the runner stores attempts.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from reasonlab.answers import Verifier
from reasonlab.data import Problem
from reasonlab.engines import Engine, Generation, SamplingParams
from reasonlab.strategies.prompts import PromptTemplate


class Budget(BaseModel):
    """What one problem may spend. None means unlimited (the sampling params' max_tokens still holds)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_samples: int = Field(1, ge=1, description="traces per problem")
    max_tokens: int | None = Field(None, ge=1, description="generated tokens per problem, all traces together")
    max_seconds: float | None = Field(None, gt=0, description="wall time per problem")


class Trace(BaseModel):
    """One generated solution and what happened while it was written."""

    text: str
    answer: str | None = None
    completion_tokens: int = 0
    prompt_tokens: int = 0
    finish_reason: str = "stop"
    seconds: float = 0.0
    events: list[dict[str, Any]] = Field(default_factory=list)  # tool calls, forced "Wait"s, prunes, errors

    @classmethod
    def from_generation(cls, gen: Generation, answer: str | None) -> Trace:
        events = [{"type": "error", "message": gen.error}] if gen.error else []
        return cls(text=gen.text, answer=answer, completion_tokens=gen.completion_tokens,
                   prompt_tokens=gen.prompt_tokens, finish_reason=gen.finish_reason, seconds=gen.seconds,
                   events=events)


class Attempt(BaseModel):
    """Everything a strategy did for one problem."""

    answer: str | None
    traces: list[Trace]
    votes: dict[str, float] = Field(default_factory=dict)  # answer -> weight, equivalent answers merged
    stop_reason: str = "done"
    seconds: float = 0.0

    @property
    def completion_tokens(self) -> int:
        return sum(t.completion_tokens for t in self.traces)

    @property
    def prompt_tokens(self) -> int:
        return sum(t.prompt_tokens for t in self.traces)


class Strategy(abc.ABC):
    """Base class: subclasses set ``name`` and ``Config`` and implement ``solve``."""

    name: ClassVar[str]
    Config: ClassVar[type[BaseModel]]

    def __init__(self, config: BaseModel, prompt: PromptTemplate, params: SamplingParams, verifier: Verifier) -> None:
        self.config = config
        self.prompt = prompt
        self.params = params
        self.verifier = verifier

    def prompts_for(self, engine: Engine, problem: Problem) -> str:
        """The raw text the engine continues: the chat template applied once, or a completion prompt."""
        return self.prompt.render(engine, problem.question)

    @abc.abstractmethod
    def solve(self, problem: Problem, engine: Engine, budget: Budget) -> Attempt:
        """Spend at most ``budget`` on ``problem``."""

    def close(self) -> None:
        """Release what the strategy holds (sandboxes, pools); the runner calls it at the end of a run."""
