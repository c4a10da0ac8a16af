"""Orchestration: the runner, the run store, metrics."""

from reasonlab.evaluate.config import EvalConfig
from reasonlab.evaluate.metrics import summarize, wilson_interval
from reasonlab.evaluate.runner import evaluate, solve

__all__ = ["EvalConfig", "evaluate", "solve", "summarize", "wilson_interval"]
