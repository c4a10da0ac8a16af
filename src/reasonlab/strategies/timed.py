"""Budget-aware prompting (TALE, Han et al. 2024): tell the model its budget, and remind it as it goes.

The prompt states the budget ("Use at most about 256 tokens."); every ``cadence`` generated tokens,
at the next line break, a reminder such as "(About 128 tokens left.)" is written into the trace and
generation continues. The budget is counted in tokens or in seconds of wall time.
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from reasonlab.data import Problem
from reasonlab.engines import Engine, SamplingParams
from reasonlab.strategies.base import Trace, TraceCancel, TracePolicy, TraceWriter
from reasonlab.strategies.prompts import PromptTemplate


class TimedConfig(BaseModel):
    """Budget-aware prompting: the budget in the prompt, reminders in the trace."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["timed"] = "timed"
    unit: Literal["tokens", "seconds"] = Field("tokens", description="what the budget counts")
    budget: float = Field(256, gt=0, description="the budget stated to the model (tokens, or seconds)")
    cadence: int = Field(128, ge=0, description="generated tokens between reminders; 0: only the prompt line")
    prompt_line: str = Field("Use at most about {budget} {unit}.", description="added to the question")
    reminder: str = Field("\n(About {left} {unit} left.)\n", description="written into the trace")
    line_tokens: int = Field(40, ge=1, description="most tokens spent finishing the line before a reminder")
    enforce: bool = Field(True, description="stop generating when the budget is spent (tokens: max_tokens caps too)")


class Timed(TracePolicy):
    name = "timed"
    continues_raw = True
    Config = TimedConfig

    def prompts_for(self, engine: Engine, problem: Problem, template: PromptTemplate | None = None) -> str:
        cfg: TimedConfig = self.config  # type: ignore[assignment]
        line = cfg.prompt_line.replace("{budget}", f"{cfg.budget:g}").replace("{unit}", cfg.unit)
        return (template or self.prompt).render(engine, f"{problem.question}\n{line}")

    def trace(self, problem: Problem, engine: Engine, prompt: str, params: SamplingParams, sample: int,
              cancel: TraceCancel | None = None) -> Trace:
        cfg: TimedConfig = self.config  # type: ignore[assignment]
        limit = params.max_tokens
        if cfg.unit == "tokens" and cfg.enforce:
            limit = min(limit, int(cfg.budget))
        w = TraceWriter(engine, prompt, params, sample, cancel)

        def left() -> str:
            if cfg.unit == "tokens":
                return f"{max(0, int(cfg.budget) - w.used)}"
            return f"{max(0.0, cfg.budget - (time.perf_counter() - w.start)):.0f}"

        while w.used < limit:
            if cfg.unit == "seconds" and cfg.enforce and time.perf_counter() - w.start > cfg.budget:
                w.finish = "length"
                w.events.append({"type": "budget_spent", "at_tokens": w.used})
                break
            chunk = limit - w.used if cfg.cadence == 0 else min(cfg.cadence, limit - w.used)
            w.more(chunk, params.stop)
            if w.finish != "length" or w.used >= limit:
                break
            if not w.text.endswith("\n"):  # finish the line: a reminder mid-sentence derails small models
                gen = w.more(min(cfg.line_tokens, limit - w.used), params.stop + ("\n",))
                if gen.stop_reason != "\n" or w.used >= limit:
                    break
            note = cfg.reminder.replace("{left}", left()).replace("{unit}", cfg.unit)
            w.text = w.text.rstrip("\n") + note
            w.events.append({"type": "reminder", "at_tokens": w.used, "text": note.strip()})
        return w.trace(self.verifier)
