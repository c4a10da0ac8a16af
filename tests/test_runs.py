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
