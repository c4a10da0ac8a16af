"""benchmarks/kept.sh: the loops keep the runs later steps read in git, and a new machine restores them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

KEPT_SH = Path(__file__).parents[1] / "benchmarks" / "kept.sh"


def sh(cwd: Path, kept: Path, script: str) -> str:
    out = subprocess.run(["bash", "-c", f'set -euo pipefail; . "{KEPT_SH}"; {script}'], cwd=cwd, check=True,
                         capture_output=True, text=True, env={"KEPT": str(kept), "PATH": "/usr/bin:/bin"})
    return out.stdout + out.stderr


def test_keep_then_restore_on_a_new_machine(tmp_path) -> None:
    old, new, kept = tmp_path / "old", tmp_path / "new", tmp_path / "kept"
    run = old / "runs" / "star" / "sample"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("config: {}\n")
    (run / "results.jsonl").write_text('{"id": "a"}\n')
    (run / "engine.log").write_text("not kept\n")
    assert "unfinished: it resumes" in sh(old, kept, "keep runs/star/sample")  # no summary.json yet: kept to resume
    (run / "summary.json").write_text("{}\n")
    sh(old, kept, "keep runs/star/sample")
    first = (kept / "runs__star__sample.tar.gz").read_bytes()
    sh(old, kept, "keep runs/star/sample")
    assert (kept / "runs__star__sample.tar.gz").read_bytes() == first  # same run, same bytes: no git change
    (run / "summary.json").write_text('{"new_this_time": 0}\n')  # run again, all reused: only its summary changed
    assert "kept already" in sh(old, kept, "keep runs/star/sample")
    assert (kept / "runs__star__sample.tar.gz").read_bytes() == first  # the first summary (what it cost) stays

    new.mkdir()
    assert "restore: runs/star/sample" in sh(new, kept, "restore_all runs/star")
    got = new / "runs" / "star" / "sample"
    assert sorted(p.name for p in got.iterdir()) == ["config.yaml", "results.jsonl", "summary.json"]
    assert (got / "results.jsonl").read_text() == '{"id": "a"}\n'
    (got / "results.jsonl").write_text('{"id": "a"}\n{"id": "b"}\n')  # the run went on here
    assert sh(new, kept, "restore runs/star/sample") == ""  # a run with results is never overwritten
    assert (got / "results.jsonl").read_text().count("\n") == 2
    assert sh(new, kept, "restore runs/star/other; restore_all runs/none") == ""  # nothing kept: nothing done


def test_a_data_file_and_an_output_directory_are_kept(tmp_path) -> None:
    old, new, kept = tmp_path / "old", tmp_path / "new", tmp_path / "kept"
    piv = old / "runs" / "datagen" / "pivotal-seq"
    piv.mkdir(parents=True)
    (old / "runs" / "datagen" / "variants.jsonl").write_text('{"question": "q"}\n')
    for name in ("config.json", "roots.jsonl", "searched.jsonl"):
        (piv / name).write_text(name)
    sh(old, kept, "keep runs/datagen/variants.jsonl; keep runs/datagen/pivotal-seq")
    new.mkdir()
    sh(new, kept, "restore_all runs/datagen")
    assert (new / "runs" / "datagen" / "variants.jsonl").read_text() == '{"question": "q"}\n'
    assert sorted(p.read_text() for p in (new / "runs" / "datagen" / "pivotal-seq").iterdir()) == \
        ["config.json", "roots.jsonl", "searched.jsonl"]
    with pytest.raises(subprocess.CalledProcessError):  # nothing there: one line, an error
        sh(new, kept, "keep runs/datagen/none")


def test_a_finished_output_directory_resumed_with_nothing_to_do_is_not_kept_again(tmp_path) -> None:
    """A finished pivotal search run again rewrites only its summary's figures of that call: the kept bytes stay
    (no git change at every loop restart); a search that went on is kept anew."""
    kept = tmp_path / "kept"
    piv = tmp_path / "runs" / "datagen" / "pivotal-seq"
    piv.mkdir(parents=True)
    for name in ("config.json", "searched.jsonl", "summary.json"):
        (piv / name).write_text(name)
    sh(tmp_path, kept, "keep runs/datagen/pivotal-seq")
    first = (kept / "runs__datagen__pivotal-seq.tar.gz").read_bytes()
    (piv / "summary.json").write_text('{"seconds_this_call": 1}')
    assert "kept already" in sh(tmp_path, kept, "keep runs/datagen/pivotal-seq")
    assert (kept / "runs__datagen__pivotal-seq.tar.gz").read_bytes() == first
    (piv / "searched.jsonl").write_text("searched.jsonl, one more problem")
    assert "kept already" not in sh(tmp_path, kept, "keep runs/datagen/pivotal-seq")
    assert (kept / "runs__datagen__pivotal-seq.tar.gz").read_bytes() != first
