"""Budget forcing (s1, Muennighoff et al. 2025): control how long a model thinks by editing its trace.

- minimum: when the model tries to finish (end of sequence, or closing ``</think>``) before
  ``min_thinking`` tokens, the ending is replaced by "Wait" and generation continues, at most
  ``max_waits`` times (``num_waits`` forces that many regardless of length, as in s1's "Wait" x N);
- maximum: at ``max_thinking`` tokens the trace is cut and a final-answer cue
  ("\\n\\nFinal Answer: \\boxed{") is appended, so a cut trace still answers.

Everything is raw continuation of the same text, so it works on every engine (the OpenAI-compatible
one through its completions endpoint).

    >>> close_braces("\\\\boxed{\\\\frac{1}{2")
    '\\\\boxed{\\\\frac{1}{2}}'
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from reasonlab.data import Problem
from reasonlab.engines import Engine, SamplingParams
from reasonlab.strategies.base import Trace, TraceCancel, TracePolicy, TraceWriter


class ForcedConfig(BaseModel):
    """Budget forcing: a minimum and a maximum thinking length, in generated tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["forced"] = "forced"
    max_thinking: int | None = Field(None, ge=1, description="cut the trace here and cue the final answer")
    min_thinking: int | None = Field(None, ge=1, description="replace an earlier ending with the wait text")
    num_waits: int = Field(0, ge=0, description="force this many waits however long the trace already is")
    max_waits: int = Field(2, ge=0, description="most waits to reach min_thinking")
    wait_text: str = Field("\n\nWait,", description="what replaces the ending")
    think_end: str | None = Field("</think>", description="the end-of-thinking marker a wait replaces; None: only EOS")
    answer_cue: str = Field("\n\nFinal Answer: \\boxed{", description="appended to a cut trace")
    answer_tokens: int = Field(24, ge=1, description="tokens the answer after the cue may take")


def close_braces(text: str) -> str:
    """Close the braces a cut answer left open, so ``\\boxed{`` extraction finds it."""
    depth = 0
    for ch in text:
        depth += ch == "{"
        depth -= ch == "}" and depth > 0
    return text + "}" * depth


class Forced(TracePolicy):
    name = "forced"
    continues_raw = True
    Config = ForcedConfig

    def trace(self, problem: Problem, engine: Engine, prompt: str, params: SamplingParams, sample: int,
              cancel: TraceCancel | None = None) -> Trace:
        cfg: ForcedConfig = self.config  # type: ignore[assignment]
        limit = min(params.max_tokens, cfg.max_thinking or params.max_tokens)
        stop = params.stop + ((cfg.think_end,) if cfg.think_end else ())
        w = TraceWriter(engine, prompt, params, sample, cancel)
        waits = 0
        while True:
            gen = w.more(limit - w.used, stop)
            if gen.error or w.finish == "cancelled":
                break
            if w.finish == "length" or w.used >= limit:
                if cfg.max_thinking is not None and w.used >= cfg.max_thinking:
                    # the budget is spent: cut here and make the model answer now
                    w.text += cfg.answer_cue
                    w.events.append({"type": "cut", "at_tokens": w.used})
                    ans = w.more(cfg.answer_tokens, ("\n",) + params.stop, append=False)
                    w.text = close_braces(w.text + ans.text.split("$")[0])
                    w.finish = "cut"
                break
            # the model wants to stop (end of sequence, </think>, or a caller's stop string)
            ended_by_think = gen.stop_reason is not None and gen.stop_reason == cfg.think_end
            short = cfg.min_thinking is not None and w.used < cfg.min_thinking and waits < cfg.max_waits
            if waits < cfg.num_waits or short:
                waits += 1
                w.text = w.text.rstrip() + cfg.wait_text  # the ending (EOS or </think>) is dropped, "Wait" continues
                w.events.append({"type": "wait", "at_tokens": w.used})
                continue
            if ended_by_think:
                w.text += cfg.think_end  # the model may finish: give the marker back and let it write the answer
                w.more(limit - w.used, params.stop)
            break
        return w.trace(self.verifier)
