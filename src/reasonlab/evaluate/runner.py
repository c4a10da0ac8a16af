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
from reasonlab.engines.base import CancelFn, Generation, Message, Prompt, PruneFn, SamplingParams, chat_messages
from reasonlab.errors import ConfigError, EngineError, Interrupted
from reasonlab.evaluate.config import EvalConfig
from reasonlab.evaluate.metrics import summarize
from reasonlab.runs import ErrorRecord, ProblemRecord, RunStore, TraceRecord
from reasonlab.runs.machine import cpu_info
from reasonlab.strategies import Attempt, Budget, Strategy, get_template, make_strategy
from reasonlab.strategies.scoring import load_scorer


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "platform": platform.platform(), "cpu": cpu_info()["model"]}
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


def record_for(problem: Problem, attempt: Attempt, verifier: Verifier) -> ProblemRecord:
    """One results.jsonl line: the graded attempt with every trace and the prompt each continued."""
    verdicts: dict[str | None, tuple[bool, str]] = {}  # traces and votes repeat answers: grade each once

    def grade(answer: str | None) -> tuple[bool, str]:
        if answer not in verdicts:
            verdicts[answer] = verifier.check(answer, problem.answer, problem.answer_type)
        return verdicts[answer]

    correct, note = grade(attempt.answer)
    prompt = attempt.traces[0].prompt if attempt.traces else None
    messages = chat_messages(prompt) if prompt is not None else None  # rendered by the server: keep the messages
    if messages is not None:
        prompt = None
    prompt_ids = attempt.traces[0].prompt_token_ids if attempt.traces else None
    traces = [TraceRecord(**{**t.model_dump(), "correct": grade(t.answer)[0],
                             "prompt": t.prompt if t.prompt != prompt and messages is None else None,
                             "prompt_token_ids": t.prompt_token_ids if t.prompt_token_ids != prompt_ids else None})
              for t in attempt.traces]
    return ProblemRecord(
        id=problem.id, question=problem.question, gold=problem.answer, answer=attempt.answer, correct=correct,
        grade_note=note, tokens=attempt.completion_tokens, prompt_tokens=attempt.prompt_tokens,
        seconds=round(attempt.seconds, 4),
        finish_reason=attempt.traces[-1].finish_reason if attempt.traces else "stop",
        stop_reason=attempt.stop_reason, votes=attempt.votes, strategy_meta=attempt.meta, prompt=prompt,
        prompt_token_ids=prompt_ids, messages=messages,
        traces=traces, meta=problem.meta,
    )


def failure_of(problem: Problem, attempt: Attempt) -> ErrorRecord | None:
    """A problem fails as a whole when any of its traces failed in the engine: a vote missing a sample
    is not the vote that was asked for. Retryable unless every failure says retrying cannot help."""
    errors = [e for t in attempt.traces for e in t.events if e.get("type") == "error"]
    if not errors and not any(t.finish_reason == "error" for t in attempt.traces):
        return None
    message = str(errors[0].get("message", "engine error")) if errors else "engine error"
    retryable = not errors or any(e.get("retryable", True) for e in errors)
    return ErrorRecord(id=problem.id, error=(message.splitlines() or ["engine error"])[0][:300], retryable=retryable)


class _Progress:
    """A rich progress bar showing accuracy so far, tokens/s and the share of prompt tokens the prefix cache
    served; silent when not wanted."""

    def __init__(self, total: int, done: int, enabled: bool) -> None:
        self.enabled = enabled
        self.correct = self.n = self.tokens = self.failed = self.prefilled = self.cached = 0
        self.start = time.perf_counter()
        if not enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(
            TextColumn("[bold]eval"), BarColumn(), MofNCompleteColumn(),
            TextColumn("acc {task.fields[acc]}"), TextColumn("{task.fields[tps]} tok/s"),
            TextColumn("cache {task.fields[hit]}"), TextColumn("ETA"), TimeRemainingColumn(), transient=False,
        )
        self.task = self.bar.add_task("eval", total=total, completed=done, acc="-", tps="-", hit="-")
        self.bar.start()

    def update(self, res: ProblemRecord | ErrorRecord) -> None:
        if isinstance(res, ErrorRecord):
            self.failed += 1
        else:
            self.n += 1
            self.correct += bool(res.correct)
            self.tokens += res.tokens
            self.prefilled += sum(t.prefilled_tokens for t in res.traces)
            self.cached += sum(t.cached_tokens for t in res.traces)
        if self.enabled:
            wall = time.perf_counter() - self.start  # problems in flight overlap: wall time, not summed seconds
            tps = f"{self.tokens / wall:.1f}" if wall > 0 else "-"
            acc = f"{self.correct / self.n:.3f} ({self.correct}/{self.n})" if self.n else "-"
            if self.failed:
                acc += f" [red]{self.failed} failed[/]"
            prompt = self.prefilled + self.cached
            hit = f"{self.cached / prompt:.0%}" if prompt else "-"  # prompt tokens served from the prefix cache
            self.bar.update(self.task, advance=1, acc=acc, tps=tps, hit=hit)

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


class StoppableEngine(Engine):
    """The run's engine as its strategies see it: once the run is told to stop, every generation in
    flight ends at its next token (the cancel hook every call now carries) and every call raises
    ``Interrupted``, so a problem in flight unwinds at once, without a result, and is run again on resume.

    A request already sent to a server cannot be recalled: it finishes first (its result is dropped).
    """

    def __init__(self, inner: Engine, stop: threading.Event) -> None:
        super().__init__(inner.model)
        self.inner, self.stop = inner, stop
        self.backend, self.max_concurrency = inner.backend, inner.max_concurrency
        self.takes_positions = inner.takes_positions
        self.prunes_in_place = inner.prunes_in_place

    def _check(self) -> None:
        if self.stop.is_set():
            raise Interrupted("the run was stopped")

    def generate(self, prompts: list[Prompt], params: SamplingParams, cancel: CancelFn | None = None) -> list[Generation]:
        self._check()

        def hook(i: int, s: int, n: int, lp: float | None) -> bool:
            return self.stop.is_set() or (cancel is not None and cancel(i, s, n, lp))

        out = self.inner.generate(prompts, params, hook)
        self._check()
        return out

    def generate_pruning(self, prompts: list[Prompt], params: SamplingParams, prune: PruneFn,
                         cancel: CancelFn | None = None) -> list[Generation]:
        self._check()

        def hook(i: int, s: int, n: int, lp: float | None) -> bool:
            return self.stop.is_set() or (cancel is not None and cancel(i, s, n, lp))

        out = self.inner.generate_pruning(prompts, params, prune, hook)
        self._check()
        return out

    def chat(self, conversations: list[list[Message]], params: SamplingParams) -> list[Generation]:
        self._check()
        out = self.inner.chat(conversations, params)
        self._check()
        return out

    def render_chat(self, messages: list[Message]) -> str:
        return self.inner.render_chat(messages)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def tokenize(self, text: str, prompt: bool = False) -> list[int]:
        return self.inner.tokenize(text, prompt)

    def detokenize(self, ids: list[int], special: bool = False) -> str:
        return self.inner.detokenize(ids, special)

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()

    def can_render_chat(self) -> bool:
        return self.inner.can_render_chat()

    def stats(self) -> dict[str, Any]:
        return self.inner.stats()


Outcome = ProblemRecord | ErrorRecord


def run_problems(problems: Iterable[Problem], strategy: Strategy, engine: Engine, cfg: EvalConfig,
                 on_result: Callable[[Outcome], None], concurrency: int = 1, max_errors: int | None = None) -> None:
    """Solve problems, calling ``on_result`` (on this thread) with each one's record or failure as it ends.

    Problems run in a pool of ``concurrency`` threads (servers and the batched llamacpp engine decode the
    problems in flight together); this thread only waits, so Ctrl-C and SIGTERM reach it at once. On an
    interrupt, an unexpected exception, or ``max_errors`` retryable failures in a row (a dead server), the
    run stops: in-flight generations are cancelled at their next token, every problem that finished is
    handed over, then the cause is raised. A problem whose engine failed (``EngineError``, or an error in
    one of its traces) is an ``ErrorRecord``, and the run goes on.
    """
    problems = list(problems)
    clock = RunClock(cfg.budget, len(problems), concurrency)
    stop = threading.Event()
    guarded = StoppableEngine(engine, stop)

    def one(p: Problem) -> Outcome:
        budget = clock.next_budget()
        try:
            attempt = strategy.solve(p, guarded, budget)
        except EngineError as err:
            if stop.is_set():  # a failure caused by the stop itself is not the problem's
                raise Interrupted("the run was stopped") from None
            return ErrorRecord(id=p.id, error=str(err).splitlines()[0][:300], retryable=err.retryable)
        failure = failure_of(p, attempt)
        if failure is not None:
            return failure
        rec = record_for(p, attempt, strategy.verifier)
        if budget.max_seconds is not None:
            rec.budget_seconds = round(budget.max_seconds, 3)
        return rec

    in_a_row, last_error = 0, ""
    cause: BaseException | None = None
    pending: set[Future[Outcome]] = set()

    def hand_over(done: Iterable[Future[Outcome]]) -> None:
        nonlocal in_a_row, last_error, cause
        for f in done:
            err = f.exception()
            if err is not None:
                if not isinstance(err, Interrupted) and cause is None:
                    cause = err
                continue
            out = f.result()
            on_result(out)
            if isinstance(out, ErrorRecord) and out.retryable:
                in_a_row, last_error = in_a_row + 1, out.error
                if max_errors is not None and in_a_row >= max_errors and cause is None:
                    cause = EngineError(f"{in_a_row} problems in a row failed (last: {last_error}); the engine "
                                        f"looks dead, so the run stopped. Finished problems are saved: run the "
                                        f"same command again to resume")
            elif isinstance(out, ProblemRecord):
                in_a_row = 0

    pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="solve")
    try:
        it = iter(problems)
        while cause is None:
            while len(pending) < max(1, concurrency):
                p = next(it, None)
                if p is None:
                    break
                pending.add(pool.submit(one, p))
            if not pending:
                break
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            hand_over(done)
    except BaseException as err:  # Ctrl-C, SIGTERM (raised as KeyboardInterrupt by the CLI)
        cause = err
    finally:
        stop.set()  # in-flight generations end at their next token; what finished meanwhile is kept
        try:
            done, pending = wait(pending)
            hand_over(done)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    if cause is not None:
        raise cause


def evaluate(cfg: EvalConfig, out: str | Path | None = None, engine: Engine | None = None,
             force_new: bool = False, progress: bool | None = None) -> dict[str, Any]:
    """Run ``cfg`` into the run directory ``out`` (resuming it) and return the summary.

    Pass ``engine`` to reuse a loaded model across runs; otherwise one is loaded from ``cfg.engine``
    and closed at the end. Problems that fail (a dead server) are kept in ``errors.jsonl`` and listed
    under ``errors`` in the summary; the next call with the same config retries them.
    """
    problems = load_problems(cfg.dataset)  # bad data fails before anything loads
    template = get_template(cfg.prompt.template, cfg.prompt.system)
    verifier = Verifier(VerifierConfig(fallbacks=cfg.verify.fallbacks, timeout_s=cfg.verify.timeout_s))
    strategy = make_strategy(cfg.strategy, cfg.strategy_options, template, cfg.sampling, verifier)  # bad options too
    if strategy.needs_scorer() and cfg.scorer is None:
        raise ConfigError(f"strategy '{cfg.strategy}' uses an outcome verifier (weight verifier, select best, stop "
                          f"verifier or min_score): pass --scorer (a model, or 'self' for the run's own) or scorer: "
                          f"in the recipe")
    if cfg.scorer is not None and not strategy.scores_traces:
        raise ConfigError(f"strategy '{cfg.strategy}' does not score traces: --scorer applies to vote, prompts and "
                          f"mixture (to score a finished run's traces: reasonlab score RUN)")
    store = RunStore(out or default_out(cfg))
    owns_engine = engine is None
    scorer = None
    try:
        engine = engine or load_engine(cfg.engine)
        if cfg.scorer is not None:  # loaded once for the run, handed to the strategy
            scorer = load_scorer(cfg.scorer, engine, cfg.engine)
            strategy.use_scorer(scorer)
        if template.chat and strategy.continues_raw and not engine.can_render_chat():
            raise ConfigError(f"strategy '{cfg.strategy}' continues the model's text raw, which needs the chat "
                              f"template rendered here, and {engine.model} is served without one: pass --tokenizer "
                              f"(a hub id, an HF directory or a .gguf file) or use --prompt completion")
        config_dump = {"config": cfg.model_dump(mode="json"), "engine": engine.describe(), "versions": versions(),
                       "command": " ".join(sys.argv)}
        identity = {**cfg.identity(), "model": engine.identity()}
        if scorer is not None:
            identity["scorer"] = {**identity.get("scorer", {}), **scorer.identity()}
            config_dump["scorer_engine"] = scorer.engine.describe()
        store.open(config_dump, identity, force_new=force_new)
        todo_ids = set(store.todo(p.id for p in problems))
        todo = [p for p in problems if p.id in todo_ids]
        selected = {p.id for p in problems}
        bar = _Progress(len(problems), len(problems) - len(todo), sys.stderr.isatty() if progress is None else progress)

        def on_result(res: ProblemRecord | ErrorRecord) -> None:
            if isinstance(res, ProblemRecord):
                store.append(res)
            else:
                store.fail(res)
            bar.update(res)

        started = time.perf_counter()
        try:
            run_problems(todo, strategy, engine, cfg, on_result, cfg.concurrency or engine.max_concurrency,
                         cfg.max_errors)
        finally:
            bar.close()
            records = [r.model_dump(mode="json") for r in store.records()]
            errors = [e for e in store.errors() if e.id in selected]
            summary = summarize(records, cfg.strategy, cfg.strategy_options)
            summary.update(
                run_dir=str(store.path), model=cfg.engine.model, dataset=cfg.dataset.name, strategy=cfg.strategy,
                selected=len(selected), selected_done=sum(1 for r in records if r["id"] in selected),
                failed=len(errors), errors=[{"id": e.id, "error": e.error, "retryable": e.retryable,
                                             "attempts": e.attempts} for e in errors],
                new_this_time=bar.n, failed_this_time=bar.failed,
                wall_seconds_this_time=round(time.perf_counter() - started, 2),
            )
            if scorer is not None:
                summary["scorer_stats"] = scorer.stats()  # this process's scoring, all problems it ran
            engine_stats = engine.stats()
            if engine_stats:  # cumulative over the engine's life (a reused engine counts earlier runs too)
                summary["engine_stats"] = engine_stats
            if bar.n and summary["wall_seconds_this_time"] > 0:
                # problems overlap when several are in flight: throughput is new tokens over wall time
                summary["tokens_per_s_wall"] = round(bar.tokens / summary["wall_seconds_this_time"], 2)
            store.write_summary(summary)
        return summary
    finally:
        strategy.close()
        verifier.close()
        if scorer is not None:
            scorer.close()
        if owns_engine and engine is not None:
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
