"""Problems that verify themselves: format checks, the code check in the sandbox, solve-back agreement, near
duplicates and test-set overlap, each rejection counted."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from reasonlab.data import load_problems
from reasonlab.datagen.problems import ProblemsConfig, check_format, generate_problems, parse_proposal
from reasonlab.engines import Engine, Generation, SamplingParams
from reasonlab.errors import DataError

GOOD = "Problem: A farmer has 12 cows and buys 7 more, then sells 4 of them at the market. How many cows now?\n" \
       "Solution: 12 + 7 - 4 = 15, so \\boxed{15}."
CODE = "Problem: A baker bakes 25 loaves each day for 6 days and gives away 30 of them. How many loaves are left?\n" \
       "Solution:\n```python\nprint(25 * 6 - 30)\n```\nSo \\boxed{120}."
LIAR = "Problem: A tank holds 40 litres and leaks 3 litres an hour for 5 hours. How many litres remain in it?\n" \
       "Solution:\n```python\nprint(40 - 3 * 5)\n```\nSo \\boxed{26}."
TWICE = GOOD.replace("at the market", "at the fair")  # a near duplicate of GOOD: one word changed
TWO_ANSWERS = GOOD.replace("so \\boxed{15}", "\\boxed{14} or \\boxed{15}")
HARD = "Problem: A library lends 45 books on Monday and twice as many on Tuesday. How many books in both days?\n" \
       "Solution: 45 + 90 = \\boxed{135}."


class ScriptedProposerEngine(Engine):
    """A scripted engine (not a model): proposal i (its seed) is ``proposals[i]``; asked to solve a problem it
    answers from ``solves`` (a list of answers per distinctive word of the problem), sample s taking entry s."""

    backend = "scripted"

    def __init__(self, proposals: list[str], solves: dict[str, list[str]]) -> None:
        super().__init__("scripted-proposer")
        self.proposals, self.solves = proposals, solves

    def render_chat(self, messages) -> str:
        return messages[-1]["content"]

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def generate(self, prompts, params: SamplingParams, cancel=None) -> list[Generation]:
        prompt = prompts[0]
        if prompt.startswith("Write one new"):
            return [Generation(text=self.proposals[params.seed % 100003 % len(self.proposals)], completion_tokens=30)]
        answers = next(v for k, v in self.solves.items() if k in prompt)
        return [Generation(text=f"\\boxed{{{answers[s % len(answers)]}}}", sample=s, completion_tokens=10)
                for s in range(params.n)]


@pytest.mark.parametrize("text, want", [
    (GOOD, (15, None)), (TWO_ANSWERS, (None, "not exactly one boxed answer")),
    (GOOD.replace("\\boxed{15}", "\\boxed{15.5}"), (None, "answer not an integer in range")),
    ("Problem: Too short?\nSolution: \\boxed{1}", (None, "problem length")),
])
def test_format_checks(text, want) -> None:
    problem, solution = parse_proposal(text)
    assert check_format(problem, solution, ProblemsConfig()) == want


def test_aime_range() -> None:
    problem, solution = parse_proposal(GOOD.replace("\\boxed{15}", "\\boxed{1500}"))
    assert check_format(problem, solution, ProblemsConfig(style="aime"))[1] == "answer not an integer in range"


def test_kept_and_rejected_by_reason(tmp_path) -> None:
    test_question = load_problems("gsm8k", limit=1)[0].question  # a bundled test problem, proposed as new
    proposals = [GOOD, CODE, LIAR, TWICE, HARD, "no structure at all",
                 f"Problem: {test_question}\nSolution: \\boxed{{18}}"]
    solves = {"Janet": ["18"], "farmer": ["15"], "baker": ["120", "120", "120", "7"], "tank": ["25"],
              "library": ["135", "90"]}  # looked up in order: the test problem mentions "farmers'" too
    engine = ScriptedProposerEngine(proposals, solves)
    stats = generate_problems(engine, tmp_path / "gen.jsonl", ProblemsConfig(proposals=len(proposals), k=4, m=3),
                              progress=False)
    kept = [json.loads(x) for x in (tmp_path / "gen.jsonl").read_text().splitlines()]
    assert [k["answer"] for k in kept] == ["15", "120"]
    assert kept[1]["solver_pass_rate"] == 0.75 and kept[1]["difficulty"] == 0.25
    assert stats["rejected"] == {"code disagrees with the answer": 1, "near duplicate": 1, "solver disagrees": 1,
                                 "no Problem/Solution parts": 1, "overlaps gsm8k (test)": 1}
    assert [p.answer for p in load_problems(str(tmp_path / "gen.jsonl"))] == ["15", "120"]  # a dataset


def test_nothing_kept_is_one_line(tmp_path) -> None:
    engine = ScriptedProposerEngine(["nothing"], {})
    with pytest.raises(DataError, match=re.escape("no problems kept of 2 proposed: no Problem/Solution parts 2")):
        generate_problems(engine, tmp_path / "g.jsonl", ProblemsConfig(proposals=2), progress=False)


def test_cli_on_a_real_model(tmp_path, smol_path) -> None:
    run = subprocess.run([sys.executable, "-m", "reasonlab.cli", "datagen", "problems", "-n", "2", "--proposer",
                          "smollm2-135m", "--k", "2", "--m", "1", "--max-tokens", "64", "--parallel", "2",
                          "--no-progress", "-o", str(tmp_path / "g.jsonl")], capture_output=True, text=True)
    if run.returncode == 0:
        assert "proposed problems kept" in run.stdout and (tmp_path / "g.jsonl.stats.json").exists()
    else:
        assert run.returncode == 2 and "no problems kept of 2 proposed" in run.stderr, run.stderr


class BrokenAfterEngine(ScriptedProposerEngine):
    """The scripted proposer, failing (as a killed run would stop) on the proposal whose seed is ``fail_at``."""

    def __init__(self, proposals, solves, fail_at: int) -> None:
        super().__init__(proposals, solves)
        self.fail_at, self.proposed = fail_at, []

    def generate(self, prompts, params: SamplingParams, cancel=None) -> list[Generation]:
        if prompts[0].startswith("Write one new"):
            if params.seed == self.fail_at:
                raise RuntimeError("stopped")
            self.proposed.append(params.seed)
        return super().generate(prompts, params, cancel)


def test_a_stopped_run_resumes_from_its_journal(tmp_path) -> None:
    proposals, solves = [GOOD, "no structure", CODE, HARD], {"farmer": ["15"], "baker": ["120"], "library": ["1"]}
    cfg = ProblemsConfig(proposals=4, k=2, m=2, parallel=1)
    with pytest.raises(RuntimeError, match="stopped"):
        generate_problems(BrokenAfterEngine(proposals, solves, fail_at=2), tmp_path / "g.jsonl", cfg, progress=False)
    assert not (tmp_path / "g.jsonl").exists()
    journal = (tmp_path / "g.jsonl.rows.jsonl").read_text().splitlines()
    assert [json.loads(x)["proposal"] for x in journal[1:]] == [0, 1]  # the finished proposals, kept
    (tmp_path / "g.jsonl.rows.jsonl").write_text("\n".join(journal) + '\n{"proposal": 3, "top')  # cut by a kill
    again = BrokenAfterEngine(proposals, solves, fail_at=-1)
    stats = generate_problems(again, tmp_path / "g.jsonl", cfg, progress=False)
    assert again.proposed == [2, 3] and stats["resumed"] == 2  # only the unfinished ones are proposed again
    fresh = generate_problems(ScriptedProposerEngine(proposals, solves), tmp_path / "f.jsonl", cfg, progress=False)
    assert (tmp_path / "g.jsonl").read_text() == (tmp_path / "f.jsonl").read_text()
    assert stats["rejected"] == fresh["rejected"] == {"no Problem/Solution parts": 1, "solver disagrees": 1}
    with pytest.raises(DataError, match="g.jsonl.rows.jsonl was written with other settings"):
        generate_problems(again, tmp_path / "g.jsonl", ProblemsConfig(proposals=4, k=3, m=2), progress=False)
