"""Self-consistency that stops early, over traces of any policy; prompt variants; model mixtures.

``vote`` samples up to ``samples`` traces of its ``policy`` (single, forced, timed, tir) in waves and
after each wave asks its stop rule (``reasonlab.strategies.stopping``) whether the vote is decided:

    none        every sample (maj@k)
    window      ESC: waves of ``window``; stop when a wave is unanimous
    adaptive    Adaptive-Consistency: stop when P(leader is the mode) >= ``threshold``
    quorum      stop when the leader has >= ``quorum_votes`` votes and > ``quorum_fraction`` of them
    unbeatable  stop when the samples left could not overturn the leader (never changes the answer)
    confidence  DeepConf online: the first ``warmup`` traces run whole and calibrate a threshold (a
                percentile of their lowest sliding-window mean token log-prob); every later trace is
                cut mid-generation as soon as its window mean falls below it; the vote stops at a
                (confidence-weighted) ``consensus`` share
    verifier    stop once the leading answer holds ``verifier_share`` of the vote and one of its traces
                scores at least ``verifier_score`` with the outcome verifier

With an outcome verifier (``strategies.scoring``, loaded by the runner: ``--scorer``) each trace that can vote
is scored after its wave: ``weight: verifier`` weighs votes by the score, ``select: best`` takes the answer
of the best-scored trace (best-of-N), ``min_score`` keeps low-scored traces out of the vote (SC-TIR's
verifier filter), and the ``verifier`` stop rule ends a vote the verifier has settled.

Answers the verifier calls equivalent share one vote. Traces do not vote when cancelled or cut, and,
for SC-TIR, when they ran no code (``require_code``) or wrote an ```output block the sandbox did not
(``drop_invented_output``); ``integer_mod`` maps answers to non-negative integers mod m outside the model.

Stopping saves tokens only when samples are not all launched at once: votes run in waves, and the
runner keeps several problems in flight so a batching engine fills the slots a decided problem frees.
A problem's time and token budgets cancel samples still in flight (their tokens so far are counted).

``prompts`` and ``mixture`` (``strategies/variants.py``) are votes whose samples come from prompt
variants or from several models.
"""

from __future__ import annotations

import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from reasonlab.answers.normalize import to_number
from reasonlab.data import Problem
from reasonlab.engines import Engine, SamplingParams
from reasonlab.errors import ConfigError
from reasonlab.strategies import stopping
from reasonlab.strategies.base import Attempt, Budget, Strategy, Trace, TracePolicy

StopRule = Literal["none", "window", "adaptive", "quorum", "unbeatable", "confidence", "verifier"]
Weight = Literal["count", "logprob", "confidence", "length", "verifier"]


class VoteConfig(BaseModel):
    """Self-consistency with an optional early-stop rule, over traces of any registered trace policy."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["vote"] = "vote"
    samples: int = Field(8, ge=1, description="most traces per problem (k)")
    policy: str = Field("single", description="trace policy: single, forced, timed, tir")
    policy_options: dict[str, Any] = Field(default_factory=dict, description="the policy's own options")
    stop: StopRule = Field("none", description="early-stop rule")
    wave: int | None = Field(None, ge=1, description="traces launched together; default: k (none), "
                                                      "window (window), 2 (adaptive, quorum, confidence)")
    window: int = Field(2, ge=1, description="window: wave size that must agree")
    threshold: float = Field(0.95, gt=0, lt=1, description="adaptive: posterior probability to stop at")
    quorum_votes: float = Field(2, gt=0, description="quorum: votes the leader needs")
    quorum_fraction: float = Field(0.5, ge=0, lt=1, description="quorum: share of all votes the leader must exceed")
    warmup: int = Field(2, ge=1, description="confidence: traces run whole to calibrate the threshold")
    conf_window: int = Field(64, ge=1, description="confidence: tokens in the sliding window")
    conf_keep: float = Field(0.9, gt=0, le=1, description="confidence: share of warmup traces the threshold "
                                                            "would keep (0.9 = DeepConf-high, 0.1 = -low)")
    consensus: float | None = Field(0.95, gt=0, le=1, description="confidence: stop at this vote share; None: never")
    min_samples: int = Field(1, ge=1, description="no rule stops before this many traces")
    weight: Weight = Field("count", description="vote weight: 1, exp(mean log-prob), exp(lowest window mean), "
                                                "shorter traces weigh more (median length / length), or the "
                                                "outcome verifier's score")
    select: Literal["vote", "best"] = Field("vote", description="vote: the answer with the most weight; best: the "
                                                                "answer of the trace the verifier scores highest")
    min_score: float | None = Field(None, ge=0, le=1, description="traces the verifier scores below this do not "
                                                                  "vote (SC-TIR's verifier filter)")
    verifier_share: float = Field(0.5, gt=0, le=1, description="stop verifier: the leader's share of the vote")
    verifier_score: float = Field(0.9, gt=0, le=1, description="stop verifier: the score one of its traces needs")
    require_code: bool = Field(False, description="SC-TIR: traces that ran no code do not vote")
    drop_invented_output: bool = Field(False, description="SC-TIR: traces with an ```output block the "
                                                          "sandbox did not write do not vote")
    integer_mod: int | None = Field(None, ge=2, description="vote on int(answer) mod this (AIMO: 1000); "
                                                            "non-integers do not vote")
    keep_logprobs: bool = Field(False, description="store each trace's token log-probs (for offline analysis)")

    @model_validator(mode="after")
    def _check(self) -> VoteConfig:
        if self.stop == "confidence" and self.warmup >= self.samples:
            raise ValueError(f"confidence: warmup ({self.warmup}) must be below samples ({self.samples})")
        return self

    def wave_size(self) -> int:
        if self.wave is not None:
            return self.wave
        return {"none": self.samples, "window": self.window}.get(self.stop, 2)


@dataclass
class _Group:
    """Equivalent answers: one vote bucket."""

    answer: str
    weight: float = 0.0
    count: int = 0
    first: int = 0  # sample that opened it (ties go to the earlier)
    best_score: float | None = None  # the outcome verifier's highest score among its traces, when scored


def tally(voters: list[tuple[str, float, int]], verifier: Any, answer_type: Any = None,
          scores: list[float | None] | None = None) -> list[_Group]:
    """Vote buckets from (answer, weight, sample) in sample order: equivalent spellings ("1/2" and
    "\\frac{1}{2}") share one bucket. The winner is ``max(groups, key=lambda g: (g.weight, -g.first))``.
    ``scores`` (one per voter, verifier scores) give each bucket its best score."""
    groups: list[_Group] = []
    for i, (ans, weight, sample) in enumerate(voters):
        group = next((g for g in groups if g.answer == ans), None)
        if group is None:
            group = next((g for g in groups if verifier.equivalent(ans, g.answer, answer_type)), None)
        if group is None:
            group = _Group(answer=ans, first=sample)
            groups.append(group)
        group.weight += weight
        group.count += 1
        score = scores[i] if scores is not None else None
        if score is not None:
            group.best_score = score if group.best_score is None else max(group.best_score, score)
    return groups


def winner(groups: list[_Group]) -> str | None:
    """The answer with the most weight; ties go to the answer an earlier sample gave."""
    best = max(groups, key=lambda g: (g.weight, -g.first), default=None)
    return best.answer if best else None


@dataclass
class _State:
    """One problem's vote while it runs; the cancel hook reads it from the engine's thread."""

    deadline: float | None
    max_tokens: int | None
    conf_window: int
    spent: int = 0
    inflight: dict[int, int] = field(default_factory=dict)
    running: dict[int, stopping.RunningConfidence] = field(default_factory=dict)
    threshold: float | None = None
    cut: set[int] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def cancel(self, sample: int, n: int, logprob: float | None) -> bool:
        with self.lock:
            self.inflight[sample] = n
            if self.deadline is not None and time.perf_counter() > self.deadline:
                return True
            if self.max_tokens is not None and self.spent + sum(self.inflight.values()) >= self.max_tokens:
                return True
            if self.threshold is not None and logprob is not None:
                run = self.running.setdefault(sample, stopping.RunningConfidence(self.conf_window))
                mean = run.add(logprob)
                if mean is not None and mean < self.threshold:
                    self.cut.add(sample)
                    return True
        return False


class Vote(Strategy):
    name = "vote"
    Config = VoteConfig
    scores_traces = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from reasonlab.strategies import make_strategy  # the registry imports this module lazily

        cfg: VoteConfig = self.config  # type: ignore[assignment]
        # strategy_config checked that the policy is a trace policy
        self.policy: TracePolicy = make_strategy(cfg.policy, cfg.policy_options, self.prompt, self.params,
                                                 self.verifier)  # type: ignore[assignment]

    @property
    def continues_raw(self) -> bool:  # type: ignore[override]
        return self.policy.continues_raw

    def needs_scorer(self) -> bool:
        cfg: VoteConfig = self.config  # type: ignore[assignment]
        return (cfg.weight == "verifier" or cfg.select == "best" or cfg.stop == "verifier"
                or cfg.min_score is not None)

    # --- who writes sample i: hooks the variants and mixtures override -----------------------------------
    def assignment(self, problem: Problem, engine: Engine, sample: int) -> tuple[Engine, str, dict[str, Any]]:
        """(engine, raw prompt, tags) for ``sample``."""
        return engine, self.policy.prompts_for(engine, problem), {}

    # --- the vote ----------------------------------------------------------------------------------------
    def _needs_logprobs(self) -> bool:
        cfg: VoteConfig = self.config  # type: ignore[assignment]
        return cfg.stop == "confidence" or cfg.weight in ("logprob", "confidence") or cfg.keep_logprobs

    def _key(self, answer: str | None) -> tuple[str | None, str | None]:
        """(answer as voted, or None with the reason it cannot vote)."""
        cfg: VoteConfig = self.config  # type: ignore[assignment]
        if answer is None:
            return None, "no answer"
        if cfg.integer_mod is None:
            return answer, None
        value = to_number(answer)
        if value is None or value != int(value):
            return None, "not an integer"
        return str(int(value) % cfg.integer_mod), None

    def _judge(self, trace: Trace, state: _State) -> None:
        """Mark traces that do not vote, and measure confidence."""
        cfg: VoteConfig = self.config  # type: ignore[assignment]
        from reasonlab.strategies.tir import invented_outputs, tool_calls

        if trace.token_logprobs:
            trace.confidence = stopping.lowest_group_confidence(trace.token_logprobs, cfg.conf_window)
        reason = None
        if trace.sample in state.cut:
            reason = "low confidence"
        elif trace.finish_reason in ("cancelled", "error"):
            reason = trace.finish_reason
        elif cfg.require_code and tool_calls(trace) == 0:
            reason = "no code"
        elif cfg.drop_invented_output and invented_outputs(trace) > 0:
            reason = "invented output"
        if reason is None:
            key, reason = self._key(trace.answer)
            trace.tags["vote_answer"] = key
        if reason is not None:
            trace.valid, trace.dropped = False, reason
        if not cfg.keep_logprobs:
            trace.token_logprobs = None

    def _weight(self, trace: Trace, median_len: float) -> float:
        cfg: VoteConfig = self.config  # type: ignore[assignment]
        if cfg.weight == "confidence" and trace.confidence is not None:
            return math.exp(trace.confidence)
        if cfg.weight == "logprob" and trace.tags.get("mean_logprob") is not None:
            return math.exp(trace.tags["mean_logprob"])
        if cfg.weight == "length":
            return median_len / max(1, trace.completion_tokens)
        if cfg.weight == "verifier":
            return trace.score or 0.0
        return 1.0

    def _score(self, problem: Problem, wave: list[Trace], cost: dict[str, float]) -> None:
        """The verifier's score for each trace of the wave that can vote; low scores leave the vote."""
        cfg: VoteConfig = self.config  # type: ignore[assignment]
        if self.scorer is None and not self.needs_scorer():
            return  # without a verifier, nothing to score; with one, every voting trace is scored (for analysis)
        if self.scorer is None:
            raise ConfigError("this vote uses an outcome verifier (weight verifier, select best, stop verifier or "
                              "min_score): pass --scorer (or scorer: in the recipe)")
        voters = [t for t in wave if t.valid and t.tags.get("vote_answer") is not None]
        scored = self.scorer.score(problem, [t.text for t in voters])
        cost["traces"] += len(voters)
        cost["tokens"] += scored.tokens
        cost["seconds"] += scored.seconds
        for t, p in zip(voters, scored.scores):
            t.score = round(p, 4)
            if cfg.min_score is not None and p < cfg.min_score:
                t.valid, t.dropped = False, "low score"

    def _final(self, groups: list[_Group], traces: list[Trace], answer_type: Any = None) -> str | None:
        """The vote's answer, or (select: best) the best-scored voting trace's (ties: the earlier sample)."""
        cfg: VoteConfig = self.config  # type: ignore[assignment]
        if cfg.select == "best":
            voters = [t for t in traces if t.valid and t.tags.get("vote_answer") is not None and t.score is not None]
            if voters:
                best = max(voters, key=lambda t: (t.score, -t.sample))
                key = best.tags["vote_answer"]
                # the bucket's spelling, so the answer is one of the reported votes
                return next((g.answer for g in groups if g.answer == key), None) or next(
                    (g.answer for g in groups if self.verifier.equivalent(key, g.answer, answer_type)), key)
        return winner(groups)

    def _tally(self, traces: list[Trace], answer_type: Any) -> list[_Group]:
        voters = [t for t in traces if t.valid and t.tags.get("vote_answer") is not None]
        lengths = sorted(t.completion_tokens for t in voters) or [1]
        median_len = float(lengths[len(lengths) // 2])
        return tally([(t.tags["vote_answer"], self._weight(t, median_len), t.sample) for t in voters],
                     self.verifier, answer_type, scores=[t.score for t in voters])

    def _decided(self, groups: list[_Group], wave: list[Trace], n_done: int, k: int) -> str | None:
        cfg: VoteConfig = self.config  # type: ignore[assignment]
        if n_done < cfg.min_samples:
            return None
        votes = {g.answer: g.weight for g in groups}
        if cfg.stop == "window":
            keys = [t.tags.get("vote_answer") if t.valid else None for t in wave]
            if len(keys) >= cfg.window and stopping.window_unanimous(keys):
                return "window_unanimous"
            # equivalent spellings count as agreeing too
            if len(groups) == 1 and all(t.valid for t in wave) and len(wave) >= cfg.window:
                return "window_unanimous"
        elif cfg.stop == "adaptive" and stopping.adaptive_confident(votes, cfg.threshold):
            return "adaptive_confident"
        elif cfg.stop == "quorum" and stopping.quorum_reached(votes, cfg.quorum_votes, cfg.quorum_fraction):
            return "quorum"
        elif cfg.stop == "unbeatable" and stopping.unbeatable({g.answer: g.count for g in groups}, k - n_done):
            return "unbeatable"
        elif (cfg.stop == "confidence" and cfg.consensus is not None and n_done >= cfg.warmup
              and stopping.consensus_reached(votes, cfg.consensus)):
            return "consensus"
        elif cfg.stop == "verifier" and groups:
            lead = max(groups, key=lambda g: (g.weight, -g.first))
            if stopping.verifier_settled(lead.weight, sum(g.weight for g in groups), lead.best_score,
                                         cfg.verifier_share, cfg.verifier_score):
                return "verifier_settled"
        return None

    def _run_wave(self, problem: Problem, engine: Engine, samples: list[int], params: SamplingParams,
                  state: _State) -> list[Trace]:
        """Run the samples; runs of consecutive samples with one engine and prompt go as one call."""
        runs: list[tuple[Engine, str, dict[str, Any], list[int]]] = []
        for s in samples:
            eng, prompt, tags = self.assignment(problem, engine, s)
            if runs and runs[-1][0] is eng and runs[-1][1] == prompt:
                runs[-1][3].append(s)
            else:
                runs.append((eng, prompt, tags, [s]))

        def go(run: tuple[Engine, str, dict[str, Any], list[int]]) -> list[Trace]:
            eng, prompt, tags, ss = run
            out = self.policy.traces(problem, eng, prompt, params.model_copy(update={"n": len(ss)}),
                                     state.cancel, first=ss[0])
            for t in out:
                t.tags.update(tags)
                if t.token_logprobs:
                    t.tags["mean_logprob"] = round(sum(t.token_logprobs) / len(t.token_logprobs), 4)
            return out

        if len(runs) == 1:
            return go(runs[0])
        with ThreadPoolExecutor(max_workers=len(runs), thread_name_prefix="vote-wave") as pool:
            return [t for part in pool.map(go, runs) for t in part]

    def solve(self, problem: Problem, engine: Engine, budget: Budget) -> Attempt:
        cfg: VoteConfig = self.config  # type: ignore[assignment]
        start = time.perf_counter()
        k = min(cfg.samples, budget.max_samples or cfg.samples)
        params = self.params
        if self._needs_logprobs():
            params = params.model_copy(update={"logprobs": 0})
        if budget.max_tokens is not None:
            params = params.model_copy(update={"max_tokens": min(params.max_tokens, budget.max_tokens)})
        state = _State(deadline=budget.deadline(start), max_tokens=budget.max_tokens, conf_window=cfg.conf_window)
        traces: list[Trace] = []
        checks: list[dict[str, Any]] = []
        cost = {"traces": 0, "tokens": 0, "seconds": 0.0}  # what the outcome verifier spent on this problem
        reason, launched, groups = "samples_done", 0, []
        while launched < k:
            if state.deadline is not None and time.perf_counter() > state.deadline:
                reason = "budget_time"
                break
            if state.max_tokens is not None and state.spent >= state.max_tokens:
                reason = "budget_tokens"
                break
            size = cfg.warmup if cfg.stop == "confidence" and launched == 0 else cfg.wave_size()
            wave_samples = list(range(launched, min(k, launched + size)))
            wave = sorted(self._run_wave(problem, engine, wave_samples, params, state), key=lambda t: t.sample)
            launched += len(wave_samples)
            with state.lock:
                state.spent += sum(t.completion_tokens for t in wave)
                state.inflight.clear()
            for t in wave:
                self._judge(t, state)
            self._score(problem, wave, cost)
            traces += wave
            groups = self._tally(traces, problem.answer_type)
            if cfg.stop == "confidence" and state.threshold is None:
                confs = [t.confidence for t in traces if t.confidence is not None]
                if confs:  # calibrate on the warmup traces: later traces below this are cut mid-generation
                    state.threshold = stopping.percentile(confs, 100 * (1 - cfg.conf_keep))
            checks.append({"after": launched, "votes": {g.answer: round(g.weight, 4) for g in groups}})
            decided = self._decided(groups, wave, launched, k)
            if decided:
                reason = decided
                break
            if any(t.finish_reason == "cancelled" and t.sample not in state.cut for t in wave):
                reason = "budget_time" if state.deadline and time.perf_counter() > state.deadline else "budget_tokens"
                break
        meta: dict[str, Any] = {"launched": launched, "checks": checks}
        if state.threshold is not None:
            meta["threshold"] = round(state.threshold, 4)
        if cost["traces"]:
            meta["scorer"] = {**cost, "seconds": round(cost["seconds"], 3)}
        return Attempt(answer=self._final(groups, traces, problem.answer_type), traces=traces,
                       votes={g.answer: round(g.weight, 4) for g in groups}, stop_reason=reason,
                       seconds=time.perf_counter() - start, meta=meta)

    def close(self) -> None:
        self.policy.close()

