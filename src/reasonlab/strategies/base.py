"""The strategy seam: how a compute budget is spent on one problem.

    strategy.solve(problem, engine, budget) -> Attempt

A *trace* is one generated solution; an *attempt* is everything a strategy did for one problem:
its traces, the votes they cast, the final answer, and what it cost. Strategies never touch files;
the runner stores attempts.

Two kinds of strategy share the seam. A *trace policy* (``TracePolicy``: single, forced, timed, tir)
writes one trace per sample and also answers ``traces(problem, engine, prompt, params, cancel)`` for
many samples at once; a *search strategy* (vote, prompts, mixture, branch) spends a budget across
traces of any policy, which it builds from the registry by name. So "early-stop vote over
budget-forced traces" is configuration: ``vote`` with ``policy: forced``.
"""

from __future__ import annotations

import abc
import copy
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from reasonlab.answers import Verifier
from reasonlab.data import Problem
from reasonlab.engines import Engine, Generation, Prompt, SamplingParams
from reasonlab.engines.base import spelled_ids
from reasonlab.errors import ConfigError, EngineError
from reasonlab.strategies.prompts import PromptTemplate


class Budget(BaseModel):
    """What one problem may spend. None means unlimited (the sampling params' max_tokens still holds)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_samples: int | None = Field(None, ge=1, description="traces per problem (caps a search strategy's own count)")
    max_tokens: int | None = Field(None, ge=1, description="generated tokens per problem, all traces together")
    max_seconds: float | None = Field(None, gt=0, description="wall time per problem")
    run_seconds: float | None = Field(
        None, gt=0, description="wall time for the whole run (AIMO-style): each problem gets the time left divided by "
                                "the problems left (never below min_problem_seconds); time one leaves flows to the next")
    min_problem_seconds: float = Field(5.0, gt=0, description="floor of a problem's share of run_seconds")

    def deadline(self, start: float) -> float | None:
        """perf_counter time at which a problem started at ``start`` must stop (None: no limit)."""
        return start + self.max_seconds if self.max_seconds is not None else None


# (sample, tokens so far in this trace, log-prob of the newest token or None) -> end this trace now
TraceCancel = Callable[[int, int, "float | None"], bool]


class Trace(BaseModel):
    """One generated solution and what happened while it was written."""

    text: str
    answer: str | None = None
    completion_tokens: int = 0
    prompt_tokens: int = 0
    finish_reason: str = "stop"
    seconds: float = 0.0
    events: list[dict[str, Any]] = Field(default_factory=list)  # tool calls, forced "Wait"s, prunes, errors
    sample: int = 0  # which sample of the problem (its seed offset)
    tags: dict[str, Any] = Field(default_factory=dict)  # who wrote it: prompt variant, model, branch path
    token_logprobs: list[float] | None = None  # kept only when a strategy asks (confidence rules, analysis)
    confidence: float | None = None  # lowest sliding-window mean token log-prob (DeepConf), when measured
    score: float | None = None  # the outcome verifier's P(correct) (``strategies.scoring``), when scored
    valid: bool = True  # False: the trace does not vote (cancelled, no code under SC-TIR, invented output)
    dropped: str | None = None  # why it does not vote
    prompt: str | None = None  # the raw prompt this trace continued (the chat template applied), as the model saw it
    prefilled_tokens: int = 0  # prompt tokens the engine evaluated, over all the trace's calls
    cached_tokens: int = 0  # prompt tokens served from the engine's prefix cache instead, over all its calls
    # the prompt's token ids and the ids after it, as the model read them: what it sampled, and in ``injected``
    # spans [start, end) of token_ids, text a policy added (tool output, a "Wait,"), tokenised on its own.
    # None where the engine has no vocabulary (a server without a tokenizer)
    prompt_token_ids: list[int] | None = None
    token_ids: list[int] | None = None
    injected: list[tuple[int, int]] = Field(default_factory=list)

    @classmethod
    def from_generation(cls, gen: Generation, answer: str | None, sample: int = 0) -> Trace:
        events = [error_event(gen)] if gen.error else []
        return cls(text=gen.text, answer=answer, completion_tokens=gen.completion_tokens,
                   prompt_tokens=gen.prompt_tokens, finish_reason=gen.finish_reason, seconds=gen.seconds,
                   events=events, sample=sample, token_logprobs=gen.token_logprobs,
                   prefilled_tokens=gen.prefilled_tokens, cached_tokens=gen.cached_tokens,
                   prompt_token_ids=gen.prompt_token_ids, token_ids=gen.token_ids)


class Attempt(BaseModel):
    """Everything a strategy did for one problem."""

    answer: str | None
    traces: list[Trace]
    votes: dict[str, float] = Field(default_factory=dict)  # answer -> weight, equivalent answers merged
    stop_reason: str = "done"
    seconds: float = 0.0
    meta: dict[str, Any] = Field(default_factory=dict)  # strategy facts: thresholds, waves, votes at each stop check

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
    continues_raw: ClassVar[bool] = False  # continues the model's text (needs the chat template as text)
    scores_traces: ClassVar[bool] = False  # takes an outcome verifier and scores its traces (the vote family)

    def __init__(self, config: BaseModel, prompt: PromptTemplate, params: SamplingParams, verifier: Verifier) -> None:
        self.config = config
        self.prompt = prompt
        self.params = params
        self.verifier = verifier
        self.scorer: Any = None  # an outcome verifier (``strategies.scoring.Scorer``) the runner hands over

    def needs_scorer(self) -> bool:
        """Does this configuration score traces with an outcome verifier (the runner then loads one)?"""
        return False

    def use_scorer(self, scorer: Any) -> None:
        """Take the outcome verifier the runner loaded (once, for the whole run)."""
        self.scorer = scorer

    def prompts_for(self, engine: Engine, problem: Problem, template: PromptTemplate | None = None) -> str:
        """The raw text the engine continues: the chat template applied once, or a completion prompt.
        ``template`` replaces the run's (prompt variants) and still goes through the policy's additions."""
        return (template or self.prompt).render(engine, problem.question)

    @abc.abstractmethod
    def solve(self, problem: Problem, engine: Engine, budget: Budget) -> Attempt:
        """Spend at most ``budget`` on ``problem``."""

    def close(self) -> None:
        """Release what the strategy holds (sandboxes, pools); the runner calls it at the end of a run."""


class TracePolicy(Strategy):
    """A strategy that writes one trace per sample (single, forced, timed, tir).

    Subclasses implement ``trace``; ``traces`` writes ``params.n`` of them concurrently (threads, so a
    batching engine decodes them together) and policies that can do better (one batched call) override it.
    """

    @abc.abstractmethod
    def trace(self, problem: Problem, engine: Engine, prompt: str, params: SamplingParams, sample: int,
              cancel: TraceCancel | None = None) -> Trace:
        """One trace continuing ``prompt``; ``params.n`` is 1 and ``params.seed`` already this sample's."""

    def traces(self, problem: Problem, engine: Engine, prompt: str, params: SamplingParams,
               cancel: TraceCancel | None = None, first: int = 0) -> list[Trace]:
        """``params.n`` traces numbered ``first``...; trace s is seeded ``params.seed + first + s`` when a seed is set."""
        def one(s: int) -> Trace:
            seed = None if params.seed is None else params.seed + first + s
            return self.trace(problem, engine, prompt, params.model_copy(update={"n": 1, "seed": seed}),
                              first + s, cancel)

        if params.n == 1:
            out = [one(0)]
        else:
            with ThreadPoolExecutor(max_workers=params.n, thread_name_prefix=f"{self.name}-trace") as pool:
                out = list(pool.map(one, range(params.n)))
        for t in out:
            t.prompt = prompt
        return out

    def solve(self, problem: Problem, engine: Engine, budget: Budget) -> Attempt:
        start = time.perf_counter()
        params = self.params
        if budget.max_tokens is not None and budget.max_tokens < params.max_tokens:
            params = params.model_copy(update={"max_tokens": budget.max_tokens})
        deadline = budget.deadline(start)
        cancel = None if deadline is None else (lambda s, n, lp: time.perf_counter() > deadline)
        trace = self.traces(problem, engine, self.prompts_for(engine, problem), params.model_copy(update={"n": 1}),
                            cancel)[0]
        votes = {trace.answer: 1.0} if trace.answer is not None else {}
        reason = ("error" if trace.finish_reason == "error" else
                  "budget_time" if trace.finish_reason == "cancelled" else "done")
        return Attempt(answer=trace.answer, traces=[trace], votes=votes, stop_reason=reason,
                       seconds=time.perf_counter() - start)


def error_event(gen: Generation) -> dict[str, Any]:
    """The trace event of a failed engine call: a problem with one fails as a whole (not retried when
    retrying cannot help)."""
    return {"type": "error", "message": gen.error or "engine error", "retryable": gen.retryable}


class Continuation:
    """Raw text written over several engine calls, and the token ids that spell it.

    ``send(text)`` is what to ``generate`` from to continue ``prompt + text``: token ids where the engine has
    a vocabulary, else the text. The ids are the ones the model sampled for what it wrote, and for text a
    policy added (a tool's output, a "Wait,") the engine's tokenisation of that text on its own, so a
    continuation never re-tokenises across a boundary: the model continues the very tokens it produced, and
    the prefix cache finds them. ``take(gen)`` records what a call generated. A policy may also edit the
    text (strip a trailing space, cut an ending): the ids are cut back to the longest head that still
    spells a prefix of the new text, and the rest is tokenised as added text.
    """

    def __init__(self, engine: Engine, prompt: str) -> None:
        self.engine, self.prompt = engine, prompt
        try:
            self.prompt_ids: list[int] | None = engine.tokenize(prompt, prompt=True)
        except (ConfigError, EngineError):  # no vocabulary here (a server without a tokenizer): text it is
            self.prompt_ids = None
        self.ids: list[int] = []  # after the prompt
        self.spelled = ""  # the text self.ids spell
        self.pieces: list[tuple[int, int, bool]] = []  # per piece: (ids end, text end, added by the policy)

    def copy(self) -> Continuation:
        other = copy.copy(self)
        other.ids, other.pieces = list(self.ids), list(self.pieces)
        return other

    def send(self, text: str) -> Prompt:
        if self.prompt_ids is None:
            return self.prompt + text
        self._fit(text)
        return self.prompt_ids + self.ids

    def take(self, gen: Generation) -> None:
        """Append the ids ``gen`` sampled (those that spell a prefix of its text)."""
        if self.prompt_ids is None or gen.error:
            return
        if gen.token_ids is None:  # this engine cannot say: continue by text from here on
            self.prompt_ids = None
            return
        said = self.engine.detokenize(gen.token_ids)
        if gen.text.startswith(said):
            self._piece(gen.token_ids, said, added=False)

    def final(self, text: str) -> tuple[list[int] | None, list[int] | None, list[tuple[int, int]]]:
        """(prompt ids, ids spelling ``text``, injected spans) for the record; Nones without a vocabulary."""
        if self.prompt_ids is None:
            return None, None, []
        self._fit(text)
        spans, start = [], 0
        for end, _, added in self.pieces:
            if added:
                spans.append((start, end))
            start = end
        return list(self.prompt_ids), list(self.ids), spans

    def _piece(self, ids: list[int], text: str, added: bool) -> None:
        if ids:
            self.ids += ids
            self.spelled += text
            self.pieces.append((len(self.ids), len(self.spelled), added))

    def _fit(self, text: str) -> None:
        """Make the ids spell ``text`` exactly: cut back to the longest head that spells a prefix of it,
        then tokenise what is left as added text."""
        while not text.startswith(self.spelled):
            _, _, added = self.pieces.pop()
            i0, t0 = self.pieces[-1][:2] if self.pieces else (0, 0)
            piece = self.ids[i0:]
            self.ids, self.spelled = self.ids[:i0], self.spelled[:t0]
            if text.startswith(self.spelled):  # keep the head of the piece that still fits
                keep = spelled_ids(self.engine.detokenize, piece, text[t0:])
                self._piece(keep, self.engine.detokenize(keep), added)
        rest = text[len(self.spelled):]
        if rest:
            self._piece(self.engine.tokenize(rest), rest, added=True)


class TraceWriter:
    """A trace written in several raw engine calls (forced, timed, tir): the text after the prompt, the
    tokens it spent, its events and log-probs. ``more`` continues ``prompt + text``; the policy edits
    ``text`` in between (a "Wait", a reminder, a tool's output); ``trace`` packs the result.

    The cancel hook sees the trace's running token count, and every call's log-probs are kept in
    order, so budget and confidence rules read the whole trace, not one call of it.
    """

    def __init__(self, engine: Engine, prompt: str, params: SamplingParams, sample: int,
                 cancel: TraceCancel | None) -> None:
        self.engine, self.prompt, self.params, self.sample, self.cancel = engine, prompt, params, sample, cancel
        self.start = time.perf_counter()
        self.text = ""
        self.used = self.prompt_tokens = self.prefilled = self.cached = 0
        self.finish = "stop"
        self.events: list[dict[str, Any]] = []
        self.logprobs: list[float] = []
        self.cont = Continuation(engine, prompt)

    def more(self, max_tokens: int, stop: tuple[str, ...], append: bool = True) -> Generation:
        """Continue the trace by at most ``max_tokens``, by token ids where the engine has them (see
        ``Continuation``); the text is appended unless ``append`` is False (the caller edits it first). An
        engine error becomes an ``error`` event."""
        p = self.params.model_copy(update={"n": 1, "max_tokens": max(1, max_tokens), "stop": stop})
        gen = self.engine.generate([self.cont.send(self.text)], p,
                                   cancel=engine_cancel(self.cancel, self.sample, self.used))[0]
        self.cont.take(gen)
        self.logprobs.extend(gen.token_logprobs or [])
        self.used += gen.completion_tokens
        self.prompt_tokens = self.prompt_tokens or gen.prompt_tokens
        self.cached += gen.cached_tokens  # a continuation re-reads the trace: what the prefix cache saved
        self.prefilled += gen.prefilled_tokens
        self.finish = gen.finish_reason
        if append:
            self.text += gen.text
        if gen.error:
            self.events.append(error_event(gen))
        return gen

    def trace(self, verifier: Verifier) -> Trace:
        prompt_ids, ids, injected = self.cont.final(self.text)
        return Trace(text=self.text, answer=verifier.extract(self.text), completion_tokens=self.used,
                     prompt_token_ids=prompt_ids, token_ids=ids, injected=injected,
                     prompt_tokens=self.prompt_tokens, finish_reason=self.finish,
                     seconds=time.perf_counter() - self.start, events=self.events, sample=self.sample,
                     token_logprobs=self.logprobs if self.params.logprobs is not None else None, prompt=self.prompt,
                     prefilled_tokens=self.prefilled, cached_tokens=self.cached)


def engine_cancel(cancel: TraceCancel | None, first: int = 0, used: int = 0) -> Any:
    """Adapt a trace-level cancel hook to the engine's (prompt, sample, tokens, logprob) hook.

    ``first`` numbers the call's samples; ``used`` adds tokens the trace spent in earlier calls.
    """
    if cancel is None:
        return None
    return lambda _i, s, n, lp: cancel(first + s, used + n, lp)
