"""Outcome verifiers: a score in [0, 1] per finished trace — how likely its answer is right — for votes to use.

    scorer = load_scorer(ScorerConfig(lora="runs/train/verifier"), run_engine)
    scorer.score(problem, ["... so she sold \\boxed{72}", "... \\boxed{70}"]).scores      # [0.93, 0.08]

A *generative* verifier (GenRM, Zhang et al. 2024; Cobbe et al. 2021 trained the discriminative kind) is a
language model asked, after the question and a solution, "Is the proposed solution correct? Answer Yes or
No."; its score is P(Yes) / (P(Yes) + P(No)) read from its next-token distribution through the engine seam's
``loglikelihood`` — so it runs on any engine that scores (llama.cpp, hf), with a LoRA trained by
``reasonlab train sft`` on ``reasonlab datagen verifier`` rows (the same prompt, built by ``verifier_messages``
here, so training and scoring see the same text). Without a LoRA or another model it is a zero-shot judge:
the run's own model asked the same question, the baseline every trained verifier must beat.

A problem's candidates share the question, which comes first in the prompt: the llama.cpp scoring context keeps
the longest shared prefix, so only each solution and the two answer words are evaluated per candidate.

The *classifier* kind (``kind: classifier``) is the discriminative alternative: a scalar head on the same body,
trained by TRL's RewardTrainer on right/wrong pairs of one problem (``datagen reward``, ``train reward``), read
through ``engines.hf_classify`` on transformers; its score is sigmoid(head output).

A LoRA is set per llama.cpp context, so a verifier with an adapter (or another model) is its own engine beside
the solver's; the runner loads it once (``load_scorer``) and hands it to the strategy — strategies never load
models. Without one, the scorer borrows the run's engine.

    >>> verifier_messages("1+1?", "2")[0]["content"].splitlines()[0]
    'Question: 1+1?'
    >>> round(p_yes(-0.1, -2.5), 3)
    0.917
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from reasonlab.data import Problem
from reasonlab.engines import Engine, EngineConfig, load_engine
from reasonlab.engines.base import Message

VERIFY_PROMPT = ("Question: {question}\n\nProposed solution:\n{solution}\n\n"
                 "Is the proposed solution correct? Answer Yes or No.")


def verifier_messages(question: str, solution: str) -> list[Message]:
    """The verifier's conversation for one candidate: the question first (so candidates share a prefix)."""
    return [{"role": "user", "content": VERIFY_PROMPT.format(question=question.strip(), solution=solution.strip())}]


def classifier_messages(question: str, solution: str) -> list[Message]:
    """What the scalar-head kind reads: the bare question and the solution as the assistant's turn (the
    reward-model input ``datagen reward`` trains on)."""
    return [{"role": "user", "content": question.strip()}, {"role": "assistant", "content": solution.strip()}]


def p_yes(logp_yes: float, logp_no: float) -> float:
    """P(Yes) renormalised over the two answers: 1 / (1 + exp(log p(No) - log p(Yes)))."""
    d = logp_no - logp_yes
    return 1.0 / (1.0 + math.exp(d)) if d < 700 else 0.0


class ScorerConfig(BaseModel):
    """The outcome verifier a run scores traces with (``vote`` weight ``verifier``, ``select: best``, stop rule
    ``verifier``, ``min_score``). Leave ``model`` and ``lora`` unset for a zero-shot judge on the run's model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["generative", "classifier"] = Field(
        "generative", description="generative: P(Yes) of a language model asked whether the solution is correct; "
                                  "classifier: sigmoid of a scalar head's output (reasonlab train reward), on "
                                  "transformers")
    model: str | None = Field(None, description="the verifier's model (registered name, .gguf, HF dir, hub id, server "
                                                "URL); None: the run's own model")
    lora: str | None = Field(None, description="a LoRA on it (training run, peft dir or .gguf): a trained verifier")
    engine: dict[str, Any] = Field(default_factory=dict, description="other engine options for the verifier's "
                                                                     "engine (backend, n_ctx, base_url, ...)")
    yes: str = Field("Yes", description="the continuation that means correct")
    no: str = Field("No", description="the continuation that means wrong")
    max_solution_chars: int = Field(6000, ge=100, description="longer solutions keep their last this many "
                                                              "characters (the end holds the answer)")

    @model_validator(mode="after")
    def _engine_options_exist(self) -> ScorerConfig:
        if self.kind == "classifier":
            unknown = set(self.engine) - {"batch_size", "device", "precision"}
            if unknown:
                raise ValueError(f"engine options {sorted(unknown)} do not apply to a classifier (batch_size, device, "
                                 f"precision)")
        else:
            EngineConfig(**{**self.engine, "model": self.model or "x"})  # unknown or bad options fail here, no I/O
        return self


@dataclass
class Scored:
    """A scoring call's result: one P(correct) per solution, the tokens of the verifier prompts read (before
    the prefix cache's share) and the seconds the engine took."""

    scores: list[float]
    tokens: int
    seconds: float


class Scorer:
    """Scores a problem's candidate solutions; counts what scoring cost. Thread-safe (problems in flight share
    it; the engine serialises its own compute)."""

    def __init__(self, engine: Engine, cfg: ScorerConfig, owns_engine: bool) -> None:
        self.engine, self.cfg, self.owns_engine = engine, cfg, owns_engine
        self.calls = self.candidates = self.tokens = 0
        self.seconds = 0.0
        self._lock = threading.Lock()

    def score(self, problem: Problem, solutions: list[str]) -> Scored:
        """P(correct) for each solution, in order, and what computing them cost."""
        if not solutions:
            return Scored([], 0, 0.0)
        cap = self.cfg.max_solution_chars
        t0 = time.perf_counter()
        scores, tokens = self._score(problem.question, [s[-cap:] for s in solutions])
        took = time.perf_counter() - t0
        with self._lock:
            self.calls += 1
            self.candidates += len(solutions)
            self.tokens += tokens
            self.seconds += took
        return Scored(scores, tokens, took)

    def _score(self, question: str, solutions: list[str]) -> tuple[list[float], int]:
        """(scores, tokens read): P(Yes) renormalised over Yes and No, after the verifier's question."""
        contexts = [self.engine.render_chat(verifier_messages(question, s)) for s in solutions]
        requests = [(c, a) for c in contexts for a in (self.cfg.yes, self.cfg.no)]  # Yes and No share a context
        scored = self.engine.loglikelihood(requests)
        tokens = sum(self.engine.count_tokens(c) + 2 for c in contexts)  # read, before the cache's share
        return [p_yes(scored[2 * i][0], scored[2 * i + 1][0]) for i in range(len(solutions))], tokens

    def identity(self) -> dict[str, Any]:
        """What decides the scores, for the run's identity: the prompt, the answer words and the weights."""
        return {"kind": self.cfg.kind, "prompt": VERIFY_PROMPT, "yes": self.cfg.yes, "no": self.cfg.no,
                "max_solution_chars": self.cfg.max_solution_chars,
                "model": self.engine.identity() if self.owns_engine else "the run's model"}

    def stats(self) -> dict[str, Any]:
        return {"calls": self.calls, "candidates": self.candidates, "tokens": self.tokens,
                "seconds": round(self.seconds, 3)}

    def close(self) -> None:
        if self.owns_engine:
            self.engine.close()


class ClassifierScorer(Scorer):
    """The scalar-head kind: sigmoid(head output) for (question, solution) — a monotone squash of the reward
    into [0, 1] so votes can weigh by it, not a calibrated probability."""

    def _score(self, question: str, solutions: list[str]) -> tuple[list[float], int]:
        rewards, tokens = self.engine.score([classifier_messages(question, s) for s in solutions])
        return [1.0 / (1.0 + math.exp(-max(-700.0, min(700.0, r)))) for r in rewards], tokens

    def identity(self) -> dict[str, Any]:
        return {"kind": self.cfg.kind, "input": "question + solution as the assistant's turn",
                "max_solution_chars": self.cfg.max_solution_chars, "model": self.engine.identity()}


def load_scorer(cfg: ScorerConfig, run_engine: Engine | None = None,
                run_engine_cfg: EngineConfig | None = None) -> Scorer:
    """The verifier ``cfg`` describes. A zero-shot judge (no model, adapter or engine option) borrows
    ``run_engine``, or loads the run's model when there is none; anything else is an engine of its own, loaded
    here once (the runner calls this, never a strategy)."""
    if cfg.kind == "classifier":  # its own transformers model: a scalar head is nothing an engine generates with
        from reasonlab.engines.hf_classify import HFClassifier

        base = cfg.model or (run_engine_cfg.model if run_engine_cfg is not None else
                             run_engine.model if run_engine is not None else EngineConfig().model)
        return ClassifierScorer(HFClassifier(base, lora=cfg.lora, **cfg.engine), cfg, owns_engine=True)
    borrow = cfg.model is None and cfg.lora is None and not cfg.engine
    if borrow and run_engine is not None:
        return Scorer(run_engine, cfg, owns_engine=False)
    if run_engine_cfg is not None:
        fields = run_engine_cfg.model_dump()
    elif run_engine is not None:
        fields = {"model": run_engine.model}
    else:
        fields = {}
    fields.update(n_parallel=1, lora=cfg.lora, lora_scale=1.0)  # it only scores: no batch to decode
    if cfg.model is not None:  # another model: nothing about how the run's was served carries over
        fields.update(model=cfg.model, engine="auto", base_url=None, tokenizer=None)
    fields.update(cfg.engine)
    return Scorer(load_engine(EngineConfig(**fields)), cfg, owns_engine=True)
