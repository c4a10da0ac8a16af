"""The run record: one writer, one reader, old run directories still read."""

from __future__ import annotations

import json

import pytest
import yaml

from reasonlab.errors import ConfigError, DataError
from reasonlab.runs import ErrorRecord, ProblemRecord, RunStore, TraceRecord, read_run

# a results.jsonl line as the runner wrote it before run records were typed (no prompt, an "error" field)
OLD_LINE = {"id": "gsm8k-0", "question": "q?", "gold": "72", "answer": "72", "correct": True, "grade_note": "",
            "tokens": 10, "prompt_tokens": 5, "seconds": 0.1, "finish_reason": "stop", "stop_reason": "done",
            "votes": {"72": 1.0}, "strategy_meta": {}, "error": None,
            "traces": [{"text": "\\boxed{72}", "answer": "72", "completion_tokens": 10, "prompt_tokens": 5,
                        "finish_reason": "stop", "seconds": 0.1, "events": [], "sample": 0, "tags": {},
                        "token_logprobs": None, "confidence": None, "valid": True, "dropped": None,
                        "correct": True}], "meta": {}}


def old_run(path) -> None:
    path.mkdir()
    (path / "config.yaml").write_text(yaml.safe_dump({"config": {"strategy": "single"},
                                                      "identity": {"sampling": {"temperature": 0.0}}}))
    (path / "results.jsonl").write_text(json.dumps(OLD_LINE) + "\n")


def test_old_run_directories_still_read_and_resume(tmp_path) -> None:
    old_run(tmp_path / "old")
    run = read_run(tmp_path / "old")
    rec = run.records[0]
    assert rec.prompt is None and rec.traces[0].correct and rec.error is None  # unknown old fields are kept
    assert run.record_dicts()[0]["votes"] == {"72": 1.0}
    store = RunStore(tmp_path / "old")  # an identity without the loaded model resumes (it predates the field)
    store.open({"config": {}}, {"sampling": {"temperature": 0.0}, "model": {"backend": "llamacpp"}})
    assert store.done_ids() == {"gsm8k-0"}
    with pytest.raises(ConfigError, match="model.backend"):
        RunStore(tmp_path / "old").open({}, {"sampling": {"temperature": 0.0}, "model": {"backend": "hf"}})


def test_prompt_is_kept_once_per_record(tmp_path) -> None:
    store = RunStore(tmp_path / "r")
    store.open({}, {})
    store.append(ProblemRecord(id="a", prompt="<chat>q", traces=[TraceRecord(text="x"),
                                                                 TraceRecord(text="y", prompt="<persona>q")]))
    rec = read_run(tmp_path / "r").records[0]
    assert [rec.trace_prompt(t) for t in rec.traces] == ["<chat>q", "<persona>q"]


@pytest.mark.parametrize("reader", ["read_run", "store"])
def test_one_parser_torn_last_line_skipped_bad_line_named(tmp_path, reader) -> None:
    old_run(tmp_path / "r")
    results = tmp_path / "r" / "results.jsonl"
    with results.open("a") as fh:
        fh.write('{"id": "gsm8k-1", "answ')  # a kill mid-write
    if reader == "read_run":
        assert [r.id for r in read_run(tmp_path / "r").records] == ["gsm8k-0"]
        assert results.read_text().endswith('"answ')  # the reader never modifies a run
    else:
        store = RunStore(tmp_path / "r")
        store.open({}, {"sampling": {"temperature": 0.0}})
        assert store.done_ids() == {"gsm8k-0"} and results.read_text().endswith("\n")  # the writer cuts it off
    results.write_text(json.dumps(OLD_LINE) + "\nnot json\n")
    with pytest.raises(DataError, match=r"results\.jsonl:2"):
        read_run(tmp_path / "r")
    with pytest.raises(DataError, match=r"results\.jsonl:2"):
        RunStore(tmp_path / "r").open({}, {"sampling": {"temperature": 0.0}})


def test_errors_are_apart_counted_and_cleared_by_a_result(tmp_path) -> None:
    store = RunStore(tmp_path / "r")
    store.open({}, {})
    store.fail(ErrorRecord(id="a", error="HTTP 500"))
    store.fail(ErrorRecord(id="a", error="HTTP 502"))
    store.fail(ErrorRecord(id="b", error="prompt too long", retryable=False))
    assert store.todo(["a", "b", "c"]) == ["a", "c"]
    again = RunStore(tmp_path / "r")
    again.open({}, {})
    assert {e.id: (e.error, e.attempts) for e in again.errors()} == {"a": ("HTTP 502", 2), "b": ("prompt too long", 1)}
    again.append(ProblemRecord(id="a", answer="1"))
    run = read_run(tmp_path / "r")
    assert [e.id for e in run.errors] == ["b"] and [r.id for r in run.records] == ["a"]


def graded_run(path, correct: dict[str, bool]) -> None:
    store = RunStore(path)
    store.open({}, {})
    for pid, ok in correct.items():
        store.append(ProblemRecord(id=pid, prompt="q", correct=ok, traces=[TraceRecord(text="x", correct=ok)]))


@pytest.mark.parametrize(("base", "other", "only_base", "only_other", "p"), [
    ("1100", "1100", 0, 0, 1.0),          # identical: no discordant pair
    ("0000000000", "1111111111", 0, 10, 2 / 2**10),  # 10 of 10 discordant pairs one way: exact binomial tail
    ("1000", "0111", 1, 3, 0.625),        # 1 vs 3: P(X <= 1 | 4, 1/2) * 2 = 5/16 * 2
])
def test_paired_counts_and_mcnemar(base, other, only_base, only_other, p) -> None:
    from reasonlab.evaluate.metrics import paired

    rows = lambda bits: [{"id": i, "correct": b == "1"} for i, b in enumerate(bits)]  # noqa: E731
    r = paired(rows(base), rows(other) + [{"id": 99, "correct": True}])  # an id only one run has: not counted
    assert (r["n"], r["only_base"], r["only_other"]) == (len(base), only_base, only_other)
    assert r["p_mcnemar"] == pytest.approx(p)
    lo, hi = r["diff_ci"]
    assert lo <= r["diff"] <= hi


def test_compare_command_pairs_runs_by_problem(tmp_path) -> None:
    from typer.testing import CliRunner

    from reasonlab.cli import app

    graded_run(tmp_path / "base", {"a": True, "b": False, "c": False, "d": True})
    graded_run(tmp_path / "after", {"b": True, "c": True, "a": True, "e": True})  # other order; e not in base
    res = CliRunner().invoke(app, ["compare", str(tmp_path / "base"), str(tmp_path / "after")], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    row = next(line for line in res.output.splitlines() if "after" in line and "│" in line)
    cells = [c.strip() for c in row.split("│")[1:-1]]
    assert cells[1:7] == ["3", "0.333", "1.000", "0", "2", "+0.667"]  # n, base, acc, lost, won, diff on a, b, c
    graded_run(tmp_path / "other", {"x": True})
    res = CliRunner().invoke(app, ["compare", str(tmp_path / "base"), str(tmp_path / "other")])
    assert isinstance(res.exception, DataError) and "share no graded problem" in str(res.exception)
