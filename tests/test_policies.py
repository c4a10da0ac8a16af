"""Trace policies (forced, timed) and branching search: logic on a scripted fake engine (it replays
canned texts with the finish and stop reasons a real engine reports), budget forcing for real on
smollm2-135m, and a two-model mixture on real models."""

from __future__ import annotations

import pytest
from test_tir import ScriptedStopEngine

from reasonlab.answers import Verifier
from reasonlab.data import Problem
from reasonlab.engines import SamplingParams
from reasonlab.evaluate.metrics import summarize
from reasonlab.evaluate.runner import record_for
from reasonlab.strategies import Budget, get_template, make_strategy
from reasonlab.strategies.forced import close_braces

PROBLEM = Problem(id="p", question="What is 6 times 7?", answer="42")


@pytest.fixture(scope="module")
def verifier():
    with Verifier() as v:
        yield v


def solve(name, script, verifier, max_tokens=400, **options):
    s = make_strategy(name, options, get_template("boxed"), SamplingParams(max_tokens=max_tokens), verifier)
    engine = ScriptedStopEngine(script)
    try:
        return s.solve(PROBLEM, engine, Budget()), engine
    finally:
        s.close()


def test_forced_replaces_an_early_ending_with_wait(verifier) -> None:
    script = [("6 times 7 is 42. \\boxed{42}", "stop", None),  # ends after 6 "tokens"
              (" let me check: 7 + 7 + 7 + 7 + 7 + 7 = 42. \\boxed{42}", "stop", None)]
    a, eng = solve("forced", script, verifier, min_thinking=10, max_waits=3)
    t = a.traces[0]
    assert [e["type"] for e in t.events] == ["wait"] and "\\boxed{42}\n\nWait, let me check" in t.text
    assert eng.prompts[1].endswith("\n\nWait,") and a.answer == "42"


def test_forced_wait_replaces_think_end_and_respects_max_waits(verifier) -> None:
    script = [("short", "stop", "</think>"), ("still short", "stop", "</think>"), ("x", "stop", "</think>"),
              ("The answer is \\boxed{42}", "stop", None)]
    a, eng = solve("forced", script, verifier, min_thinking=100, max_waits=2)
    t = a.traces[0]
    assert sum(e["type"] == "wait" for e in t.events) == 2
    assert "</think>" in eng.stops[0] and t.text.count("Wait,") == 2
    assert t.text.endswith("x</think>The answer is \\boxed{42}")  # after the last wait the model may finish


def test_forced_cut_appends_the_answer_cue(verifier) -> None:
    script = [("a " * 20, "length", None), ("42", "stop", "\n")]
    a, eng = solve("forced", script, verifier, max_thinking=20)
    t = a.traces[0]
    assert t.finish_reason == "cut" and t.text.endswith("Final Answer: \\boxed{42}") and a.answer == "42"
    assert close_braces("\\boxed{\\frac{1}{2") == "\\boxed{\\frac{1}{2}}"


def test_timed_states_the_budget_and_injects_reminders(verifier) -> None:
    script = [("w " * 10, "length", None), ("end of line", "stop", "\n"), ("w " * 10, "length", None),
              ("\n", "stop", "\n"), ("so \\boxed{42}", "stop", None)]
    a, eng = solve("timed", script, verifier, budget=100, cadence=10)
    t = a.traces[0]
    assert "Use at most about 100 tokens." in eng.prompts[0]
    reminders = [e for e in t.events if e["type"] == "reminder"]
    assert len(reminders) == 2 and "(About 87 tokens left.)" in t.text and a.answer == "42"


def test_branch_forks_votes_over_leaves_and_counts_shared_tokens_once(verifier) -> None:
    script = [("First step.", "stop", "\n\n"),  # the stem, up to a paragraph break
              ("So \\boxed{42}", "stop", None), ("Hmm.", "stop", "\n\n"),  # level 1: a leaf and an open node
              ("Then \\boxed{42}", "stop", None), ("Or \\boxed{41}", "stop", None)]  # level 2 children
    a, eng = solve("branch", script, verifier, width=2, depth=2, agree_stop=False)
    assert a.answer == "42" and a.votes == {"42": 2.0, "41": 1.0}
    assert sorted(t.tags["path"] for t in a.traces) == ["0.0", "0.1.0", "0.1.1"]
    assert any("Let me verify this with another approach." in p for p in eng.prompts)
    assert a.completion_tokens == sum(len(s[0].split()) for s in script)  # the stem is counted once


def test_branch_stops_when_a_forks_children_agree(verifier) -> None:
    script = [("Step.", "stop", "\n\n"), ("\\boxed{42}", "stop", None), ("\\boxed{42}", "stop", None)]
    a, _ = solve("branch", script, verifier, width=2, depth=3)
    assert a.stop_reason == "children_agree" and a.answer == "42" and len(a.traces) == 2


# --- real models -------------------------------------------------------------------------------------------
def test_budget_forcing_on_smollm2_for_real(smol_engine, verifier) -> None:
    problem = Problem(id="r", question="What is 2 + 3? Reply with just the number in \\boxed{}.", answer="5")
    params = SamplingParams(temperature=0.0, max_tokens=96)
    s = make_strategy("forced", {"num_waits": 1, "max_thinking": 48}, get_template("boxed"), params, verifier)
    t = s.solve(problem, smol_engine, Budget()).traces[0]
    if t.finish_reason == "cut":  # the model ran to the cap before ending: the cut still answers
        assert "Final Answer: \\boxed{" in t.text and t.answer is not None
    else:
        assert any(e["type"] == "wait" for e in t.events) and "Wait," in t.text
    # a cap below the model's natural length always cuts, and the cut trace ends with an extracted answer
    s = make_strategy("forced", {"max_thinking": 12}, get_template("boxed"), params, verifier)
    t = s.solve(PROBLEM, smol_engine, Budget()).traces[0]
    assert t.finish_reason == "cut" and "Final Answer: \\boxed{" in t.text and t.answer is not None
    assert t.text.rstrip().endswith("}")


def test_forced_min_thinking_on_smollm2_injects_wait(smol_engine, verifier) -> None:
    problem = Problem(id="r", question="Say hi.", answer="hi")
    s = make_strategy("forced", {"min_thinking": 400, "max_waits": 2}, get_template("plain"),
                      SamplingParams(temperature=0.0, max_tokens=120), verifier)
    t = s.solve(problem, smol_engine, Budget()).traces[0]
    assert any(e["type"] == "wait" for e in t.events) and "Wait," in t.text


def test_mixture_of_two_real_models_reports_each(smol_engine, smol_path, verifier) -> None:
    options = {"samples": 4, "members": [{"share": 50}, {"model": str(smol_path), "share": 50,
                                                         "engine": {"n_ctx": 1024}}]}
    s = make_strategy("mixture", options, get_template("boxed"), SamplingParams(temperature=0.8, seed=1, max_tokens=24),
                      verifier)
    try:
        a = s.solve(PROBLEM, smol_engine, Budget())
    finally:
        s.close()
    models = [t.tags["model"] for t in a.traces]
    assert len(a.traces) == 4 and models.count(str(smol_path)) == 2 and models.count(smol_engine.model) == 2
    summary = summarize([record_for(PROBLEM, a, verifier)])
    assert set(summary["by_model"]) == {str(smol_path), smol_engine.model}
