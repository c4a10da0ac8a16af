"""The run config: every field typed and documented; defaults <- YAML recipe <- CLI flags.

    >>> cfg = EvalConfig.from_layers({"sampling": {"temperature": 0.7}}, {"dataset": {"limit": 5}})
    >>> cfg.sampling.temperature, cfg.dataset.limit, cfg.engine.model
    (0.7, 5, 'qwen2.5-coder-0.5b')
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from reasonlab.answers.extract import DEFAULT_FALLBACKS, Fallback
from reasonlab.data import DatasetConfig
from reasonlab.engines import EngineConfig, SamplingParams
from reasonlab.recipes import from_layers, read_yaml
from reasonlab.strategies import Budget, strategy_config
from reasonlab.strategies.scoring import ScorerConfig


class PromptConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    template: str = Field("boxed", description="registered template name, or text with a {question} slot")
    system: str | None = Field(None, description="system message; None keeps the model's default")


class VerifyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    fallbacks: tuple[Fallback, ...] = Field(DEFAULT_FALLBACKS, description="answer cues tried when no \\boxed{}")
    timeout_s: float = Field(5.0, gt=0, description="limit for one symbolic comparison")


class EvalConfig(BaseModel):
    """Everything that decides what a run computes (and a few knobs that only decide how fast)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    engine: EngineConfig = Field(default_factory=EngineConfig)
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    prompt: PromptConfig = Field(default_factory=PromptConfig)
    sampling: SamplingParams = Field(default_factory=lambda: SamplingParams(temperature=0.0, max_tokens=512))
    strategy: str = Field("single", description="registered strategy name")
    strategy_options: dict[str, Any] = Field(default_factory=dict, description="the strategy's own config")
    budget: Budget = Field(default_factory=Budget)
    verify: VerifyConfig = Field(default_factory=VerifyConfig)
    scorer: ScorerConfig | None = Field(None, description="an outcome verifier that scores every trace that can "
                                                          "vote (strategies/scoring.py); votes can weigh, select "
                                                          "and stop by it")
    concurrency: int | None = Field(None, ge=1, description="problems in flight; default: what the engine can use")
    max_errors: int | None = Field(10, ge=1, description="stop the run after this many problems in a row failed "
                                                         "(a dead server); None: never stop, fail each problem")

    # fields that change only speed or which problems run, never a problem's result: a run directory
    # accepts a re-run that changes them (e.g. a larger --limit extends the run)
    NON_IDENTITY: ClassVar[set[tuple[str, ...]]] = {
        ("dataset", "limit"), ("dataset", "offset"), ("dataset", "shuffle"), ("dataset", "seed"),
        ("engine", "concurrency"), ("engine", "timeout_s"), ("engine", "max_retries"), ("engine", "n_threads"),
        ("engine", "batch_size"), ("concurrency",), ("max_errors",),
    }

    @model_validator(mode="after")
    def _strategy_options_fit(self) -> EvalConfig:
        # the strategy's own typed config (selected by name, its ``kind``), checked here: before any model
        # loads or any run directory is written. Raises ConfigError naming the option.
        strategy_config(self.strategy, self.strategy_options)
        return self

    def identity(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        for path in self.NON_IDENTITY:
            node = data
            for key in path[:-1]:
                node = node[key]
            node.pop(path[-1], None)
        return data

    @classmethod
    def from_layers(cls, *layers: dict[str, Any]) -> EvalConfig:
        """Merge nested dicts left to right (later wins) onto the defaults and validate."""
        return from_layers(cls, *layers)

    @staticmethod
    def read_yaml(path: str | Path) -> dict[str, Any]:
        return read_yaml(path)



