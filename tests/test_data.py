"""Bundled datasets, user files with field mapping, and bad-input errors that name file and line."""

from __future__ import annotations

import json

import pytest

from reasonlab.data import DatasetConfig, list_datasets, load_problems
from reasonlab.errors import DataError, UnknownNameError


def test_bundled_counts_and_ids() -> None:
    counts = {d["name"]: d["records"] for d in list_datasets()}
    assert counts == {"gsm8k": 1319, "gsm8k-train": 7473, "math500": 500, "aime24": 30, "aime25": 30, "amc23": 40,
                      "polymath-en-low": 125, "polymath-en-medium": 125, "polymath-en-high": 125,
                      "polymath-en-top": 125}
    for name, n in counts.items():
        probs = load_problems(name)
        assert len(probs) == n and len({p.id for p in probs}) == n


def test_gold_answers_per_source() -> None:
    g = load_problems("gsm8k", limit=1)[0]
    assert (g.id, g.answer, g.answer_type) == ("gsm8k-0", "18", "number")
    assert "Janet" in g.question
    a24 = load_problems("aime24")
    assert a24[0].answer.isdigit() and a24[0].answer_type == "int"
    a25 = load_problems("aime25")[0]
    assert a25.answer == "70" and "Please reason step by step" not in a25.question
    m = load_problems("math500", limit=1)[0]
    assert m.id.startswith("test/") and m.answer_type == "latex" and "level" in m.meta
    assert load_problems("amc23", limit=1)[0].answer == "27.0"
    low, med = load_problems("polymath-en-low", limit=1)[0], load_problems("polymath-en-medium", limit=1)[0]
    assert (low.id, low.answer, low.answer_type) == ("low-en-0", "18", "number")
    assert low.question == g.question  # PolyMath-en low is GSM8K test, word for word (noted, not a 2nd benchmark)
    assert (med.id, med.answer_type) == ("medium-en-0", "latex") and "pi" in med.answer


def test_selection_offset_limit_shuffle() -> None:
    all_ids = [p.id for p in load_problems("gsm8k")]
    assert [p.id for p in load_problems("gsm8k", offset=5, limit=3)] == all_ids[5:8]
    s1 = [p.id for p in load_problems("gsm8k", shuffle=True, seed=1, limit=5)]
    s2 = [p.id for p in load_problems("gsm8k", shuffle=True, seed=1, limit=5)]
    s3 = [p.id for p in load_problems("gsm8k", shuffle=True, seed=2, limit=5)]
    assert s1 == s2 != s3 and s1 != all_ids[:5]


def test_user_jsonl_with_field_mapping(tmp_path) -> None:
    f = tmp_path / "mine.jsonl"
    f.write_text(json.dumps({"q": "1+1?", "a": "#### 2", "key": "x1"}) + "\n" + json.dumps({"q": "2+2?", "a": 4, "key": "x2"}) + "\n")
    probs = load_problems(DatasetConfig(name=str(f), question_field="q", answer_field="a", id_field="key"))
    assert [(p.id, p.question, p.answer) for p in probs] == [("mine-x1", "1+1?", "2"), ("mine-x2", "2+2?", "4")]


def test_user_csv_and_parquet(tmp_path) -> None:
    c = tmp_path / "p.csv"
    c.write_text("problem,answer\n3*3?,9\n4*4?,16\n")
    assert [p.answer for p in load_problems(str(c))] == ["9", "16"]
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"question": ["5*5?"], "answer": ["25"], "id": [7]}), path)
    assert [(p.id, p.answer) for p in load_problems(str(path))] == [("p-7", "25")]


def test_garbled_line_names_file_and_line(tmp_path) -> None:
    f = tmp_path / "bad.jsonl"
    f.write_text('{"question": "ok?", "answer": "1"}\n{"question": "broken", \n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2: not valid JSON"):
        load_problems(str(f))


def test_missing_field_names_line_and_flag(tmp_path) -> None:
    f = tmp_path / "nofield.jsonl"
    f.write_text('{"question": "ok?", "answer": "1"}\n{"question": "where is it?"}\n')
    with pytest.raises(DataError, match=r"nofield\.jsonl:2: no answer field .*--answer-field"):
        load_problems(str(f))


def test_unknown_dataset_did_you_mean(tmp_path) -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'gsm8k'"):
        load_problems("gsm8c")
    with pytest.raises(DataError, match="not found"):
        load_problems(str(tmp_path / "missing.jsonl"))


def test_duplicate_ids_refused(tmp_path) -> None:
    f = tmp_path / "dup.jsonl"
    f.write_text('{"id": 1, "question": "a", "answer": "1"}\n{"id": 1, "question": "b", "answer": "2"}\n')
    with pytest.raises(DataError, match="appears twice"):
        load_problems(str(f))


def test_hf_datasets_path_on_a_local_directory(tmp_path) -> None:
    pytest.importorskip("datasets")
    d = tmp_path / "mathset"
    d.mkdir()
    (d / "test.jsonl").write_text('{"problem": "1+2?", "answer": "3", "uid": "a"}\n{"problem": "2+2?", "answer": "4", "uid": "b"}\n')
    probs = load_problems(DatasetConfig(name=str(d), split="test", id_field="uid"))
    assert [(p.id, p.question, p.answer) for p in probs] == [("mathset-a", "1+2?", "3"), ("mathset-b", "2+2?", "4")]
    with pytest.raises(DataError, match="could not load HF dataset"):
        load_problems(DatasetConfig(name=str(d), split="train"))


def test_where_selects_by_metadata_before_offset_and_limit() -> None:
    from reasonlab.data import DatasetConfig, load_problems
    from reasonlab.errors import DataError

    easy = load_problems(DatasetConfig(name="math500", where={"level": ("1", "2")}))
    assert easy and all(p.meta["level"] in (1, 2) for p in easy)
    algebra1 = load_problems(DatasetConfig(name="math500", where={"level": ("1",), "subject": ("Algebra",)}, limit=3))
    assert len(algebra1) == 3 and all(p.meta == {"subject": "Algebra", "level": 1} for p in algebra1)
    with pytest.raises(DataError, match="no problem has the field 'level'"):
        load_problems(DatasetConfig(name="gsm8k", where={"level": ("1",)}))
