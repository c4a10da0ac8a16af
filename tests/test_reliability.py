"""Reliability: a flaky server never ends a run; failed problems are kept apart and retried on resume.

The fault-proxy tests run the real CLI against a live llama.cpp server (``llama_server``) behind a
fault-injecting proxy of our own (``faultproxy.py``). Pure runner logic runs on scripted fake engines.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ScriptedEngine
from faultproxy import FaultProxy
from reasonlab.engines.base import Generation
from reasonlab.errors import EngineError
from reasonlab.evaluate import EvalConfig, evaluate
from reasonlab.runs import read_run

SCRIPT = ["so \\boxed{72}.", "I think \\boxed{5}.", "No idea."]


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def cfg(limit: int = 5, **top) -> EvalConfig:
    return EvalConfig.from_layers({"dataset": {"name": "gsm8k", "limit": limit}, **top})


class FailingOn(ScriptedEngine):
    """Scripted fake engine whose calls for the given questions raise (or, ``as_generation``, return an
    error sample, as the in-process engines do) while ``broken`` is set."""

    def __init__(self, bad: set[str], as_generation: bool = False, retryable: bool = True) -> None:
        super().__init__(SCRIPT)
        self.bad, self.as_generation, self.retryable, self.broken = bad, as_generation, retryable, True

    def generate(self, prompts, params, cancel=None):
        out = []
        for i, p in enumerate(prompts):
            hit = self.broken and any(q in p for q in self.bad)
            for s in range(params.n):
                if hit and not self.as_generation:
                    raise EngineError("server said HTTP 500 five times", retryable=self.retryable)
                if hit and (not self.retryable or s == params.n - 1):  # the last sample of a vote fails
                    out.append(Generation(text="", index=i, sample=s, finish_reason="error",
                                          error="prompt of 9999 tokens exceeds the context window of 2048",
                                          retryable=self.retryable))
                else:
                    out.extend(super().generate([p], params.model_copy(update={"n": 1})))
        return out


def questions(n: int) -> list[str]:
    from reasonlab.data import DatasetConfig, load_problems

    return [p.question for p in load_problems(DatasetConfig(name="gsm8k", limit=n))]


def test_a_failing_problem_fails_alone_and_is_retried_exactly_once(tmp_path) -> None:
    qs = questions(5)
    run = tmp_path / "run"
    eng = FailingOn({qs[1], qs[3]})
    s = evaluate(cfg(), out=run, engine=eng, progress=False)
    assert s["n"] == 3 and s["failed"] == 2 and s["accuracy"] == s["correct"] / 3  # over the problems that finished
    assert [e["id"] for e in s["errors"]] == ["gsm8k-1", "gsm8k-3"] and "HTTP 500" in s["errors"][0]["error"]
    assert [r["id"] for r in lines(run / "results.jsonl")] == ["gsm8k-0", "gsm8k-2", "gsm8k-4"]
    assert json.loads((run / "summary.json").read_text())["errors"][1]["id"] == "gsm8k-3"
    eng.broken, eng.calls = False, 0
    s2 = evaluate(cfg(), out=run, engine=eng, progress=False)
    assert eng.calls == 2 and s2["new_this_time"] == 2 and s2["failed"] == 0 and s2["errors"] == []
    ids = [r["id"] for r in lines(run / "results.jsonl")]
    assert sorted(ids) == [f"gsm8k-{k}" for k in range(5)] and len(ids) == len(set(ids))
    assert read_run(run).errors == []


def test_a_vote_with_one_failed_sample_is_not_a_finished_vote(tmp_path) -> None:
    qs = questions(3)
    eng = FailingOn({qs[0]}, as_generation=True)
    c = cfg(3, strategy="vote", strategy_options={"samples": 3})
    s = evaluate(c, out=tmp_path / "run", engine=eng, progress=False)
    assert s["n"] == 2 and [e["id"] for e in s["errors"]] == ["gsm8k-0"] and "context window" in s["errors"][0]["error"]


def test_a_permanent_failure_is_recorded_once_and_not_retried(tmp_path) -> None:
    qs = questions(3)
    eng = FailingOn({qs[2]}, as_generation=True, retryable=False)
    s = evaluate(cfg(3), out=tmp_path / "run", engine=eng, progress=False)
    assert s["failed"] == 1 and s["errors"][0]["retryable"] is False
    eng.calls = 0
    s2 = evaluate(cfg(3), out=tmp_path / "run", engine=eng, progress=False)
    assert eng.calls == 0 and s2["failed"] == 1 and s2["errors"][0]["attempts"] == 1


def test_max_errors_stops_a_run_whose_engine_is_dead(tmp_path) -> None:
    eng = FailingOn(set(questions(20)))
    with pytest.raises(EngineError, match="3 problems in a row failed"):
        evaluate(cfg(20, max_errors=3), out=tmp_path / "run", engine=eng, progress=False)
    run = read_run(tmp_path / "run")
    assert len(run.errors) == 3 and run.records == []


def test_a_bug_in_one_problem_keeps_the_finished_ones(tmp_path) -> None:
    class Buggy(ScriptedEngine):
        def generate(self, prompts, params, cancel=None):
            if self.calls == 2:
                self.calls += 1
                raise ZeroDivisionError("a bug, not an engine failure")
            return super().generate(prompts, params, cancel)

    with pytest.raises(ZeroDivisionError):
        evaluate(cfg(6, concurrency=3), out=tmp_path / "run", engine=Buggy(SCRIPT, max_concurrency=3), progress=False)
    run = read_run(tmp_path / "run")
    assert len(run.records) >= 2 and len({r.id for r in run.records}) == len(run.records)


# --- the real thing: the CLI against a live server behind a fault proxy -----------------------------------
def eval_cmd(url: str, run: Path, n: int, recipe: Path) -> list[str]:
    return [sys.executable, "-m", "reasonlab.cli", "eval", "--model", url, "--prompt", "completion", "-d", "gsm8k",
            "-n", str(n), "--concurrency", "4", "--max-tokens", "24", "-c", str(recipe), "-o", str(run),
            "--no-progress", "--json"]


@pytest.mark.slow
def test_flaky_server_run_finishes_and_one_resume_records_every_problem(tmp_path, llama_server) -> None:
    recipe = tmp_path / "fast-retries.yaml"
    recipe.write_text("engine:\n  max_retries: 3\n  timeout_s: 60\n")
    proxy = FaultProxy(llama_server, poison={1, 4}, flaky=2, delay_s=1.0)
    run, n = tmp_path / "run", 10
    try:
        proc = subprocess.Popen(eval_cmd(proxy.url, run, n, recipe), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        deadline = time.monotonic() + 300  # a readiness wait, not a timing assertion
        while len(lines(run / "results.jsonl")) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        proxy.outage(1.0)  # the server dies mid-run and comes back
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        first = json.loads(out)
        failed = {e["id"] for e in first["errors"]}
        done = {r["id"] for r in lines(run / "results.jsonl")}
        assert len(failed) >= 2 and first["n"] + first["failed"] == n and not failed & done
        assert f"{len(failed)} problems failed: run the same command again to retry them" in err
        assert all(proxy.faults[k] > 0 for k in ("500", "drop", "garbage", "delay"))
        proxy.poisoned = False  # the server recovers; the same command retries exactly the failed problems
        again = subprocess.run(eval_cmd(proxy.url, run, n, recipe), capture_output=True, text=True, timeout=600)
        assert again.returncode == 0, again.stderr
        second = json.loads(again.stdout)
        assert second["new_this_time"] == len(failed) and second["failed"] == 0 and second["n"] == n
        ids = [r["id"] for r in lines(run / "results.jsonl")]
        assert len(ids) == n == len(set(ids))  # every problem recorded, none twice
    finally:
        proxy.close()
