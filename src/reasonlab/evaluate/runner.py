"""The runner: problems through a strategy into a resumable store, with a live progress bar.

    >>> from reasonlab import EvalConfig, evaluate                                # doctest: +SKIP
    >>> summary = evaluate(EvalConfig.from_layers({"dataset": {"limit": 5}}), out="runs/x")  # doctest: +SKIP
"""

from __future__ import annotations

import platform
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable

from reasonlab.answers import Verifier, VerifierConfig
from reasonlab.data import Problem, load_problems
from reasonlab.engines import Engine, load_engine
from reasonlab.evaluate.config import EvalConfig
from reasonlab.evaluate.metrics import summarize
from reasonlab.evaluate.store import RunStore
from reasonlab.strategies import Attempt, Budget, Strategy, get_template, make_strategy


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("reasonlab", "llama-cpp-python", "math-verify", "transformers", "torch", "httpx", "pydantic"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def default_out(cfg: EvalConfig) -> Path:
    """runs/<dataset>-<model>-<strategy>: deterministic, so the same command resumes the same run."""
    def slug(s: str) -> str:
        return "".join(c if c.isalnum() or c in ".-" else "_" for c in Path(s).name or s)[:60]
    return Path("runs") / f"{slug(cfg.dataset.name)}-{slug(cfg.engine.model)}-{cfg.strategy}"


def record_for(problem: Problem, attempt: Attempt, verifier: Verifier) -> dict[str, Any]:
    """One results.jsonl line: the graded attempt with every trace."""
    verdicts: dict[str | None, tuple[bool, str]] = {}  # traces and votes repeat answers: grade each once

    def grade(answer: str | None) -> tuple[bool, str]:
        if answer not in verdicts:
            verdicts[answer] = verifier.check(answer, problem.answer, problem.answer_type)
        return verdicts[answer]

    correct, note = grade(attempt.answer)
    traces = [{**t.model_dump(), "correct": grade(t.answer)[0]} for t in attempt.traces]
    errors = [e["message"] for t in attempt.traces for e in t.events if e.get("type") == "error"]
    return {
        "id": problem.id,
        "question": problem.question,
        "gold": problem.answer,
        "answer": attempt.answer,
        "correct": correct,
        "grade_note": note,
        "tokens": attempt.completion_tokens,
        "prompt_tokens": attempt.prompt_tokens,
        "seconds": round(attempt.seconds, 4),
        "finish_reason": attempt.traces[-1].finish_reason if attempt.traces else "error",
        "stop_reason": attempt.stop_reason,
        "votes": attempt.votes,
        "strategy_meta": attempt.meta,
        "error": "; ".join(errors) or None,
        "traces": traces,
        "meta": problem.meta,
    }


class _Progress:
    """A rich progress bar showing accuracy so far and tokens/s; silent when not wanted."""

    def __init__(self, total: int, done: int, enabled: bool) -> None:
        self.enabled = enabled
        self.correct = self.n = self.tokens = 0
        self.start = time.perf_counter()
        if not enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(
            TextColumn("[bold]eval"), BarColumn(), MofNCompleteColumn(),
            TextColumn("acc {task.fields[acc]}"), TextColumn("{task.fields[tps]} tok/s"),
            TextColumn("ETA"), TimeRemainingColumn(), transient=False,
        )
        self.task = self.bar.add_task("eval", total=total, completed=done, acc="-", tps="-")
        self.bar.start()

    def update(self, record: dict[str, Any]) -> None:
        self.n += 1
        self.correct += bool(record["correct"])
        self.tokens += record["tokens"]
        if self.enabled:
            wall = time.perf_counter() - self.start  # problems in flight overlap: wall time, not summed seconds
            tps = f"{self.tokens / wall:.1f}" if wall > 0 else "-"
            self.bar.update(self.task, advance=1, acc=f"{self.correct / self.n:.3f} ({self.correct}/{self.n})", tps=tps)

    def close(self) -> None:
        if self.enabled:
            self.bar.stop()


def allot(time_left: float, problems_left: int, concurrency: int, floor: float) -> float:
    """A problem's share of a run's time (AIMO): the time left over the problems left, times the
    problems running at once; never below ``floor`` nor above the time left (unless that is below the floor).

    >>> allot(100.0, 10, 1, 5.0), allot(100.0, 10, 2, 5.0), allot(3.0, 10, 1, 5.0), allot(50.0, 1, 4, 5.0)
    (10.0, 20.0, 5.0, 50.0)
    """
    if problems_left <= 0:
        return max(floor, time_left)
    share = time_left * min(concurrency, problems_left) / problems_left
    return max(floor, min(time_left, share))


class RunClock:
    """Hands each problem its budget as it starts; with ``run_seconds`` set, a time allotment that
    lets time a problem leaves unused flow to the ones after it."""

    def __init__(self, budget: Budget, problems: int, concurrency: int,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.budget, self.left, self.concurrency, self.clock = budget, problems, max(1, concurrency), clock
        self.start = clock()
        self.lock = threading.Lock()

    def next_budget(self) -> Budget:
        with self.lock:
            b = self.budget
            if b.run_seconds is not None:
                time_left = b.run_seconds - (self.clock() - self.start)
                share = allot(time_left, self.left, self.concurrency, b.min_problem_seconds)
                b = b.model_copy(update={"max_seconds": min(share, b.max_seconds or share)})
            self.left -= 1
            return b


def run_problems(problems: Iterable[Problem], strategy: Strategy, engine: Engine, cfg: EvalConfig,
                 on_record: Callable[[dict[str, Any]], None], concurrency: int = 1) -> None:
    """Solve problems, calling ``on_record`` (on this thread) as each finishes.

    With concurrency 1 problems run in order on this thread; otherwise up to ``concurrency`` are in
    flight in a thread pool (servers batch concurrent requests). An exception stops the run after the
    records already finished were handed over; problems not started are cancelled.
    """
    problems = list(problems)
    clock = RunClock(cfg.budget, len(problems), concurrency)

    def one(p: Problem) -> dict[str, Any]:
        budget = clock.next_budget()
        rec = record_for(p, strategy.solve(p, engine, budget), strategy.verifier)
        if budget.max_seconds is not None:
            rec["budget_seconds"] = round(budget.max_seconds, 3)
        return rec

    if concurrency <= 1:
        for p in problems:
            on_record(one(p))
        return
    pending: set[Future[dict[str, Any]]] = set()
    it = iter(problems)
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="solve") as pool:
        try:
            for p in it:
                pending.add(pool.submit(one, p))
                if len(pending) >= concurrency:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in done:
                        on_record(f.result())
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    on_record(f.result())
        except BaseException:
            for f in pending:
                f.cancel()
            raise


def evaluate(cfg: EvalConfig, out: str | Path | None = None, engine: Engine | None = None,
             force_new: bool = False, progress: bool | None = None) -> dict[str, Any]:
    """Run ``cfg`` into the run directory ``out`` (resuming it) and return the summary.

    Pass ``engine`` to reuse a loaded model across runs; otherwise one is loaded from ``cfg.engine``
    and closed at the end.
    """
    problems = load_problems(cfg.dataset)  # bad data fails before anything loads
    store = RunStore(out or default_out(cfg))
    template = get_template(cfg.prompt.template, cfg.prompt.system)
    owns_engine = engine is None
    engine = engine or load_engine(cfg.engine)
    config_dump = {"config": cfg.model_dump(mode="json"), "engine": engine.describe(), "versions": versions(),
                   "command": " ".join(sys.argv)}
    verifier = Verifier(VerifierConfig(fallbacks=cfg.verify.fallbacks, timeout_s=cfg.verify.timeout_s))
    try:
        store.open(config_dump, cfg.identity(), force_new=force_new)
        strategy = make_strategy(cfg.strategy, cfg.strategy_options, template, cfg.sampling, verifier)
        done = store.done_ids()
        todo = [p for p in problems if p.id not in done]
        selected = {p.id for p in problems}
        bar = _Progress(len(problems), len(problems) - len(todo), sys.stderr.isatty() if progress is None else progress)

        def on_record(rec: dict[str, Any]) -> None:
            store.append(rec)
            bar.update(rec)

        started = time.perf_counter()
        try:
            run_problems(todo, strategy, engine, cfg, on_record, cfg.concurrency or engine.max_concurrency)
        finally:
            strategy.close()
            bar.close()
            records = store.records()
            summary = summarize(records)
            summary.update(
                run_dir=str(store.path), model=cfg.engine.model, dataset=cfg.dataset.name, strategy=cfg.strategy,
                selected=len(selected), selected_done=sum(1 for r in records if r["id"] in selected),
                new_this_time=bar.n, wall_seconds_this_time=round(time.perf_counter() - started, 2),
            )
            if bar.n and summary["wall_seconds_this_time"] > 0:
                # problems overlap when several are in flight: throughput is new tokens over wall time
                summary["tokens_per_s_wall"] = round(bar.tokens / summary["wall_seconds_this_time"], 2)
            store.write_summary(summary)
        return summary
    finally:
        verifier.close()
        if owns_engine:
            engine.close()


def solve(question: str, engine: Engine, cfg: EvalConfig | None = None) -> Attempt:
    """Solve one free-text question with the config's strategy (default: single greedy trace)."""
    cfg = cfg or EvalConfig()
    with Verifier(VerifierConfig(fallbacks=cfg.verify.fallbacks, timeout_s=cfg.verify.timeout_s)) as verifier:
        strategy = make_strategy(cfg.strategy, cfg.strategy_options,
                                 get_template(cfg.prompt.template, cfg.prompt.system), cfg.sampling, verifier)
        try:
            return strategy.solve(Problem(id="q", question=question, answer=""), engine, cfg.budget)
        finally:
            strategy.close()
