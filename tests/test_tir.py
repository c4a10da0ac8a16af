"""The TIR trace policy: code runs in the sandbox and its output goes back into the trace.

Logic runs on a scripted engine (a fake: it replays canned texts with the stop reason a real engine
would report, and records the prompts it was given); a real run is recorded in the README.
"""

from __future__ import annotations

import pytest

from reasonlab.answers import Verifier
from reasonlab.data import Problem
from reasonlab.engines import Engine, Generation, SamplingParams
from reasonlab.strategies import Budget, get_template, make_strategy
from reasonlab.strategies.tir import FENCE_END

PROBLEM = Problem(id="p", question="What is 6 times 7?", answer="42")


class ScriptedStopEngine(Engine):
    """Scripted fake engine: each call returns the next (text, finish_reason, stop_reason)."""

    backend = "scripted"

    def __init__(self, script: list[tuple[str, str, str | None]]) -> None:
        super().__init__("scripted")
        self.script = list(script)
        self.prompts: list[str] = []
        self.stops: list[tuple[str, ...]] = []

    def generate(self, prompts: list[str], params: SamplingParams, cancel=None) -> list[Generation]:
        self.prompts.append(prompts[0])
        self.stops.append(params.stop)
        text, finish, stop = self.script.pop(0) if self.script else ("", "stop", None)
        return [Generation(text=text, completion_tokens=max(1, len(text.split())), finish_reason=finish,
                           stop_reason=stop)]

    def render_chat(self, messages) -> str:
        return "Q: " + messages[-1]["content"] + "\nA: "

    def count_tokens(self, text: str) -> int:
        return len(text.split())


@pytest.fixture(scope="module")
def verifier():
    with Verifier() as v:
        yield v


def run(script, verifier, **options):
    strategy = make_strategy("tir", options, get_template("tir"), SamplingParams(max_tokens=400), verifier)
    engine = ScriptedStopEngine(script)
    try:
        return strategy.solve(PROBLEM, engine, Budget()), engine
    finally:
        strategy.close()


def test_code_runs_and_output_is_injected(verifier) -> None:
    attempt, engine = run([
        ("Let me compute.\n```python\nx = 6 * 7\nprint(x)\n", "stop", FENCE_END),
        ("So the answer is \\boxed{42}.", "stop", None),
    ], verifier)
    trace = attempt.traces[0]
    assert attempt.answer == "42"
    assert "```python\nx = 6 * 7\nprint(x)\n```\n```output\n42\n```\n" in trace.text
    assert engine.prompts[1].endswith("```output\n42\n```\n")  # the model continues after the output
    tool = [e for e in trace.events if e["type"] == "tool"]
    assert len(tool) == 1 and tool[0]["output"] == "42\n" and tool[0]["error"] is None


def test_error_injects_traceback_and_nudge(verifier) -> None:
    attempt, _ = run([("```python\nprint(1 / 0)\n", "stop", FENCE_END), ("\\boxed{0}", "stop", None)], verifier)
    text = attempt.traces[0].text
    assert "ZeroDivisionError: division by zero\n```\nThe code raised an error; let me fix it.\n" in text


def test_state_persists_across_calls_of_a_trace(verifier) -> None:
    attempt, _ = run([
        ("```python\n    base = 5\n    print(base)\n", "stop", FENCE_END),  # indented: dedented before running
        ("Next:\n```python\nprint(base * 2)\n", "stop", FENCE_END),
        ("\\boxed{10}", "stop", None),
    ], verifier)
    outputs = [e["output"] for e in attempt.traces[0].events if e["type"] == "tool"]
    assert outputs == ["5\n", "10\n"] and attempt.answer == "10"


def test_unfinished_block_is_not_run(verifier) -> None:
    attempt, _ = run([("```python\nprint('never')\n", "length", None)], verifier)
    assert not [e for e in attempt.traces[0].events if e["type"] == "tool"]
    assert "```output" not in attempt.traces[0].text


def test_plain_fence_is_given_back(verifier) -> None:
    attempt, engine = run([("Table:\n", "stop", FENCE_END), ("a b\n", "stop", FENCE_END), ("\\boxed{1}", "stop", None)],
                          verifier)
    assert attempt.traces[0].text == "Table:\n```\na b\n```\n\\boxed{1}"
    assert not [e for e in attempt.traces[0].events if e["type"] == "tool"]


def test_max_calls_then_no_code_stop(verifier) -> None:
    attempt, engine = run([("```python\nprint(1)\n", "stop", FENCE_END), ("\\boxed{1}", "stop", None)], verifier,
                          max_calls=1)
    assert FENCE_END in engine.stops[0] and FENCE_END not in engine.stops[1]


def test_server_without_stop_reason_falls_back_to_open_block(verifier) -> None:
    attempt, _ = run([("```python\nprint(7)\n", "stop", None), ("\\boxed{7}", "stop", None)], verifier)
    assert [e["output"] for e in attempt.traces[0].events if e["type"] == "tool"] == ["7\n"]


def test_hostile_code_from_the_model_is_contained(verifier) -> None:
    attempt, _ = run([("```python\nimport os\nos.system('rm -rf /')\n", "stop", FENCE_END), ("\\boxed{0}", "stop", None)],
                     verifier)
    tool = [e for e in attempt.traces[0].events if e["type"] == "tool"][0]
    assert "PermissionError" in tool["error"]


def test_forced_code_opens_a_block(verifier) -> None:
    attempt, engine = run([("First, set up.", "stop", "\n\n"), ("print(2 + 2)\n", "stop", FENCE_END),
                           ("\\boxed{4}", "stop", None)], verifier, force_code=True)
    assert engine.prompts[1].endswith("First, set up.\n\n```python\n")
    assert [e["type"] for e in attempt.traces[0].events] == ["forced_code", "tool"] and attempt.answer == "4"


def test_sc_tir_vote_over_tir_traces_with_early_stop(verifier) -> None:
    """SC-TIR composes with an early-stop rule: quorum over TIR traces, code-less traces dropped."""
    code = ("Compute.\n```python\nprint(6 * 7)\n", "stop", FENCE_END)
    script = [("I just know: \\boxed{41}", "stop", None),  # trace 0: no code -> does not vote
              code, ("So \\boxed{42}", "stop", None),  # trace 1
              code, ("So \\boxed{42}", "stop", None)]  # trace 2 -> 2 votes of 2: quorum
    options = {"samples": 8, "policy": "tir", "stop": "quorum", "wave": 1, "require_code": True,
               "drop_invented_output": True}
    strategy = make_strategy("vote", options, get_template("tir"), SamplingParams(max_tokens=400), verifier)
    engine = ScriptedStopEngine(script)
    try:
        attempt = strategy.solve(PROBLEM, engine, Budget())
    finally:
        strategy.close()
    assert attempt.answer == "42" and attempt.stop_reason == "quorum" and len(attempt.traces) == 3
    assert attempt.traces[0].dropped == "no code" and attempt.votes == {"42": 2.0}
    assert all("```output\n42\n```" in t.text for t in attempt.traces[1:])
