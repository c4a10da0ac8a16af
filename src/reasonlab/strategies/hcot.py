"""The ``hcot`` trace policy: hierarchical chain of thought that forgets what it has finished (research notebook 002).

The model writes nested ``[THOUGHT] … [SOLUTION] result [RETURN]`` blocks (``strategies.hcot_format``). Each time it
generates ``[RETURN]``, the block it closes is pruned from the live context — its body and ``[SOLUTION]`` go,
``[THOUGHT]``, the result and ``[RETURN]`` stay (``PruneRule``) — and generation goes on from the pruned token ids,
renumbered contiguously (prune-aware, the notebook's final method). The cut is made in the token ids and the engine
continues by ids: its prefix cache still holds everything before the cut, so only the short kept tail (result and
``[RETURN]``) is read again. That works on every engine that takes token ids (llama.cpp, transformers, a server given
--tokenizer); llama.cpp can instead move the kept cells in place (``-E kv_shift=true``).

``prune=agnostic`` keeps the original positions instead (the notebook's prune-agnostic variant): the ids go to the
engine with their positions (``PositionedIds``: a gap where each body was), the kept tail is prefilled at its old
positions and generation goes on after the last. Only engines that take positions do it (hf). The model should be
trained the same way (``sft.hcot: stages`` with ``hcot_positions: keep``).

The markers must be single tokens of the model's vocabulary: a GGUF from ``reasonlab train add-tokens`` (the markers
written into spare slots) with the adapter trained on them, or an HF model trained after ``train.tokens.add_tokens``.

Budgets as the notebook meant them: ``max_tokens`` (the run's) caps the tokens generated, ``max_live`` caps the live
context (prompt + kept tokens) — a trace that would outgrow it stops with finish reason ``length`` — and
``min_tokens`` holds off end-of-sequence until that many tokens were generated over the whole trace (the engines'
``SamplingParams.min_tokens``, given what is left of it at each call).

What was pruned is kept: the trace's text and token ids are the whole unpruned generation (so it can be read, graded,
and turned into training data), every prune is an event (what was removed, where, the live context before and after),
and an ``hcot`` event holds the trace's statistics: prunes, generated tokens, retained tokens, peak live context.

    reasonlab eval -m qwen-hcot.gguf --lora runs/train/hcot -s hcot -O max_live=1024
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from reasonlab.data import Problem
from reasonlab.engines import Engine, SamplingParams
from reasonlab.engines.base import PositionedIds, Prompt
from reasonlab.errors import ConfigError, EngineError
from reasonlab.strategies.base import Trace, TraceCancel, TracePolicy, engine_cancel, error_event
from reasonlab.strategies.hcot_format import RETURN, SOLUTION, THOUGHT, PruneRule, validate


class HcotConfig(BaseModel):
    """Pruning during generation."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["hcot"] = "hcot"
    prune: Literal["continue", "agnostic", "none"] = Field(
        "continue", description="continue: cut a returned block from the ids and continue by ids, positions "
                                "renumbered; agnostic: the same cut, original positions kept (engines that take "
                                "positions: hf); none: the same format, nothing forgotten (the reference)")
    max_live: int | None = Field(None, ge=16, description="most tokens in the live context (prompt + kept)")
    min_tokens: int = Field(0, ge=0, description="end-of-sequence is not allowed before this many generated tokens, "
                                                 "counted over the whole trace (the notebook's min tokens)")
    agnostic_by: Literal["prefill", "cache"] = Field(
        "prefill", description="agnostic: prefill the kept ids again at their positions (engines that take "
                               "positions: hf), or cut the body's cells out of the live sequence's KV cache as "
                               "[RETURN] is sampled, in one generation (engines that prune in place: llamacpp "
                               "batched) — the semantics sft.hcot: mask trains")
    keep_thought: bool = Field(True, description="a prune keeps the [THOUGHT] marker")
    keep_return: bool = Field(True, description="a prune keeps the [RETURN] marker")


class HCoT(TracePolicy):
    name = "hcot"
    continues_raw = True
    Config = HcotConfig

    def marker_ids(self, engine: Engine) -> tuple[int, int, int]:
        """The three markers' ids; ConfigError when the vocabulary does not hold each as one token."""
        out = []
        for m in (THOUGHT, SOLUTION, RETURN):
            try:
                ids = engine.tokenize(m)
            except (ConfigError, EngineError) as err:
                raise ConfigError(f"strategy 'hcot' needs the model's vocabulary ({err})") from None
            if len(ids) != 1:
                raise ConfigError(f"strategy 'hcot': {m} is {len(ids)} tokens in {engine.model}'s vocabulary, not one: "
                                  f"use a GGUF with the markers (reasonlab train add-tokens) or a model trained "
                                  f"with them")
            out.append(ids[0])
        return out[0], out[1], out[2]

    def trace(self, problem: Problem, engine: Engine, prompt: str, params: SamplingParams, sample: int,
              cancel: TraceCancel | None = None) -> Trace:
        cfg: HcotConfig = self.config  # type: ignore[assignment]
        rule = PruneRule(keep_thought=cfg.keep_thought, keep_return=cfg.keep_return)
        th, so, re_ = self.marker_ids(engine)
        if cfg.prune == "agnostic" and cfg.agnostic_by == "cache":
            return self._trace_in_place(problem, engine, prompt, params, sample, cancel, (th, so, re_))
        if cfg.prune == "agnostic" and not engine.takes_positions:
            raise ConfigError(f"strategy 'hcot' with prune=agnostic needs an engine that takes token positions (hf); "
                              f"the {engine.backend} engine does not: use prune=continue")
        start = time.perf_counter()
        prompt_ids = engine.tokenize(prompt, prompt=True)
        live = list(prompt_ids)  # what the model reads next
        pos = list(range(len(live)))  # the position of each (renumbered on a prune unless agnostic)
        generated: list[int] = []  # everything it wrote, nothing removed
        text = ""
        stack: list[list[int]] = []  # open blocks: [index of [THOUGHT] in live, index of [SOLUTION] or -1]
        events: list[dict[str, Any]] = []
        used = prefilled = cached = 0
        peak, finish, logprobs = len(live), "stop", []
        stop = tuple(params.stop) + (RETURN,)
        while True:
            room = params.max_tokens - used
            if cfg.max_live is not None:
                room = min(room, cfg.max_live - len(live))
            if room <= 0:
                finish = "length"
                break
            hold = max(params.min_tokens, cfg.min_tokens) - used
            sent: Prompt = PositionedIds(tuple(live), tuple(pos)) if cfg.prune == "agnostic" else list(live)
            g = engine.generate([sent], params.model_copy(update={"n": 1, "max_tokens": room, "stop": stop,
                                                                        "min_tokens": max(0, hold)}),
                                cancel=engine_cancel(cancel, sample, used))[0]
            used += g.completion_tokens
            prefilled += g.prefilled_tokens
            cached += g.cached_tokens
            logprobs += g.token_logprobs or []
            if g.error:
                events.append(error_event(g))
                finish = "error"
                break
            returned = g.stop_reason == RETURN
            new = list(g.token_ids) if g.token_ids is not None else engine.tokenize(g.text)
            if returned:  # the stop string cut [RETURN] from the ids: the model did write it
                new.append(re_)
            text += g.text + (RETURN if returned else "")
            for tid in new:
                live.append(tid)
                pos.append(pos[-1] + 1)
                generated.append(tid)
                peak = max(peak, len(live))  # the live context is longest just before a prune
                if tid == th:
                    stack.append([len(live) - 1, -1])
                elif tid == so and stack and stack[-1][1] < 0:
                    stack[-1][1] = len(live) - 1
                elif tid == re_ and stack:
                    t, s = stack.pop()
                    if s >= 0 and cfg.prune != "none":
                        keep = self._prune(live, t, s, rule, engine, events, len(generated))
                        live = [live[i] for i in keep]
                        pos = [pos[i] for i in keep] if cfg.prune == "agnostic" else list(range(len(keep)))
            if not returned:
                finish = g.finish_reason
                break
        retained = len(live) - len(prompt_ids)
        form = validate(text)  # the notes' failure modes: malformed pairs, runaway generation
        events.append({"type": "hcot", "prunes": sum(1 for e in events if e["type"] == "prune"),
                       "generated": len(generated), "retained": retained, "peak_live": peak,
                       "prompt_tokens": len(prompt_ids), "open_thoughts": len(stack),
                       "well_formed": form.well_formed, "problems": list(form.problems[:3]),
                       "runaway": finish == "length"})
        return Trace(text=text, answer=self.verifier.extract(text), completion_tokens=used,
                     prompt_tokens=len(prompt_ids), finish_reason=finish, seconds=time.perf_counter() - start,
                     events=events, sample=sample, prompt=prompt, prompt_token_ids=list(prompt_ids),
                     token_ids=generated, prefilled_tokens=prefilled, cached_tokens=cached,
                     token_logprobs=logprobs if params.logprobs is not None else None)

    def _trace_in_place(self, problem: Problem, engine: Engine, prompt: str, params: SamplingParams, sample: int,
                        cancel: TraceCancel | None, marks: tuple[int, int, int]) -> Trace:
        """Prune-agnostic in place: one generation; as each [RETURN] is sampled, the engine removes the block's
        cells from the live sequence before reading it (positions kept — the 4-D-mask semantics)."""
        cfg: HcotConfig = self.config  # type: ignore[assignment]
        if not engine.prunes_in_place:
            raise ConfigError(f"strategy 'hcot' with agnostic_by=cache needs an engine that prunes in place "
                              f"(llamacpp with --parallel >= 2); the {engine.backend} engine does not")
        if not cfg.keep_return:
            raise ConfigError("hcot agnostic_by=cache keeps [RETURN]: the model reads it after the cut")
        th, so, re_ = marks
        start = time.perf_counter()
        prompt_ids = engine.tokenize(prompt, prompt=True)
        stack: list[list[int]] = []
        gone: set[int] = set()  # generated indices whose cells were cut
        events: list[dict[str, Any]] = []
        state = {"seen": 0, "peak": len(prompt_ids), "capped": False}

        def prune(_i: int, _s: int, out: list[int]) -> list[tuple[int, int]]:
            spans = []
            for k in range(state["seen"], len(out)):
                state["peak"] = max(state["peak"], len(prompt_ids) + k + 1 - len(gone))
                if out[k] == th:
                    stack.append([k, -1])
                elif out[k] == so and stack and stack[-1][1] < 0:
                    stack[-1][1] = k
                elif out[k] == re_ and stack:
                    t, s = stack.pop()
                    if s < 0:
                        continue
                    span = (t + 1 if cfg.keep_thought else t, s + 1)
                    # the engine keeps the last cell it read (llama.cpp wants the next position after the highest)
                    cut = sorted(set(range(*span)) - gone - {len(out) - 2})
                    live = len(prompt_ids) + len(out) - len(gone)
                    gone.update(cut)
                    events.append({"type": "prune", "at_generated": k + 1, "removed_tokens": len(cut),
                                   "removed_text": engine.detokenize([out[j] for j in cut], special=True),
                                   "live_before": live, "live_after": live - len(cut)})
                    spans.append(span)
            state["seen"] = len(out)
            return spans

        base = engine_cancel(cancel, sample, 0)

        def stop(i: int, s: int, n: int, lp: float | None) -> bool:
            if cfg.max_live is not None and len(prompt_ids) + n - len(gone) >= cfg.max_live:
                state["capped"] = True
                return True
            return bool(base(i, s, n, lp)) if base is not None else False

        hold = max(params.min_tokens, cfg.min_tokens)
        g = engine.generate_pruning([list(prompt_ids)], params.model_copy(update={"n": 1, "min_tokens": hold}),
                                    prune, stop)[0]
        finish = "length" if state["capped"] else g.finish_reason
        if g.error:
            events.append(error_event(g))
        ids = list(g.token_ids or [])
        form = validate(g.text)
        events.append({"type": "hcot", "prunes": sum(1 for e in events if e["type"] == "prune"),
                       "generated": len(ids), "retained": len(ids) - len(gone), "peak_live": state["peak"],
                       "prompt_tokens": len(prompt_ids), "open_thoughts": len(stack),
                       "well_formed": form.well_formed, "problems": list(form.problems[:3]),
                       "runaway": finish == "length"})
        return Trace(text=g.text, answer=self.verifier.extract(g.text), completion_tokens=g.completion_tokens,
                     prompt_tokens=len(prompt_ids), finish_reason=finish, seconds=time.perf_counter() - start,
                     events=events, sample=sample, prompt=prompt, prompt_token_ids=list(prompt_ids), token_ids=ids,
                     prefilled_tokens=g.prefilled_tokens, cached_tokens=g.cached_tokens,
                     token_logprobs=g.token_logprobs if params.logprobs is not None else None)

    @staticmethod
    def _prune(live: list[int], t: int, s: int, rule: PruneRule, engine: Engine, events: list[dict[str, Any]],
               at: int) -> list[int]:
        """The indices of ``live`` a prune keeps: all but the returned block's body and [SOLUTION] (and the markers
        the rule drops)."""
        cut_from = t + 1 if rule.keep_thought else t
        removed = live[cut_from: s + 1]
        keep = list(range(cut_from)) + list(range(s + 1, len(live)))
        if not rule.keep_return:
            keep = keep[:-1]
        events.append({"type": "prune", "at_generated": at, "removed_tokens": len(live) - len(keep),
                       "removed_text": engine.detokenize(removed, special=True), "live_before": len(live),
                       "live_after": len(keep)})
        return keep
