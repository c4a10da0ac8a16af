"""GSM-Symbolic variants: numbers become slots, a program is accepted only when it reproduces the gold answer in
the real sandbox, variants keep the answer's kind; rejections are counted by reason."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from reasonlab.data import Problem, load_problems
from reasonlab.datagen.variants import (VariantsConfig, answer_kind, draw, parse_program, render, slots_of,
                                        variants)
from reasonlab.engines import Engine, Generation, SamplingParams
from reasonlab.errors import DataError

APPLES = Problem(id="a", question="Tom has 12 apples and buys 30 more. How many apples does he have?", answer="42")
SPLIT = Problem(id="s", question="Ann shares 20 sweets among 4 friends. How many does each get?", answer="5")


class ScriptedProgramEngine(Engine):
    """A scripted engine (not a model): answers a program request with ``programs[problem word]``, looked up by a
    word of the templated question it is shown."""

    backend = "scripted"

    def __init__(self, programs: dict[str, str]) -> None:
        super().__init__("scripted-programs")
        self.programs = programs

    def render_chat(self, messages) -> str:
        return messages[-1]["content"]

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def generate(self, prompts, params: SamplingParams, cancel=None) -> list[Generation]:
        out = []
        for j, prompt in enumerate(prompts):
            key = next(k for k in self.programs if k in prompt)
            out.append(Generation(text=f"Here:\n```python\n{self.programs[key]}\n```", index=j, completion_tokens=20))
        return out


@pytest.mark.parametrize("question, values", [
    ("He paid $1,250.50 for 3 chairs.", [1250.5, 3.0]),
    ("In 2019 she ran 5 km on the 3rd day at 7:30.", [5.0]),
    ("A 25% discount on 40 items", [25.0, 40.0]),
    ("1 more than 0 is x2 or 1.5", [1.5]),
])
def test_slots_table(question, values) -> None:
    slots = slots_of(question)
    assert [s.value for s in slots] == values
    assert render(question, slots, {s.name: s.value for s in slots}) == question  # the template gives it back


def test_draws_keep_the_kind_of_number() -> None:
    rng = random.Random(0)
    money, pct, tens = slots_of("costs $3.50, 25% off, 60 items")
    for _ in range(50):
        m, p, t = draw(money, rng, 0.5), draw(pct, rng, 0.5), draw(tens, rng, 0.5)
        assert 1.75 <= m <= 7.0 and round(m, 2) == m
        assert 5 <= p <= 95 and p % 5 == 0
        assert t % 10 == 0 and 30 <= t <= 120


def test_parse_program_and_answer_kind() -> None:
    assert parse_program("ok\n```python\ndef solve(n1):\n    return n1\n```") == "def solve(n1):\n    return n1\n"
    assert parse_program("def solve(n1): return 2") == "def solve(n1): return 2"
    assert parse_program("I cannot") is None
    assert answer_kind(5.0) == (True, 1) and answer_kind(2.5) == (False, 1) and answer_kind(-3.0) == (True, -1)


def test_accepted_programs_make_variants_of_the_same_kind(tmp_path) -> None:
    engine = ScriptedProgramEngine({
        "apples": "def solve(n1, n2):\n    return n1 + n2",
        "sweets": "def solve(n1, n2):\n    return n1 / n2",  # right on 20/4; many draws give fractions: dropped
    })
    stats = variants([APPLES, SPLIT], engine, tmp_path / "v.jsonl", VariantsConfig(per_problem=3, draws=200),
                     progress=False)
    rows = [json.loads(x) for x in (tmp_path / "v.jsonl").read_text().splitlines()]
    assert stats["accepted"] == 2 and len(rows) == 6
    for r in rows:
        numbers = r["numbers"]
        if r["source_id"] == "a":
            assert int(r["answer"]) == numbers["n1"] + numbers["n2"]
            assert f"has {int(numbers['n1'])} apples" in r["question"]
        else:
            assert float(r["answer"]) == numbers["n1"] / numbers["n2"] and float(r["answer"]).is_integer()
    originals = [json.loads(x) for x in (tmp_path / "v.originals.jsonl").read_text().splitlines()]
    assert [o["id"] for o in originals] == ["a", "s"] and originals[0]["question"] == APPLES.question
    # the file is a dataset reasonlab eval reads
    assert [p.answer for p in load_problems(str(tmp_path / "v.jsonl"))] == [r["answer"] for r in rows]


def test_rejections_are_counted_by_reason(tmp_path) -> None:
    engine = ScriptedProgramEngine({
        "apples": "def solve(n1, n2):\n    return n1 * n2",  # wrong on the original numbers
        "sweets": "def solve(n1, n2):\n    return n1 / 0",  # raises in the sandbox
        "nothing": "def solve(:",
    })
    bad = Problem(id="b", question="Say nothing here: 7 and 9 give?", answer="16")
    with pytest.raises(DataError, match="no variants from 3 problems"):
        variants([APPLES, SPLIT, bad], engine, tmp_path / "v.jsonl", VariantsConfig(attempts=2), progress=False)
    stats_free = variants([APPLES.model_copy(update={"answer": "360"})], engine, tmp_path / "ok.jsonl",
                          VariantsConfig(per_problem=2), progress=False)
    assert stats_free["accepted"] == 1
    engine2 = ScriptedProgramEngine({"apples": "FIXED = ['n1', 'n2']\ndef solve(n1, n2):\n    return n1 + n2"})
    with pytest.raises(DataError, match="every number fixed"):
        variants([APPLES], engine2, tmp_path / "f.jsonl", progress=False)


def test_reasons_in_stats(tmp_path) -> None:
    engine = ScriptedProgramEngine({"apples": "def solve(n1, n2):\n    return n1 + n2",
                                    "sweets": "def solve(n1, n2):\n    return n1 * n2"})
    stats = variants([APPLES, SPLIT], engine, tmp_path / "v.jsonl", VariantsConfig(per_problem=2), progress=False)
    assert stats["rejected"] == {"wrong on the original numbers": 1} and stats["acceptance_rate"] == 0.5


def test_cli_names_what_rejected_everything(tmp_path, smol_path) -> None:
    """On a real model too small to write programs, nothing is accepted: one line says why, exit 2."""
    run = subprocess.run([sys.executable, "-m", "reasonlab.cli", "datagen", "variants", "-d", "gsm8k", "-n", "1",
                          "-m", "smollm2-135m", "--attempts", "1", "--max-tokens", "48", "--parallel", "1", "--no-progress",
                          "-o", str(tmp_path / "v.jsonl")], capture_output=True, text=True)
    if run.returncode == 0:  # it did write a right program: then the files are there
        assert (tmp_path / "v.jsonl").exists() and (tmp_path / "v.originals.jsonl").exists()
    else:
        assert run.returncode == 2 and "no variants from 1 problems" in run.stderr


@pytest.mark.parametrize("program, reason", [
    ("def solve(n1, n2):\n    return n1 / 0", "program raised ZeroDivisionError"),
    ("def solve(n1, n2):\n    print(n1 + n2)", "program returned no number"),  # returns None
    ("def solve(n1, n2):\n    return 'twelve'", "program returned no number"),
    ("def solve(n1, n2):\n    return n1 * n2", "wrong on the original numbers"),
])
def test_each_failed_program_is_counted_by_what_went_wrong(tmp_path, program, reason) -> None:
    engine = ScriptedProgramEngine({"apples": program, "sweets": "def solve(n1, n2):\n    return n1 / n2"})
    stats = variants([APPLES, SPLIT], engine, tmp_path / "v.jsonl", VariantsConfig(per_problem=2, attempts=1),
                     progress=False)
    assert stats["rejected"] == {reason: 1}
