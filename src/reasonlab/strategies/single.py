"""The single-trace policy: one sample continuing the prompt, its extracted answer. The baseline
every other strategy beats, and the "plain" trace policy that search strategies vote over.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from reasonlab.data import Problem
from reasonlab.engines import Engine, SamplingParams
from reasonlab.strategies.base import Trace, TraceCancel, TracePolicy, engine_cancel


class SingleConfig(BaseModel):
    """No options: one trace with the run's sampling params."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["single"] = "single"


class Single(TracePolicy):
    name = "single"
    Config = SingleConfig

    def trace(self, problem: Problem, engine: Engine, prompt: str, params: SamplingParams, sample: int,
              cancel: TraceCancel | None = None) -> Trace:
        gen = engine.generate([prompt], params.model_copy(update={"n": 1}), cancel=engine_cancel(cancel, sample))[0]
        return Trace.from_generation(gen, self.verifier.extract(gen.text), sample=sample)

    def traces(self, problem: Problem, engine: Engine, prompt: str, params: SamplingParams,
               cancel: TraceCancel | None = None, first: int = 0) -> list[Trace]:
        # one batched call: the engine shares the prompt between the samples (sample s seeded seed + s)
        if params.seed is not None and first:
            params = params.model_copy(update={"seed": params.seed + first})
        gens = engine.generate([prompt], params, cancel=engine_cancel(cancel, first))
        return [Trace.from_generation(g, self.verifier.extract(g.text), sample=first + g.sample).model_copy(
            update={"prompt": prompt}) for g in gens]
