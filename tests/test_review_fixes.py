"""Defects found reading the code, one test each (each failed before its fix)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ScriptedEngine
from reasonlab.answers import Verifier
from reasonlab.data import Problem
from reasonlab.errors import ConfigError
from reasonlab.evaluate import EvalConfig, evaluate, summarize
from reasonlab.strategies import get_template, make_strategy


def test_a_run_resumes_only_with_the_model_that_ran_it(tmp_path) -> None:
    c = EvalConfig.from_layers({"dataset": {"limit": 2}})
    evaluate(c, out=tmp_path / "run", engine=ScriptedEngine(["\\boxed{1}"]), progress=False)

    class Other(ScriptedEngine):
        def identity(self) -> dict:
            return {"backend": "scripted", "model": "another-model"}

    with pytest.raises(ConfigError, match="model.model: 'scripted' -> 'another-model'"):
        evaluate(c, out=tmp_path / "run", engine=Other(["\\boxed{1}"]), progress=False)


def test_bad_strategy_options_fail_before_any_model_loads_or_file_is_written(tmp_path) -> None:
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "reasonlab.cli", "eval", "-m", str(tmp_path / "absent.gguf"), "--strategy", "vote",
           "-O", "samples=0", "-o", str(run)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 2 and "strategy 'vote' option samples" in res.stderr and "absent.gguf" not in res.stderr
    assert not run.exists()
    with pytest.raises(ConfigError, match="strategy 'forced' option max_thinkin"):  # a vote's policy options too
        EvalConfig.from_layers({"strategy": "vote", "strategy_options": {"policy": "forced",
                                                                         "policy_options": {"max_thinkin": 9}}})


def test_prompt_variants_go_through_the_trace_policy() -> None:
    with Verifier() as v:
        s = make_strategy("prompts", {"policy": "timed", "policy_options": {"budget": 99}, "samples": 3,
                                      "variants": ["plain", "genius, expert", "lang:zh"]},
                          get_template("boxed"), EvalConfig().sampling, v)
        eng = ScriptedEngine(["x"])
        prompts = [s.assignment(Problem(id="p", question="1+1?", answer="2"), eng, k)[1] for k in range(3)]
    assert all("Use at most about 99 tokens." in p for p in prompts)  # timed's budget line reaches every variant
    assert "genius, expert" in prompts[1] and "请" in prompts[2]


def test_sample_curves_only_where_samples_are_exchangeable() -> None:
    rec = {"id": "a", "correct": True, "answer": "1", "tokens": 2, "seconds": 1.0,
           "traces": [{"answer": "1", "correct": True, "sample": 0}, {"answer": "2", "correct": False, "sample": 1}]}
    assert "samples" in summarize([rec], "vote", {"samples": 2})
    for strategy, opts in (("vote", {"stop": "quorum"}), ("branch", {}), ("prompts", {}), ("mixture", {})):
        s = summarize([rec], strategy, opts)
        assert "samples" not in s and s["samples_omitted"]


def test_sweep_reuses_one_big_vote_only_for_a_plain_vote(tmp_path) -> None:
    from reasonlab.evaluate.sweep import sweep

    base = {"dataset": {"limit": 2}, "strategy": "prompts", "strategy_options": {"samples": 2, "variants": ["plain"]}}
    res = sweep(base, "strategy_options.samples", [1, 2], tmp_path / "s", say=lambda _: None,
                engine=ScriptedEngine(["\\boxed{1}"]))
    assert res["reused_samples"] is False and len(res["points"]) == 2  # one real run per k
    base["strategy"] = "vote"
    base["strategy_options"] = {"samples": 2}
    res = sweep(base, "strategy_options.samples", [1, 2], tmp_path / "v", say=lambda _: None,
                engine=ScriptedEngine(["\\boxed{1}"]))
    assert res["reused_samples"] is True


def test_verifier_ignores_what_sympy_prints_on_stdout(tmp_path, monkeypatch) -> None:
    # every reply of the worker is preceded by a stray line on its stdout, as a chatty library would print
    (tmp_path / "sitecustomize.py").write_text(
        "import json\n_dumps = json.dumps\n"
        "def dumps(*a, **k):\n    print('latex2sympy: a stray line', flush=True)\n    return _dumps(*a, **k)\n"
        "json.dumps = dumps\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    with Verifier() as v:
        assert v.check("\\frac{1}{2}", "0.5")[0] and v.check("x^2 + 2x + 1", "(x+1)^2")[0]
        assert not v.check("x^2", "(x+1)^2")[0]
