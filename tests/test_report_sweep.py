"""report.html in a real headless Chromium, sweeps that reuse samples, the replay engine, CLI shortcuts.

The sweep and replay tests run on scripted fake engines (named as such); the report is opened in the
Debian ``chromium`` that ``make test`` installs.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
from test_strategies import ScriptedVoteEngine

from reasonlab.cli import _strategy_flags
from reasonlab.engines import SamplingParams
from reasonlab.runs import read_run
from reasonlab.evaluate.replay import ReplayEngine
from reasonlab.evaluate.report import PLOTS, write_report
from reasonlab.evaluate.sweep import sweep
from reasonlab.strategies import get_template

SCRIPT = [("3", 30, -0.1), ("4", 60, -0.2), ("3", 40, -0.1), ("3", 50, -0.3)]


def base_layer(tmp_path, n=3):
    data = tmp_path / "probs.jsonl"
    data.write_text("".join(json.dumps({"id": f"q{i}", "question": f"What is {i} + 3 - {i}?", "answer": "3"}) + "\n"
                            for i in range(n)))
    return {"dataset": {"name": str(data)}, "sampling": {"temperature": 0.7, "seed": 0, "max_tokens": 100},
            "strategy": "vote", "strategy_options": {"samples": 4, "keep_logprobs": True}}


def test_sweep_over_samples_runs_once_and_estimates_maj_at_k(tmp_path) -> None:
    engine = ScriptedVoteEngine(SCRIPT)
    res = sweep(base_layer(tmp_path), "strategy_options.samples", [1, 2, 4], tmp_path / "sw", say=lambda _: None,
                engine=engine)
    assert res["reused_samples"] and [p["value"] for p in res["points"]] == [1, 2, 4]
    assert len({c[0] for c in engine.calls}) == 3 and all(c[2] == 4 for c in engine.calls)  # one 4-sample run
    assert res["points"][-1]["accuracy"] == 1.0  # "3" wins 3 of 4 on every problem
    assert res["points"][0]["accuracy"] == pytest.approx(0.75)  # maj@1 = avg@4
    assert (tmp_path / "sw" / "sweep.png").stat().st_size > 1000


def test_sweep_over_an_option_runs_each_value(tmp_path) -> None:
    base = base_layer(tmp_path)
    base["strategy_options"]["wave"] = 1
    res = sweep(base, "strategy_options.stop", ["none", "quorum"], tmp_path / "sw2", say=lambda _: None,
                engine=ScriptedVoteEngine(SCRIPT))
    none, quorum = res["points"]
    assert not res["reused_samples"] and quorum["mean_tokens"] < none["mean_tokens"]


def test_replay_charges_a_cut_trace_only_its_tokens(tmp_path) -> None:
    from reasonlab import EvalConfig, evaluate

    base = base_layer(tmp_path)
    evaluate(EvalConfig.from_layers(base), out=tmp_path / "full", engine=ScriptedVoteEngine(SCRIPT), progress=False)
    records = read_run(tmp_path / "full").record_dicts()
    replay = ReplayEngine(records, get_template("boxed"))
    cut_at = []

    def cancel(i, s, n, lp):
        if n == 7:
            cut_at.append(s)
            return s == 1
        return False

    prompt = get_template("boxed").render(replay, records[0]["question"])
    gens = replay.generate([prompt], SamplingParams(n=3, seed=0, logprobs=0, max_tokens=100), cancel)
    assert [g.completion_tokens for g in gens] == [30, 7, 40] and gens[1].finish_reason == "cancelled"
    assert gens[0].token_logprobs == [-0.1] * 30
    s = evaluate(EvalConfig.from_layers(base, {"strategy_options": {"stop": "quorum", "wave": 1}}),
                 out=tmp_path / "q", engine=replay, progress=False)
    assert s["accuracy"] == 1.0 and s["tokens"] == 3 * (30 + 60 + 40)  # quorum after 3 of 4 samples


@pytest.fixture(scope="module")
def chromium():
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("chromium is not installed: `make test` installs Debian's chromium package")
    return exe


def test_report_opens_in_headless_chromium_with_every_plot(tmp_path, chromium) -> None:
    from reasonlab import EvalConfig, evaluate

    from test_scorer import ScriptedScoringEngine

    base = base_layer(tmp_path)
    # run a scores its traces with an outcome verifier (scripted), so the verifier plot is drawn too
    evaluate(EvalConfig.from_layers(base, {"scorer": {}}), out=tmp_path / "a",
             engine=ScriptedScoringEngine(SCRIPT, {"3": 0.8}), progress=False)
    evaluate(EvalConfig.from_layers(base, {"strategy_options": {"stop": "window", "window": 2}}), out=tmp_path / "b",
             engine=ScriptedVoteEngine(SCRIPT), progress=False)
    page = write_report([tmp_path / "a", tmp_path / "b"], tmp_path / "report")
    written = sorted(p.name for p in (tmp_path / "report").glob("*.png"))
    assert written == sorted(PLOTS)
    html = page.read_text()
    assert "q0" in html and "stop: window_unanimous" in html and "votes at stop" in html
    dom = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120).stdout
    m = re.search(r'data-images-ok="(\d+)/(\d+)"', dom)
    assert m, "the page's load check did not run"
    assert m.group(1) == m.group(2) == str(len(PLOTS))


def test_report_of_several_runs_needs_an_out_dir(tmp_path) -> None:
    from reasonlab.errors import ConfigError

    with pytest.raises(ConfigError, match="--out"):
        write_report([tmp_path / "a", tmp_path / "b"])


@pytest.mark.parametrize("args,strategy,options", [
    (dict(strategy=None, samples=8), "vote", {"samples": 8}),
    (dict(strategy="vote", max_thinking=256), "vote", {"policy": "forced", "policy_options": {"max_thinking": 256}}),
    (dict(strategy=None, max_thinking=256), "forced", {"max_thinking": 256}),
    (dict(strategy="vote", tools="python", samples=8), "vote", {"samples": 8, "policy": "tir"}),
    (dict(strategy=None, tools="python"), "tir", {}),
    (dict(strategy="vote", options=["stop=quorum", "policy_options.max_calls=2"]), "vote",
     {"stop": "quorum", "policy_options": {"max_calls": 2}}),
])
def test_cli_shortcut_flags_map_to_strategy_options(args, strategy, options) -> None:
    full = dict(strategy=None, tools=None, samples=None, stop=None, policy=None, max_thinking=None, min_thinking=None,
                options=None)
    full.update(args)
    assert _strategy_flags(**full) == (strategy, options)


@pytest.mark.parametrize("recipe", sorted(p.name for p in (__import__("pathlib").Path(__file__).parents[1] / "recipes").glob("*.yaml")))
def test_every_recipe_builds_its_strategy(recipe) -> None:
    from pathlib import Path

    from reasonlab.answers import Verifier
    from reasonlab.evaluate import EvalConfig
    from reasonlab.strategies import make_strategy

    cfg = EvalConfig.from_layers(EvalConfig.read_yaml(Path(__file__).parents[1] / "recipes" / recipe))
    with Verifier() as v:
        s = make_strategy(cfg.strategy, cfg.strategy_options, get_template(cfg.prompt.template), cfg.sampling, v)
        assert s.name == cfg.strategy
        s.close()


def test_report_command_writes_the_page(tmp_path) -> None:
    from typer.testing import CliRunner

    from reasonlab import EvalConfig, evaluate
    from reasonlab.cli import app

    evaluate(EvalConfig.from_layers(base_layer(tmp_path)), out=tmp_path / "a", engine=ScriptedVoteEngine(SCRIPT),
             progress=False)
    res = CliRunner().invoke(app, ["report", str(tmp_path / "a")])
    assert res.exit_code == 0 and (tmp_path / "a" / "report.html").exists()
    assert "maj@k" in (tmp_path / "a" / "report.html").read_text()
