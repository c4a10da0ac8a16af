"""Runner and store: resume, refusal of a changed config, torn lines, concurrency, errors.

Pure logic runs on ``ScriptedEngine`` (a scripted fake, see conftest); the kill-and-resume test runs
the real CLI on smollm2 in a subprocess and kills it mid-run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ScriptedEngine
from reasonlab.errors import ConfigError
from reasonlab.evaluate import EvalConfig, evaluate
from reasonlab.runs import read_run

SCRIPT = ["Half of 48 is 24, so 48 + 24 = \\boxed{72}.", "I think it is \\boxed{5}.", "No idea."]


def cfg(**dataset) -> EvalConfig:
    return EvalConfig.from_layers({"dataset": {"name": "gsm8k", "limit": 3, **dataset}})


def lines(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "results.jsonl").read_text().splitlines()]


def eval_cmd(run: Path, n: int) -> list[str]:
    return [sys.executable, "-m", "reasonlab.cli", "eval", "-d", "gsm8k", "-n", str(n), "-m", "smollm2-135m",
            "--max-tokens", "48", "-o", str(run), "--no-progress"]


def start_until(cmd: list[str], run: Path, n_lines: int, **popen) -> subprocess.Popen:
    """Start the CLI and return once ``n_lines`` results are stored (waits on a condition, asserts no duration)."""
    proc = subprocess.Popen(cmd, **popen)
    results = run / "results.jsonl"
    deadline = time.monotonic() + 300
    while not (results.exists() and results.read_text().count("\n") >= n_lines):
        assert proc.poll() is None, "eval finished or died before the signal could be sent"
        assert time.monotonic() < deadline, "eval stored nothing in 300 s"
        time.sleep(0.05)
    return proc


def test_records_summary_and_resume(tmp_path) -> None:
    run = tmp_path / "run"
    s = evaluate(cfg(), out=run, engine=ScriptedEngine(SCRIPT), progress=False)
    assert (s["n"], s["new_this_time"], s["answer_found_rate"]) == (3, 3, pytest.approx(2 / 3))
    recs = lines(run)
    assert [r["id"] for r in recs] == ["gsm8k-0", "gsm8k-1", "gsm8k-2"]
    assert [r["answer"] for r in recs] == ["72", "5", None]
    assert recs[2]["correct"] is False and recs[0]["traces"][0]["text"] == SCRIPT[0]
    again = ScriptedEngine(SCRIPT)
    s2 = evaluate(cfg(), out=run, engine=again, progress=False)
    assert s2["new_this_time"] == 0 and again.calls == 0 and len(lines(run)) == 3
    s3 = evaluate(cfg(limit=5), out=run, engine=ScriptedEngine(SCRIPT), progress=False)  # a larger limit extends
    assert s3["new_this_time"] == 2 and len(lines(run)) == 5
    assert json.loads((run / "summary.json").read_text())["n"] == 5
    stored = read_run(run)
    assert stored.config["identity"]["sampling"]["temperature"] == 0.0 and len(stored.records) == 5


def test_changed_config_refused_then_force_new_keeps_old(tmp_path) -> None:
    run = tmp_path / "run"
    evaluate(cfg(), out=run, engine=ScriptedEngine(SCRIPT), progress=False)
    hot = EvalConfig.from_layers({"dataset": {"limit": 3}, "sampling": {"temperature": 0.7}})
    with pytest.raises(ConfigError, match=r"sampling\.temperature: 0\.0 -> 0\.7"):
        evaluate(hot, out=run, engine=ScriptedEngine(SCRIPT), progress=False)
    evaluate(hot, out=run, engine=ScriptedEngine(SCRIPT), force_new=True, progress=False)
    backups = [p for p in tmp_path.iterdir() if p.name.startswith("run.old-")]
    assert len(backups) == 1 and len(lines(backups[0])) == 3


def test_torn_last_line_is_cut_and_redone(tmp_path) -> None:
    run = tmp_path / "run"
    evaluate(cfg(limit=2), out=run, engine=ScriptedEngine(SCRIPT), progress=False)
    with (run / "results.jsonl").open("a") as fh:
        fh.write('{"id": "gsm8k-2", "answ')  # a kill mid-write
    s = evaluate(cfg(limit=3), out=run, engine=ScriptedEngine(SCRIPT), progress=False)
    assert s["new_this_time"] == 1 and [r["id"] for r in lines(run)] == ["gsm8k-0", "gsm8k-1", "gsm8k-2"]


def test_engine_failure_fails_its_problem_alone(tmp_path) -> None:
    run = tmp_path / "run"
    s = evaluate(cfg(limit=5), out=run, engine=ScriptedEngine(SCRIPT, fail_on={2}), progress=False)
    assert [r["id"] for r in lines(run)] == ["gsm8k-0", "gsm8k-1", "gsm8k-3", "gsm8k-4"]
    assert s["errors"] == [{"id": "gsm8k-2", "error": "scripted failure on call 2", "retryable": True, "attempts": 1}]
    assert json.loads((run / "summary.json").read_text())["n"] == 4


def test_concurrent_problems_each_recorded_once(tmp_path) -> None:
    run = tmp_path / "run"
    s = evaluate(cfg(limit=12), out=run, engine=ScriptedEngine(SCRIPT, max_concurrency=4), progress=False)
    ids = [r["id"] for r in lines(run)]
    assert s["n"] == 12 and len(set(ids)) == 12 == len(ids)


def test_real_eval_on_smollm2(tmp_path, smol_engine) -> None:
    c = EvalConfig.from_layers({"dataset": {"limit": 2}, "sampling": {"max_tokens": 24},
                                "engine": {"model": "smollm2-135m"}})
    s = evaluate(c, out=tmp_path / "run", engine=smol_engine, progress=False)
    recs = lines(tmp_path / "run")
    assert s["n"] == 2 and all(0 < r["tokens"] <= 24 for r in recs)
    assert all(r["traces"][0]["prompt_tokens"] > 20 for r in recs)  # the chat template and question went in
    config = read_run(tmp_path / "run").config
    assert config["engine"]["backend"] == "llamacpp" and "llama-cpp-python" in config["versions"]
    assert config["versions"]["cpu"]  # speeds and greedy runs compare only within one machine kind


def test_cli_killed_mid_run_resumes_without_loss_or_duplicates(tmp_path) -> None:
    run = tmp_path / "run"
    cmd = eval_cmd(run, 6)
    proc = start_until(cmd, run, 2, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = [r["id"] for r in lines(run)]
    assert 2 <= len(before) < 6
    done = subprocess.run(cmd + ["--json"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    after = [r["id"] for r in lines(run)]
    assert after[: len(before)] == before  # nothing finished was lost or rewritten
    assert sorted(after) == sorted(set(after)) and len(after) == 6
    assert json.loads(done.stdout)["new_this_time"] == 6 - len(before)


def test_ctrl_c_is_one_line_and_keeps_records(tmp_path) -> None:
    run = tmp_path / "run"
    # a background child of a non-interactive shell inherits SIGINT ignored (CI runs so): give it the default back
    proc = start_until(eval_cmd(run, 8), run, 1, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert err.strip().startswith("interrupted:") and "Traceback" not in err and len(err.strip().splitlines()) == 1
    kept = lines(run)
    assert len(kept) >= 1 and len({r["id"] for r in kept}) == len(kept)


def test_public_api_in_five_lines(tmp_path, smol_path) -> None:
    from reasonlab import EvalConfig as Cfg, evaluate as ev, load_engine, solve

    engine = load_engine("smollm2-135m")
    attempt = solve("What is 2 + 2?", engine, Cfg.from_layers({"sampling": {"max_tokens": 24}}))
    summary = ev(Cfg.from_layers({"dataset": {"limit": 2}, "sampling": {"max_tokens": 16}}), out=tmp_path / "r",
                 engine=engine, progress=False)
    engine.close()
    assert attempt.traces[0].completion_tokens > 0 and summary["n"] == 2


def test_runner_batches_problems_on_a_parallel_engine(tmp_path, smol_path) -> None:
    from reasonlab.engines.llamacpp import LlamaCppEngine

    with LlamaCppEngine(smol_path, n_ctx=2048, n_parallel=4) as eng:
        assert eng.max_concurrency == 4  # the runner keeps four problems in flight to fill the batch
        c = EvalConfig.from_layers({"dataset": {"limit": 6}, "sampling": {"max_tokens": 20}})
        s = evaluate(c, out=tmp_path / "run", engine=eng, progress=False)
        assert eng._decoder.cells_in_use() == 0
    recs = lines(tmp_path / "run")
    assert s["n"] == 6 and sorted(r["id"] for r in recs) == [f"gsm8k-{k}" for k in range(6)]
    assert all(0 < r["tokens"] <= 20 for r in recs)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_at_parallel_4_keeps_every_finished_problem(tmp_path, sig) -> None:
    """With four problems in flight, a signal stops the run promptly: in-flight generations are cancelled,
    every finished problem is stored once, and the same command resumes the rest."""
    run = tmp_path / "run"
    cmd = eval_cmd(run, 12) + ["--parallel", "4"]
    cmd[cmd.index("--max-tokens") + 1] = "160"
    # a background child of a non-interactive shell inherits SIGINT ignored: give it the default back
    proc = start_until(cmd, run, 1, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    # llama.cpp may log a line of its own (an aborted prefill); ours is the last and only one
    assert err.strip().splitlines()[-1].startswith("interrupted:") and "Traceback" not in err
    kept = [r["id"] for r in lines(run)]
    assert 1 <= len(kept) < 12 and len(set(kept)) == len(kept)
    assert not (run / "errors.jsonl").exists()  # cancelled work is neither a result nor a failure
    done = subprocess.run(cmd + ["--json"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    after = [r["id"] for r in lines(run)]
    assert after[: len(kept)] == kept and sorted(after) == sorted(set(after)) and len(after) == 12
