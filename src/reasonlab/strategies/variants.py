"""Votes whose samples come from different places: prompt variants (``prompts``) and several models
(``mixture``). Both are a ``vote`` with another answer to "who writes sample i", so every stop rule,
weight and filter of the vote applies; each trace is tagged with its variant or model and the run
summary reports accuracy per tag.
"""

from __future__ import annotations

import threading
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from reasonlab.data import Problem
from reasonlab.engines import Engine, EngineConfig, load_engine
from reasonlab.strategies.prompts import PromptTemplate
from reasonlab.strategies.vote import Vote, VoteConfig

PERSONAS = ("thorough, methodical", "genius, expert", "efficient, effective", "inquisitive, analytical")
ZH_INSTRUCTION = "请一步一步地推理，并把最终答案写在 \\boxed{} 中。"


class PromptsConfig(VoteConfig):
    """Votes pooled across prompt variants; sample i uses variant i mod len(variants)."""

    kind: Literal["prompts"] = "prompts"  # type: ignore[assignment]
    variants: tuple[str, ...] = Field(PERSONAS + ("lang:zh",), min_length=1,
                                      description="persona phrases, 'plain' (the run's prompt), or 'lang:zh'")
    persona_line: str = Field("You are a {persona} mathematician.", description="prefix for persona variants")


class Prompts(Vote):
    name = "prompts"
    Config = PromptsConfig

    def _template(self, variant: str) -> PromptTemplate:
        cfg: PromptsConfig = self.config  # type: ignore[assignment]
        if variant == "plain":
            return self.prompt
        if variant == "lang:zh":  # the problem as given, the instruction in Chinese
            return self.prompt.model_copy(update={"user": "{question}\n" + ZH_INSTRUCTION})
        line = cfg.persona_line.replace("{persona}", variant)
        return self.prompt.model_copy(update={"user": f"{line}\n\n{self.prompt.user}"})

    def assignment(self, problem: Problem, engine: Engine, sample: int) -> tuple[Engine, str, dict[str, Any]]:
        cfg: PromptsConfig = self.config  # type: ignore[assignment]
        variant = cfg.variants[sample % len(cfg.variants)]
        # through the policy, so what it adds to a prompt (timed: the budget line) reaches every variant
        return engine, self.policy.prompts_for(engine, problem, self._template(variant)), {"variant": variant}


# --- model mixtures ----------------------------------------------------------------------------------------
class Member(BaseModel):
    """One model of a mixture (with its share of the samples) or of a conversation."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    model: str | None = Field(None, description="registered name, path, hub id or URL; None: the run's engine")
    share: float = Field(1.0, gt=0, description="mixture: percentage (or any weight) of the samples")
    engine: dict[str, Any] = Field(default_factory=dict, description="other EngineConfig fields for this model")


class MemberEngines:
    """The engines of a strategy's members: each member's model loads once, on first use, and is closed with
    the strategy; a member without a model is the run's engine."""

    def __init__(self, members: tuple[Member, ...]) -> None:
        self.members = members
        self._engines: dict[int, Engine] = {}
        self._lock = threading.Lock()

    def get(self, m: int, run_engine: Engine) -> Engine:
        member = self.members[m]
        if member.model is None:
            return run_engine
        with self._lock:
            if m not in self._engines:
                self._engines[m] = load_engine(EngineConfig(model=member.model, **member.engine))
            return self._engines[m]

    def name(self, m: int, run_engine: Engine) -> str:
        return self.members[m].model or run_engine.model

    def close(self) -> None:
        for eng in self._engines.values():
            eng.close()
        self._engines.clear()


class MixtureConfig(VoteConfig):
    """Votes pooled across models; the samples are split by share, interleaved so early stops stay fair."""

    kind: Literal["mixture"] = "mixture"  # type: ignore[assignment]
    members: tuple[Member, ...] = Field(..., min_length=1, description="models and their shares")


def split_samples(shares: list[float], k: int) -> list[int]:
    """Which member writes each of k samples: largest-remainder counts, interleaved by deficit.

    >>> split_samples([75, 25], 4)
    [0, 0, 1, 0]
    >>> split_samples([50, 50], 3)
    [0, 1, 0]
    """
    total = sum(shares)
    owner: list[int] = []
    given = [0] * len(shares)
    for i in range(k):
        # the member furthest behind its share of the first i + 1 samples goes next (earliest wins ties)
        deficit = [shares[m] / total * (i + 1) - given[m] for m in range(len(shares))]
        m = max(range(len(shares)), key=lambda j: (deficit[j], -j))
        owner.append(m)
        given[m] += 1
    return owner


class Mixture(Vote):
    name = "mixture"
    Config = MixtureConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cfg: MixtureConfig = self.config  # type: ignore[assignment]
        self._engines = MemberEngines(cfg.members)
        self._owners = split_samples([m.share for m in cfg.members], cfg.samples)  # sample -> member

    def assignment(self, problem: Problem, engine: Engine, sample: int) -> tuple[Engine, str, dict[str, Any]]:
        m = self._owners[sample]
        eng = self._engines.get(m, engine)
        return eng, self.policy.prompts_for(eng, problem), {"model": self._engines.name(m, engine)}

    def close(self) -> None:
        super().close()
        self._engines.close()
