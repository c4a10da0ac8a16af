"""Models in conversation: the critic protocol (agree, revise, give up), the debate (agents read each other,
majority at the end), per-round accuracy, and a real run of both on llama.cpp."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from reasonlab.answers import Verifier
from reasonlab.data import Problem
from reasonlab.engines import Engine, Generation, SamplingParams
from reasonlab.errors import ConfigError
from reasonlab.strategies import Budget, get_template, make_strategy
from reasonlab.strategies.conversation import fill, verdict

PROBLEM = Problem(id="p", question="What is 1 + 2?", answer="3")


class ScriptedChatEngine(Engine):
    """A scripted engine (not a model) that reads the conversation it is given: a critic request answers the next
    verdict of ``verdicts``; a revision request the next answer of ``revisions``; a debate turn adopts the most
    common answer among its own and the other agents' solutions; a first answer is ``first[seed]``."""

    backend = "scripted"

    def __init__(self, first: list[str], verdicts: list[str] = (), revisions: list[str] = ()) -> None:
        super().__init__("scripted-chat")
        self.first, self.verdicts, self.revisions = first, list(verdicts), list(revisions)
        self.asked: list[str] = []  # the kind of each turn, in order

    def render_chat(self, messages) -> str:
        return json.dumps(messages)

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def generate(self, prompts, params: SamplingParams, cancel=None) -> list[Generation]:
        out = []
        for j, prompt in enumerate(prompts):
            messages = json.loads(prompt)
            last = messages[-1]["content"]
            if "Proposed solution" in last:
                kind, text = "critic", self.verdicts.pop(0)
            elif "A reviewer checked" in last:
                kind, text = "revise", f"fixed: \\boxed{{{self.revisions.pop(0)}}}"
            elif "other agents" in last:
                answers = re.findall(r"\\boxed\{(\w+)\}", messages[-2]["content"] + last)  # its own and theirs
                kind, text = "debate", f"agreed \\boxed{{{max(answers, key=answers.count)}}}"
            else:
                kind, text = "first", f"so \\boxed{{{self.first[(params.seed or 0) % len(self.first)]}}}"
            self.asked.append(kind)
            out.append(Generation(text=text, index=j, completion_tokens=10, prompt_tokens=len(prompt) // 4))
        return out


@pytest.fixture(scope="module")
def verifier():
    with Verifier() as v:
        yield v


def converse(verifier, engine, temperature=0.7, **options):
    s = make_strategy("conversation", options, get_template("boxed"),
                      SamplingParams(temperature=temperature, seed=0, max_tokens=100), verifier)
    try:
        return s.solve(PROBLEM, engine, Budget())
    finally:
        s.close()


@pytest.mark.parametrize("text, want", [
    ("All steps hold.\nVERDICT: CORRECT", True), ("Step 2 adds wrong.\nVERDICT: WRONG", False),
    ("verdict: incorrect", False), ("VERDICT: WRONG ... on reflection VERDICT: **CORRECT**", True), ("fine", None),
    # without the line: the forms the 1.5B critic writes instead
    ("The solution and its final answer are correct. Therefore, the verdict is:\n\\[\n\\boxed{\\text{CORRECT}}\n\\]", True),
    ("so the verdict is \\boxed{WRONG}", False),
    ("The solution is correct. The total is \\boxed{260}.", True),
    ("The final answer is not correct: 16 - 3 - 4 = 9.", False),
    ("The proposed solution is incorrect.", False),
    ("The solution is correct at first sight, but the final answer is wrong.", False),
    ("The answer 260 is the total.", None), ("Step 3 adds 80 and 20.", None),
    ("The solution seems wrong. VERDICT: CORRECT", True),  # the asked-for line rules
])
def test_verdict_table(text, want) -> None:
    assert verdict(text) is want


def test_fill_keeps_latex_braces() -> None:
    assert fill("{critique} and \\boxed{{}}", critique="x = \\frac{1}{2}") == "x = \\frac{1}{2} and \\boxed{}"


def test_critic_that_agrees_ends_the_conversation(verifier) -> None:
    a = converse(verifier, ScriptedChatEngine(["3"], verdicts=["Fine.\nVERDICT: CORRECT"]))
    assert a.answer == "3" and a.stop_reason == "agreed" and len(a.traces) == 2
    assert [t.tags["role"] for t in a.traces] == ["solver", "critic"]
    assert a.traces[0].valid and not a.traces[1].valid and a.meta["round_traces"] == [0]


def test_solver_revises_after_a_named_error(verifier) -> None:
    engine = ScriptedChatEngine(["5"], verdicts=["Step 1 is wrong.\nVERDICT: WRONG", "VERDICT: CORRECT"],
                                revisions=["3"])
    a = converse(verifier, engine)
    assert engine.asked == ["first", "critic", "revise", "critic"]
    assert a.answer == "3" and a.meta["round_traces"] == [0, 2] and a.meta["verdicts"] == [False, True]
    assert [t.valid for t in a.traces] == [False, False, True, False]  # only the standing answer votes
    revise_prompt = json.loads(a.traces[2].prompt)
    assert revise_prompt[-2] == {"role": "assistant", "content": "so \\boxed{5}"}  # it sees its own solution
    assert "Step 1 is wrong." in revise_prompt[-1]["content"]


def test_rounds_cap_and_unclear_reviews(verifier) -> None:
    a = converse(verifier, ScriptedChatEngine(["5"], verdicts=["VERDICT: WRONG"], revisions=["4"]), rounds=1)
    assert a.stop_reason == "rounds" and a.answer == "4" and len(a.traces) == 3
    a = converse(verifier, ScriptedChatEngine(["5"], verdicts=["no idea"]))
    assert a.stop_reason == "unclear review" and a.answer == "5"
    a = converse(verifier, ScriptedChatEngine(["5"], verdicts=["no idea", "VERDICT: CORRECT"], revisions=["3"]),
                 on_unclear="revise")
    assert a.answer == "3"


def test_debate_agents_read_each_other_and_the_majority_wins(verifier) -> None:
    engine = ScriptedChatEngine(["3", "5", "3"])  # agent i's first answer (seed + i)
    a = converse(verifier, engine, mode="debate", agents=3, rounds=1)
    assert engine.asked == ["first"] * 3 + ["debate"] * 3
    assert a.answer == "3" and a.votes == {"3": 3.0}
    assert [t.tags["round"] for t in a.traces] == [0, 0, 0, 1, 1, 1]
    assert [t.valid for t in a.traces] == [False] * 3 + [True] * 3
    others = json.loads(a.traces[4].prompt)[-1]["content"]  # agent 2 was shown agents 1 and 3, not itself
    assert "Agent 1:" in others and "Agent 3:" in others and "Agent 2:" not in others
    assert len(a.meta["round_traces"]) == 2


def test_a_greedy_debate_of_one_model_is_refused(verifier) -> None:
    with pytest.raises(ConfigError, match="greedy debate"):
        converse(verifier, ScriptedChatEngine(["3"]), temperature=0.0, mode="debate")
    with pytest.raises(ConfigError, match="option mode"):
        converse(verifier, ScriptedChatEngine(["3"]), mode="duel")


def test_real_runs_record_every_turn_and_rounds(tmp_path, smol_path) -> None:
    """Both protocols on llama.cpp through `reasonlab eval`: every turn is a trace with its role, the summary has
    accuracy per round, and report.html renders the turns."""
    cli = [sys.executable, "-m", "reasonlab.cli"]
    base = ["eval", "-m", "smollm2-135m", "-d", "gsm8k", "-n", "2", "-s", "conversation", "-t", "0.7",
            "--max-tokens", "24", "--no-progress"]
    for name, opts in (("critic", ["-O", "rounds=1", "-O", "on_unclear=revise"]),
                       ("debate", ["-O", "mode=debate", "-O", "agents=2", "-O", "rounds=1", "--parallel", "2"])):
        run = subprocess.run(cli + base + opts + ["--out", str(tmp_path / name)], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        rec = json.loads((tmp_path / name / "results.jsonl").read_text().splitlines()[0])
        roles = [t["tags"]["role"] for t in rec["traces"]]
        assert roles == (["solver", "critic", "solver"] if name == "critic" else ["agent"] * 4)
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        assert len(summary["rounds"]["accuracy"]) == 2 and summary["rounds"]["problems"] == 2
    report = subprocess.run(cli + ["report", str(tmp_path / "critic"), "--out", str(tmp_path / "rep")],
                            capture_output=True, text=True)
    assert report.returncode == 0, report.stderr
    assert "critic" in (tmp_path / "rep" / "report.html").read_text()
