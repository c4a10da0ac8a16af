"""Runs become training data: which traces become which rows, masks from the recorded ids, the test-set guard."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from reasonlab.data import load_problems
from reasonlab.datagen import DatagenConfig, Guard, build_rows, datagen, labels
from reasonlab.errors import DataError
from reasonlab.runs import ProblemRecord, RunStore, TraceRecord, read_run

BOXED = "so the answer is \\boxed{4}"
TOOL = {"type": "tool", "code": "print(2+2)", "output": "4\n"}


def trace(text: str = BOXED, correct: bool = True, sample: int = 0, **kw) -> TraceRecord:
    return TraceRecord(text=text, correct=correct, sample=sample, answer="4" if correct else "5", **kw)


@pytest.mark.parametrize("t, want", [
    (trace(), {"correct": True, "boxed": True, "finished": True, "no_invented_output": True, "well_formed": True}),
    (trace("it is 4", correct=True), {"boxed": False, "well_formed": False}),
    (trace(finish_reason="length"), {"finished": False, "well_formed": False}),
    (trace(finish_reason="cut"), {"finished": False}),
    (trace("```output\n4\n```\n" + BOXED), {"no_invented_output": False, "well_formed": False}),
    (trace("```output\n4\n```\n" + BOXED, events=[TOOL]), {"no_invented_output": True, "well_formed": True}),
    (trace(correct=False), {"correct": False, "well_formed": True}),
])
def test_labels(t: TraceRecord, want: dict) -> None:
    got = labels(t)
    assert {k: got[k] for k in want} == want


def write_run(path, records: list[ProblemRecord], template: str = "boxed"):
    store = RunStore(path)
    store.open({"config": {"prompt": {"template": template, "system": None}}}, {})
    for r in records:
        store.append(r)
    return read_run(path)


def problem(pid: str, traces: list[TraceRecord], question: str = "Two plus two, for a toy test?") -> ProblemRecord:
    return ProblemRecord(id=pid, question=question, prompt=f"<user>{question}<assistant>", traces=traces,
                         prompt_token_ids=[1, 2, 3])


NO_GUARD = Guard(texts={})


def test_sft_keeps_correct_well_formed_traces_one_per_problem(tmp_path) -> None:
    run = write_run(tmp_path / "r", [
        problem("a", [trace(sample=0), trace(BOXED + " again", sample=1), trace(correct=False, sample=2)]),
        problem("b", [trace("no box", sample=0), trace(correct=False, sample=1)]),
        problem("c", [trace(sample=0), trace(sample=1)]),  # the same text twice: one row at most
    ])
    rows, stats = build_rows([run], DatagenConfig(kind="sft"), NO_GUARD)
    assert sorted(r["id"] for r in rows) == ["a", "c"]
    assert all(r["prompt"].startswith("<user>") and r["correct"] and r["well_formed"] for r in rows)
    assert stats["dropped"]["correct but malformed"] == 1 and stats["dropped"]["duplicate text"] == 2
    rows, _ = build_rows([run], DatagenConfig(kind="sft", per_problem=5, require_format=False), NO_GUARD)
    assert sorted(r["id"] for r in rows) == ["a", "a", "b", "c"]


def test_sft_rows_mask_what_the_model_did_not_write(tmp_path) -> None:
    """Ids recorded with injected spans (a tool's output) become input_ids with a completion mask that is 0 on
    the prompt and on the injected span, 1 on what was sampled."""
    t = trace(token_ids=[10, 11, 12, 13, 14, 15], injected=[(2, 4)], events=[TOOL],
              text="```python\nprint(2+2)\n```\n```output\n4\n```\n" + BOXED)
    run = write_run(tmp_path / "r", [problem("a", [t])])
    (row,), _ = build_rows([run], DatagenConfig(kind="sft"), NO_GUARD)
    assert row["input_ids"] == [1, 2, 3, 10, 11, 12, 13, 14, 15]
    assert row["completion_mask"] == [0, 0, 0, 1, 1, 0, 0, 1, 1] and row["eos"] is True
    (row,), _ = build_rows([run], DatagenConfig(kind="sft", token_ids=False), NO_GUARD)
    assert "input_ids" not in row


def test_dpo_pairs_a_right_and_a_wrong_trace_of_one_problem(tmp_path) -> None:
    right = [trace(BOXED + f" ({i})", sample=i) for i in range(3)]
    wrong = [trace(f"\\boxed{{{5 + i}}}", correct=False, sample=3 + i) for i in range(3)]
    run = write_run(tmp_path / "r", [problem("a", right + wrong), problem("b", right[:1])])
    rows, stats = build_rows([run], DatagenConfig(kind="dpo", max_pairs=3), NO_GUARD)
    assert len(rows) == 3 and {r["id"] for r in rows} == {"a"}
    assert all("(" in r["chosen"] and "(" not in r["rejected"] for r in rows)
    # three pairs from three right and three wrong traces: no trace used twice
    assert len({r["chosen_sample"] for r in rows}) == 3 and len({r["rejected_sample"] for r in rows}) == 3
    assert stats["dropped"]["problems without a right and a wrong trace"] == 1


def test_kto_labels_desirable_and_undesirable(tmp_path) -> None:
    run = write_run(tmp_path / "r", [problem("a", [trace(), trace("no box"), trace("\\boxed{5}", correct=False, sample=2)])])
    rows, _ = build_rows([run], DatagenConfig(kind="kto"), NO_GUARD)
    assert sorted(r["label"] for r in rows) == [False, False, True]
    assert {(r["correct"], r["well_formed"]) for r in rows if not r["label"]} == {(True, False), (False, True)}
    rows, stats = build_rows([run], DatagenConfig(kind="kto", balance=True), NO_GUARD)
    assert sorted(r["label"] for r in rows) == [False, True] and stats["dropped"]["over class balance"] == 1


def test_conversational_form_rebuilds_the_run_template(tmp_path) -> None:
    run = write_run(tmp_path / "r", [problem("a", [trace(), trace(BOXED + "!", prompt="<persona>...")])])
    rows, stats = build_rows([run], DatagenConfig(kind="sft", form="conversational", per_problem=2), NO_GUARD)
    (row,) = rows  # the trace written under another prompt variant has no messages of its own
    assert row["prompt"] == [{"role": "user", "content": "Two plus two, for a toy test?\nPlease reason step by step, "
                                                         "and put your final answer within \\boxed{}."}]
    assert row["completion"] == [{"role": "assistant", "content": BOXED}] and "input_ids" not in row
    assert stats["dropped"]["no prompt in this form"] == 1


def test_the_guard_refuses_gsm8k_test_problems(tmp_path) -> None:
    test_q = load_problems("gsm8k", limit=1)[0].question
    train_q = load_problems("gsm8k-train", limit=1)[0].question
    run = write_run(tmp_path / "r", [problem("t", [trace()], question=test_q),
                                     problem("ok", [trace()], question=train_q)])
    stats = datagen([tmp_path / "r"], tmp_path / "sft.jsonl", DatagenConfig(kind="sft"))
    assert stats["rows"] == 1 and stats["contaminated_problems"] == {"gsm8k": 1}
    assert [json.loads(x)["id"] for x in (tmp_path / "sft.jsonl").read_text().splitlines()] == ["ok"]
    write_run(tmp_path / "only-test", [problem("t", [trace()], question=test_q)])
    with pytest.raises(DataError, match="overlapping gsm8k"):
        datagen([tmp_path / "only-test"], tmp_path / "none.jsonl", DatagenConfig(kind="sft"))
    assert not (tmp_path / "none.jsonl").exists()
    stats = datagen([tmp_path / "only-test"], tmp_path / "kept.jsonl", DatagenConfig(kind="sft",
                                                                                      allow_contaminated=True))
    assert stats["rows"] == 1 and stats["contamination_kept"]
    assert run.records  # (read back through reasonlab.runs)


def test_cli_writes_the_dataset_and_names_bad_input(tmp_path) -> None:
    write_run(tmp_path / "r", [problem("a", [trace(), trace("\\boxed{5}", correct=False, sample=1)])])
    cmd = [sys.executable, "-m", "reasonlab.cli", "datagen"]
    ok = subprocess.run(cmd + ["dpo", str(tmp_path / "r"), "-o", str(tmp_path / "d.jsonl")], capture_output=True,
                        text=True)
    assert ok.returncode == 0 and "1 dpo rows from 1 problems" in ok.stdout
    assert json.loads((tmp_path / "d.jsonl.stats.json").read_text())["rows"] == 1
    bad = subprocess.run(cmd + ["sft", str(tmp_path), "-o", str(tmp_path / "x.jsonl")], capture_output=True, text=True)
    assert bad.returncode == 2 and "is not a reasonlab run directory" in bad.stderr
    bad = subprocess.run(cmd + ["ppo", str(tmp_path / "r"), "-o", str(tmp_path / "x.jsonl")], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "No such command 'ppo'" in bad.stderr
