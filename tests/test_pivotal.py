"""Pivotal-token search: the bisection finds a planted pivot, the sequential estimator spends less than fixed n,
pairs are single tokens, and TRL's DPO trains exactly (prefix ids, chosen id) vs (prefix ids, rejected id)."""

from __future__ import annotations

import json
import random

import pytest

from reasonlab.datagen.pivotal import PivotalConfig, fisher_exact, flip_chance
from reasonlab.datagen.pivotal_run import pivotal_search
from reasonlab.engines.base import Engine, Generation, SamplingParams
from reasonlab.runs import ProblemRecord, RunStore, TraceRecord

PROMPT = [1, 2, 3]
PLANT, ALT, LOW = 7, 8, 9  # the pivotal token; the alternative the model ranks next; a third one


class ScriptedPivotEngine(Engine):
    """A scripted engine (not a model): token t spells "w{t} ", and a continuation ends with the right answer with
    probability ``high`` once the planted token is in the prefix, ``low`` before it. Seeded like a real engine:
    sample i of a call uses seed + i."""

    backend = "scripted"

    def __init__(self, low: float = 0.05, high: float = 0.95) -> None:
        super().__init__("scripted-pivot")
        self.low, self.high = low, high
        self.calls: list[tuple[int, int]] = []  # (prompt length, n) per prompt asked
        self.draws: list[tuple[tuple[int, ...], int]] = []  # (prompt ids, seed) of every continuation

    def generate(self, prompts, params: SamplingParams, cancel=None) -> list[Generation]:
        out = []
        for j, ids in enumerate(prompts):
            self.calls.append((len(ids), params.n))
            if params.logprobs:  # the top-k next tokens: the planted one first, then the alternatives
                top = [(PLANT, "w7 ", -0.4), (ALT, "w8 ", -1.3), (LOW, "w9 ", -2.5), (0, "", -3.0)]
                out.append(Generation(text="", index=j, prompt_tokens=len(ids), completion_tokens=1,
                                      top_logprobs=[top[: params.logprobs]]))
                continue
            p = self.high if PLANT in ids[len(PROMPT):] else self.low
            for i in range(params.n):
                self.draws.append((tuple(ids), params.seed + i))
                rng = random.Random(f"{params.seed + i}:{len(ids)}:{ids[-1]}")
                text = "so \\boxed{42}" if rng.random() < p else "so \\boxed{13}"
                out.append(Generation(text=text, index=j, sample=i, prompt_tokens=len(ids), completion_tokens=4))
        return out

    def render_chat(self, messages) -> str:
        return messages[-1]["content"]

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def detokenize(self, ids, special: bool = False) -> str:
        return "".join(f"w{t} " for t in ids)


def planted_run(path, position: int = 11, length: int = 32, correct: bool = True) -> list[int]:
    ids = [20 + i for i in range(length)]
    ids[position] = PLANT
    store = RunStore(path)
    store.open({"config": {"dataset": {"answer_type": "number"}}}, {})
    store.append(ProblemRecord(id="p0", question="q", gold="42", prompt="<q>", prompt_token_ids=PROMPT,
                               traces=[TraceRecord(text="w " * length + "\\boxed{42}", correct=correct, answer="42",
                                                   token_ids=ids)]))
    return ids


@pytest.mark.parametrize("s, n, cap, points, low, high", [
    (0, 0, 10, (0.5,), 1.0, 1.0),           # nothing drawn: anything can happen
    (2, 2, 10, (0.8,), 0.15, 0.3),          # 2 of 2 could still end below 0.8
    (6, 6, 10, (0.8,), 0.0, 0.02),          # 6 of 6: ending below 0.8 needs 3 failures in 4
    (8, 8, 10, (0.8,), 0.0, 0.0),           # 8 of 8 cannot end below 0.8: curtailed exactly
    (3, 6, 10, (0.3, 0.7), 0.05, 0.3),      # a middle estimate between two points is slower to settle
    (5, 5, 10, (), 0.0, 0.0),               # nothing compared: settled
])
def test_flip_chance_table(s, n, cap, points, low, high) -> None:
    assert low <= flip_chance(s, n, cap, points) <= high


@pytest.mark.parametrize("a, n, b, m, expected", [
    (2, 10, 7, 10, 0.0698),   # a 0.5 gap at 10 a side: not quite beyond chance
    (1, 10, 7, 10, 0.0198),
    (5, 10, 7, 10, 0.6499),   # a 0.2 gap, the default threshold: well within chance
    (3, 3, 0, 3, 0.1),
    (0, 10, 0, 10, 1.0),
    (4, 4, 0, 10, 0.001),
])
def test_fisher_exact_table(a, n, b, m, expected) -> None:
    assert fisher_exact(a, n, b, m) == pytest.approx(expected, abs=5e-4)
    assert fisher_exact(b, m, a, n) == pytest.approx(expected, abs=5e-4)  # symmetric


@pytest.mark.parametrize("estimator", ["sequential", "fixed"])
def test_search_finds_exactly_the_planted_token_and_pairs_it(tmp_path, estimator) -> None:
    ids = planted_run(tmp_path / "run")
    engine = ScriptedPivotEngine()
    cfg = PivotalConfig(estimator=estimator, p_range=(0.0, 1.0), parallel=1)
    summary = pivotal_search(tmp_path / "run", tmp_path / "out", engine, cfg, progress=False)
    searched = [json.loads(x) for x in (tmp_path / "out" / "searched.jsonl").read_text().splitlines()]
    pivots = searched[0]["pivots"]
    assert [(v["position"], v["token"]) for v in pivots] == [(11, PLANT)]
    # the bisection's path: 16, then 8, 12, 10, 11 (and p(0)); the alternative's prefix is not on the trace
    assert [e[0] for e in searched[0]["traces"][0]["estimates"]] == [0, 8, 10, 11, 12, 16]
    v = pivots[0]
    assert v["p_before"] < 0.5 < v["p_after"] and v["prefix_ids"] == PROMPT + ids[:11]
    # it raises p: chosen = the planted token, rejected = the most likely alternative (w8), whose p is low
    assert v["pair"]["chosen_id"] == PLANT and v["pair"]["rejected_id"] == ALT
    rows = [json.loads(x) for x in (tmp_path / "out" / "dpo.jsonl").read_text().splitlines()]
    assert [(r["prompt_ids"], r["chosen_ids"], r["rejected_ids"]) for r in rows] == [(PROMPT + ids[:11], [PLANT], [ALT])]
    assert summary["pivots"] == 1 and summary["pairs"] == 1 and summary["problems_qualified"] == 1
    # p 0.05 -> 0.95, both sides at 10 continuations: beyond chance, and the pair row says how far
    assert summary["beyond_chance"] == 1 and rows[0]["p_value"] < 0.01


def test_a_lowering_pivot_pairs_the_other_way(tmp_path) -> None:
    """A wrong trace whose planted token lowers p: the token is rejected, an alternative that keeps p up chosen."""
    ids = planted_run(tmp_path / "run", position=20, correct=False)
    engine = ScriptedPivotEngine(low=1.0, high=0.0)  # the planted token ruins the solution, always (no chance pivots)
    pivotal_search(tmp_path / "run", tmp_path / "out", engine, PivotalConfig(p_range=(0.0, 1.0)), progress=False)
    rows = [json.loads(x) for x in (tmp_path / "out" / "dpo.jsonl").read_text().splitlines()]
    assert [(r["prompt_ids"], r["chosen_ids"], r["rejected_ids"]) for r in rows] == [(PROMPT + ids[:20], [ALT], [PLANT])]


def test_sequential_draws_fewer_samples_than_fixed_n(tmp_path) -> None:
    planted_run(tmp_path / "run")
    spent = {}
    for estimator in ("sequential", "fixed"):
        s = pivotal_search(tmp_path / "run", tmp_path / estimator, ScriptedPivotEngine(),
                           PivotalConfig(estimator=estimator, samples=10, p_range=(0.0, 1.0)), progress=False)
        assert s["pivots"] == 1
        spent[estimator] = s["samples"]
    s = pivotal_search(tmp_path / "run", tmp_path / "unconfirmed", ScriptedPivotEngine(),
                       PivotalConfig(samples=10, p_range=(0.0, 1.0), confirm=False), progress=False)
    assert s["pivots"] == 1
    # confirming draws the pivot's two sides and its pair's alternative to 10, as fixed n does: still cheaper
    assert s["samples"] < spent["sequential"] < spent["fixed"] and s["samples"] < 0.6 * spent["fixed"], (s, spent)


@pytest.mark.parametrize("confirm, found", [(False, [16]), (True, [11])])
def test_confirming_drops_a_pivot_a_thin_estimate_made(tmp_path, confirm, found) -> None:
    """A middle whose first two continuations happen to fail (p = 0 of 2, settled at a loose risk) hides the planted
    pivot and makes one of its own; drawn to `samples`, it is 18 of 20, and the search finds the planted token."""

    class UnluckyMiddle(ScriptedPivotEngine):  # deterministic but for the first two draws at trace position 16
        def __init__(self) -> None:
            super().__init__(low=0.0, high=1.0)
            self.unlucky = 2

        def generate(self, prompts, params, cancel=None):
            out = super().generate(prompts, params, cancel)
            for g in out:
                if len(prompts[g.index]) == len(PROMPT) + 16 and not params.logprobs and self.unlucky:
                    self.unlucky -= 1
                    g.text = "so \\boxed{13}"
            return out

    planted_run(tmp_path / "run")
    cfg = PivotalConfig(samples=20, risk=0.45, p_range=(0.0, 1.0), confirm=confirm)
    pivotal_search(tmp_path / "run", tmp_path / "out", UnluckyMiddle(), cfg, progress=False)
    row = json.loads((tmp_path / "out" / "searched.jsonl").read_text())
    assert [v["position"] for v in row["pivots"]] == found
    if confirm:  # the pivot's sides rest on 20 continuations each
        n = {pos: k for pos, _, k in row["traces"][0]["estimates"]}
        assert n[11] == n[12] == 20


def test_a_prefix_drawn_again_never_repeats_a_draw() -> None:
    """Sample s of every prompt in a call is seeded seed + s. A prefix settled after one round and asked for more
    in a later call (a deeper split's decision points, a confirmation), beside a new prefix, must not be given its
    first seeds again: on an engine deterministic by seed (hf, a seeded server) that repeats its first continuations
    and counts them twice."""
    from reasonlab.answers import Verifier
    from reasonlab.datagen.pivotal import Estimator, Problem

    engine, verifier = ScriptedPivotEngine(low=0.5), Verifier()
    est = Estimator(engine, verifier, PivotalConfig(samples=10))
    problem = Problem("p0", "42", PROMPT, ProblemRecord(id="p0", question="q", gold="42"))
    x, y = PROMPT + [20, 21], PROMPT + [20, 21, 22]
    try:
        assert est.estimate(problem, [(x, ())])[0].n == 2  # nothing compared: settled after one round
        est.estimate(problem, [(y, (0.5,)), (x, (0.1, 0.5, 0.9))])  # now x is compared too: drawn on beside y
    finally:
        verifier.close()
    assert problem.cache[tuple(x)].n > 2
    drawn = [(ids, seed) for ids, seed in engine.draws if ids == tuple(x)]
    assert len(set(drawn)) == len(drawn) == problem.cache[tuple(x)].n


def test_range_filter_and_resume(tmp_path) -> None:
    """A problem outside p_range is drawn but not searched; a second call resumes without sampling again, and
    another config in the same directory is refused."""
    from reasonlab.errors import ConfigError

    planted_run(tmp_path / "run")
    engine = ScriptedPivotEngine()
    s = pivotal_search(tmp_path / "run", tmp_path / "out", engine, PivotalConfig(), progress=False)  # p(0) = 0.05
    assert s["problems_drawn"] == 1 and s["problems_qualified"] == 0 and s["pivots"] == 0
    calls = len(engine.calls)
    pivotal_search(tmp_path / "run", tmp_path / "out", engine, PivotalConfig(), progress=False)
    assert len(engine.calls) == calls
    with pytest.raises(ConfigError, match="another config"):
        pivotal_search(tmp_path / "run", tmp_path / "out", engine, PivotalConfig(threshold=0.3), progress=False)


def test_an_interrupted_search_resumes_from_its_journal(tmp_path) -> None:
    """A search stopped mid-problem (no searched row yet) draws nothing again on resume: the journal gives back
    every prefix's samples and their cost, and the pivots and cost are those of an uninterrupted search."""
    planted_run(tmp_path / "run")
    cfg = PivotalConfig(p_range=(0.0, 1.0))
    whole = pivotal_search(tmp_path / "run", tmp_path / "whole", ScriptedPivotEngine(), cfg, progress=False)

    class Interrupted(Exception):
        pass

    class StopsAfter(ScriptedPivotEngine):  # the same script, cut off after some sampling calls
        def __init__(self, calls: int) -> None:
            super().__init__()
            self.left = calls

        def generate(self, prompts, params, cancel=None):
            if not params.logprobs:
                self.left -= 1
                if self.left < 0:
                    raise Interrupted
            return super().generate(prompts, params, cancel)

    with pytest.raises(Interrupted):
        pivotal_search(tmp_path / "run", tmp_path / "out", StopsAfter(4), cfg, progress=False)
    journal = tmp_path / "out" / "estimates.jsonl"
    assert not (tmp_path / "out" / "searched.jsonl").exists() and journal.exists()
    journal.write_text(journal.read_text() + '{"id": "p0", "prefix": "torn by a ha')  # a hard kill mid-line
    again = ScriptedPivotEngine()
    resumed = pivotal_search(tmp_path / "run", tmp_path / "out", again, cfg, progress=False)
    assert resumed["pivots"] == whole["pivots"] == 1
    for k in ("samples", "completion_tokens", "prefixes"):
        assert resumed[k] == whole[k], k
    # and it drew what the uninterrupted search drew: a call's seed comes from what it draws, not from a counter
    # that restarts with the process
    rows = [json.loads((tmp_path / d / "searched.jsonl").read_text()) for d in ("whole", "out")]
    assert rows[0]["traces"][0]["estimates"] == rows[1]["traces"][0]["estimates"]
    # the resumed process drew fewer continuations than the whole search: the first 4 calls' were restored
    drawn_again = sum(n for _, n in again.calls if n)
    assert 0 < drawn_again < whole["samples"]
    # the torn line was ended: every row the resumed search appended reads back
    rows = journal.read_text().splitlines()
    assert [r for r in rows if "torn" in r] == ['{"id": "p0", "prefix": "torn by a ha']
    assert all(json.loads(r) for r in rows if "torn" not in r)


def test_a_stop_ends_the_call_in_flight_without_counting_it(tmp_path) -> None:
    """Ctrl-C / SIGTERM sets the estimator's stop: the engine's cancel hook answers yes from then on, the cut call's
    samples are neither graded nor journaled, and no further call is made."""
    from reasonlab.answers import Verifier
    from reasonlab.datagen.pivotal import Estimator, Journal, Problem
    from reasonlab.errors import Interrupted

    class StoppedMidCall(ScriptedPivotEngine):  # the stop comes while the first call decodes
        def generate(self, prompts, params, cancel=None):
            est.stop.set()
            assert cancel is not None and cancel(0, 0, 1, None)  # the engine is told to end its samples now
            return super().generate(prompts, params, cancel)

    engine, verifier = StoppedMidCall(), Verifier()
    est = Estimator(engine, verifier, PivotalConfig(), journal=Journal(tmp_path / "estimates.jsonl"))
    problem = Problem("p0", "42", PROMPT, ProblemRecord(id="p0", question="q", gold="42"))
    try:
        with pytest.raises(Interrupted):
            est.estimate(problem, [(PROMPT, (0.5,))])
    finally:
        verifier.close()
    assert len(engine.calls) == 1 and problem.cache[tuple(PROMPT)].n == 0 and problem.cost.samples == 0
    assert not (tmp_path / "estimates.jsonl").exists()


def test_a_run_without_token_ids_is_refused_in_one_line(tmp_path) -> None:
    from reasonlab.errors import DataError

    store = RunStore(tmp_path / "run")
    store.open({"config": {}}, {})
    store.append(ProblemRecord(id="p0", question="q", gold="1", traces=[TraceRecord(text="\\boxed{1}")]))
    with pytest.raises(DataError, match="token ids"):
        pivotal_search(tmp_path / "run", tmp_path / "out", ScriptedPivotEngine(), progress=False)


def test_dpo_trains_exactly_the_token_pair(tmp_path, tiny_qwen) -> None:
    """The pair reaches TRL's DPO as (prefix ids + chosen id) vs (prefix ids + rejected id): no EOS appended, no
    re-tokenisation merging the token into the prompt, the loss on the one completion token only."""
    from transformers import AutoTokenizer

    from reasonlab.train import TrainConfig
    from reasonlab.train.data import load_rows
    from reasonlab.train.methods import dpo
    from reasonlab.train.model import load_trainable

    tok = AutoTokenizer.from_pretrained(tiny_qwen)
    prefix = tok("the answer is")["input_ids"]
    chosen, rejected = tok(" 4")["input_ids"][-1], tok(" 5")["input_ids"][-1]
    rows = [{"prompt_ids": prefix, "chosen_ids": [chosen], "rejected_ids": [rejected], "prompt": "the answer is",
             "chosen": " 4", "rejected": " 5"}] * 4
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = TrainConfig(method="dpo", model=str(tiny_qwen), data=str(data), out=str(tmp_path / "t"), max_steps=1,
                      batch_size=2, grad_accum=1, learning_rate=1e-3)
    model, tok = load_trainable(cfg.model)
    trainer = dpo(cfg, model, tok, load_rows(data, "dpo", tok), cfg.out)
    batch = next(iter(trainer.get_train_dataloader()))
    n = len(prefix) + 1
    assert batch["input_ids"][:, :n].tolist() == [prefix + [chosen]] * 2 + [prefix + [rejected]] * 2
    assert batch["input_ids"].shape[1] == n  # nothing after the token: no EOS
    assert batch["completion_mask"].tolist() == [[0] * len(prefix) + [1]] * 4
    trainer.train()
    assert trainer.state.global_step == 1


def test_cli_on_a_real_run_and_model(tmp_path, smol_path) -> None:
    """End to end on llama.cpp: a real sampled run (token ids recorded), then `datagen pivotal` continuing its
    traces by ids on the same model; the output directory is complete and a rerun resumes without sampling."""
    import subprocess
    import sys

    cli = [sys.executable, "-m", "reasonlab.cli"]
    run = subprocess.run(cli + ["eval", "-m", "smollm2-135m", "-d", "gsm8k-train", "-n", "1", "-s", "vote", "-k", "2",
                                "-t", "0.7", "--max-tokens", "24", "--parallel", "2", "--no-progress", "--out",
                                str(tmp_path / "run")], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    cmd = cli + ["datagen", "pivotal", str(tmp_path / "run"), "-o", str(tmp_path / "pv"), "--p-range", "0,1",
                 "--samples", "2", "--max-tokens", "12", "--parallel", "2", "--no-progress"]
    first = subprocess.run(cmd, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert "1 problems searched (1 qualified of 1 drawn)" in first.stdout
    root = json.loads((tmp_path / "pv" / "roots.jsonl").read_text())
    assert root["n"] >= 1 and root["completion_tokens"] > 0
    searched = json.loads((tmp_path / "pv" / "searched.jsonl").read_text())
    rec = json.loads((tmp_path / "run" / "results.jsonl").read_text().splitlines()[0])
    assert searched["traces"][0]["prompt_ids"] == rec["prompt_token_ids"]
    assert (tmp_path / "pv" / "dpo.jsonl").exists() and json.loads((tmp_path / "pv" / "summary.json").read_text())
    summary = json.loads((tmp_path / "pv" / "summary.json").read_text())
    again = subprocess.run(cmd, capture_output=True, text=True)  # resumes: nothing left to sample
    assert again.returncode == 0, again.stderr
    timing = ("seconds_this_call", "wall_seconds", "calls")
    resumed = json.loads((tmp_path / "pv" / "summary.json").read_text())
    assert {k: v for k, v in resumed.items() if k not in timing} == {k: v for k, v in summary.items() if k not in timing}
    assert len((tmp_path / "pv" / "roots.jsonl").read_text().splitlines()) == 1
    calls = [json.loads(x) for x in (tmp_path / "pv" / "calls.jsonl").read_text().splitlines()]
    assert len(calls) == 1 and calls[0]["calls"] > 0  # a finished search run again logs no call: it did nothing


def test_the_runs_own_samples_count_towards_p0(tmp_path) -> None:
    """A plain vote sampled at the search's settings already drew p(0)'s first samples: fixed n = 10 tops up."""
    ids = [20 + i for i in range(8)]
    store = RunStore(tmp_path / "run")
    store.open({"config": {"strategy": "vote", "strategy_options": {"samples": 4},
                           "sampling": {"temperature": 0.7, "top_p": 0.8, "max_tokens": 512}}}, {})
    store.append(ProblemRecord(id="p0", question="q", gold="42", prompt="<q>", prompt_token_ids=PROMPT, traces=[
        TraceRecord(text="\\boxed{42}", correct=s == 0, answer="42", token_ids=ids, sample=s) for s in range(4)]))
    engine = ScriptedPivotEngine()
    pivotal_search(tmp_path / "run", tmp_path / "out", engine, PivotalConfig(estimator="fixed"), progress=False)
    root = json.loads((tmp_path / "out" / "roots.jsonl").read_text())
    assert root["n"] == 10 and root["samples"] == 6 and engine.calls[0] == (len(PROMPT), 6)
    pivotal_search(tmp_path / "run", tmp_path / "other", engine, PivotalConfig(estimator="fixed", temperature=1.0),
                   progress=False)  # other settings: the run's traces are not its samples
    assert json.loads((tmp_path / "other" / "roots.jsonl").read_text())["samples"] == 10


def test_a_search_resumed_after_its_roots_starts_from_the_whole_root_estimate(tmp_path) -> None:
    """The run's own samples are only part of p(0): a search resumed after the roots were drawn uses the root row
    (the run's samples and those drawn to qualify), as the uninterrupted search does; every call's wall time and
    draws are logged, stopped or not."""
    ids = [20 + i for i in range(8)]
    store = RunStore(tmp_path / "run")
    store.open({"config": {"strategy": "vote", "strategy_options": {"samples": 4},
                           "sampling": {"temperature": 0.7, "top_p": 0.8, "max_tokens": 512}}}, {})
    store.append(ProblemRecord(id="p0", question="q", gold="42", prompt="<q>", prompt_token_ids=PROMPT, traces=[
        TraceRecord(text="\\boxed{42}", correct=s == 0, answer="42", token_ids=ids, sample=s) for s in range(4)]))
    cfg = PivotalConfig(estimator="fixed", p_range=(0.0, 1.0))

    class StopsAfterRoots(ScriptedPivotEngine):
        def generate(self, prompts, params, cancel=None):
            if self.calls:  # the root's one call went through
                raise KeyboardInterrupt
            return super().generate(prompts, params, cancel)

    with pytest.raises(KeyboardInterrupt):
        pivotal_search(tmp_path / "run", tmp_path / "out", StopsAfterRoots(), cfg, progress=False)
    root = json.loads((tmp_path / "out" / "roots.jsonl").read_text())
    assert root["n"] == 10 and not (tmp_path / "out" / "searched.jsonl").exists()
    s = pivotal_search(tmp_path / "run", tmp_path / "out", ScriptedPivotEngine(), cfg, progress=False)
    trace = json.loads((tmp_path / "out" / "searched.jsonl").read_text())["traces"][0]
    assert trace["estimates"][0] == [0, root["successes"], 10] and trace["p0"] == root["p"]
    calls = [json.loads(x) for x in (tmp_path / "out" / "calls.jsonl").read_text().splitlines()]
    assert [c["finished"] for c in calls] == [False, True] and calls[0]["samples"] == 6
    assert s["calls"] == 2 and s["wall_seconds"] == round(sum(c["seconds"] for c in calls), 1)
    assert s["timed_model_tokens"] == sum(c["completion_tokens"] + c["prefilled_tokens"] for c in calls) > 0


def test_a_fixed_search_takes_a_sequential_searchs_draws(tmp_path) -> None:
    """--draws-from: the fixed-n search starts from the sequential search's continuations, draws only the rest,
    counts the taken ones in its cost, and finds the same pivot; another sampling setting is refused in one line."""
    from reasonlab.errors import ConfigError

    planted_run(tmp_path / "run")
    seq = pivotal_search(tmp_path / "run", tmp_path / "seq", ScriptedPivotEngine(), PivotalConfig(p_range=(0.0, 1.0)),
                         progress=False)
    fixed_cfg = PivotalConfig(estimator="fixed", p_range=(0.0, 1.0))
    fresh = pivotal_search(tmp_path / "run", tmp_path / "fresh", ScriptedPivotEngine(), fixed_cfg, progress=False)
    engine = ScriptedPivotEngine()
    taken = pivotal_search(tmp_path / "run", tmp_path / "fixed", engine, fixed_cfg, progress=False,
                           draws_from=tmp_path / "seq")
    assert taken["pivots"] == fresh["pivots"] == seq["pivots"] == 1
    drawn_here = sum(n for _, n in engine.calls if n)
    assert drawn_here < fresh["samples"] <= taken["samples"] + 10  # the cost counts what it took
    assert taken["samples"] > drawn_here
    # a source that drew each prefix to 20 gives a fixed n = 10 search 10 of them, no more
    deep = pivotal_search(tmp_path / "run", tmp_path / "deep", ScriptedPivotEngine(),
                          PivotalConfig(estimator="fixed", samples=20, p_range=(0.0, 1.0)), progress=False)
    capped = ScriptedPivotEngine()
    pivotal_search(tmp_path / "run", tmp_path / "capped", capped, fixed_cfg, progress=False, draws_from=tmp_path / "deep")
    trace = json.loads((tmp_path / "capped" / "searched.jsonl").read_text())["traces"][0]
    assert deep["samples"] > 0 and {n for _, _, n in trace["estimates"]} == {10}
    with pytest.raises(ConfigError, match="temperature"):
        pivotal_search(tmp_path / "run", tmp_path / "hot", ScriptedPivotEngine(),
                       PivotalConfig(estimator="fixed", p_range=(0.0, 1.0), temperature=1.0), progress=False,
                       draws_from=tmp_path / "seq")
