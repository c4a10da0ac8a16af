"""Orchestration: the runner, the run store, metrics."""

from reasonlab.evaluate.config import EvalConfig
from reasonlab.evaluate.metrics import summarize, wilson_interval
from reasonlab.evaluate.runner import evaluate, solve
from reasonlab.evaluate.store import RunStore, read_run

__all__ = ["EvalConfig", "RunStore", "evaluate", "read_run", "solve", "summarize", "wilson_interval"]
