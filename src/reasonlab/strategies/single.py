"""The single-trace strategy: one sample, its extracted answer. The baseline every other strategy beats."""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, ConfigDict

from reasonlab.data import Problem
from reasonlab.engines import Engine
from reasonlab.strategies.base import Attempt, Budget, Strategy, Trace


class SingleConfig(BaseModel):
    """No options: one trace with the run's sampling params."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["single"] = "single"


class Single(Strategy):
    name = "single"
    Config = SingleConfig

    def solve(self, problem: Problem, engine: Engine, budget: Budget) -> Attempt:
        start = time.perf_counter()
        params = self.params
        if budget.max_tokens is not None and budget.max_tokens < params.max_tokens:
            params = params.model_copy(update={"max_tokens": budget.max_tokens})
        gen = engine.generate([self.prompts_for(engine, problem)], params.model_copy(update={"n": 1}))[0]
        trace = Trace.from_generation(gen, self.verifier.extract(gen.text))
        votes = {trace.answer: 1.0} if trace.answer is not None else {}
        return Attempt(answer=trace.answer, traces=[trace], votes=votes,
                       stop_reason="error" if gen.finish_reason == "error" else "done",
                       seconds=time.perf_counter() - start)
