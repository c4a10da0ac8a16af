"""The outcome verifier (strategies/scoring.py): P(Yes) scoring against a direct forward pass, the votes that
use it (weighted, best-of-N, the stop rule, the filter), the runner handing it over, its training data, and a
few training steps that teach a tiny model to tell planted right from wrong solutions."""

from __future__ import annotations

import json
import math
import re

import pytest

from reasonlab.answers import Verifier
from reasonlab.data import Problem
from reasonlab.engines import SamplingParams
from reasonlab.errors import ConfigError
from reasonlab.evaluate.metrics import verifier_metrics
from reasonlab.strategies import Budget, get_template, make_strategy
from reasonlab.strategies.scoring import Scorer, ScorerConfig, p_yes, verifier_messages
from test_strategies import ScriptedVoteEngine

PROBLEM = Problem(id="p", question="What is 1 + 2?", answer="3")


class ScriptedScoringEngine(ScriptedVoteEngine):
    """Scripted fake engine (not a model): generates as ScriptedVoteEngine; scores a verifier prompt by the last
    boxed answer in it, P(Yes) = ``p_yes[answer]``; counts the scoring requests."""

    def __init__(self, script, p_yes: dict[str, float]) -> None:
        super().__init__(script)
        self.p = p_yes
        self.requests: list[tuple[str, str]] = []

    def loglikelihood(self, requests):
        self.requests += requests
        out = []
        for ctx, cont in requests:
            p = self.p.get(re.findall(r"\\boxed\{([^}]*)\}", ctx)[-1], 0.5)
            out.append((math.log(p if cont == "Yes" else 1 - p), False))
        return out


@pytest.fixture(scope="module")
def verifier():
    with Verifier() as v:
        yield v


def scored_vote(verifier, script, p, **options):
    engine = ScriptedScoringEngine(script, p)
    s = make_strategy("vote", options, get_template("boxed"), SamplingParams(temperature=0.7, seed=0, max_tokens=100),
                      verifier)
    s.use_scorer(Scorer(engine, ScorerConfig(), owns_engine=False))
    try:
        return s.solve(PROBLEM, engine, Budget()), engine
    finally:
        s.close()


@pytest.mark.parametrize(("options", "answer"), [
    ({}, "5"),                                 # plain majority: three 5s beat one 3 (still scored)
    ({"weight": "verifier"}, "3"),             # 0.95 for the 3 outweighs 3 x 0.1 for the 5s
    ({"select": "best"}, "3"),                 # best-of-N: the single best-scored trace
    ({"min_score": 0.5}, "3"),                 # the filter: the 5s do not vote at all
])
def test_votes_that_use_the_verifier(verifier, options, answer) -> None:
    script = [("5", 10, -0.1), ("5", 10, -0.1), ("3", 10, -0.1), ("5", 10, -0.1)]
    attempt, engine = scored_vote(verifier, script, {"3": 0.95, "5": 0.1}, samples=4, **options)
    assert attempt.answer == answer
    assert [t.score for t in attempt.traces] == [0.1, 0.1, 0.95, 0.1]
    assert len(engine.requests) == 8 and {c for _, c in engine.requests} == {"Yes", "No"}  # both words, each trace
    assert attempt.meta["scorer"]["traces"] == 4 and attempt.meta["scorer"]["tokens"] > 0
    if "min_score" in options:
        assert [t.dropped for t in attempt.traces] == ["low score", "low score", None, "low score"]


@pytest.mark.parametrize(("p3", "launched", "reason"), [(0.95, 2, "verifier_settled"), (0.6, 8, "samples_done")])
def test_the_verifier_stop_rule(verifier, p3, launched, reason) -> None:
    script = [("3", 10, -0.1), ("3", 10, -0.1), ("4", 10, -0.1), ("3", 10, -0.1)]
    attempt, _ = scored_vote(verifier, script, {"3": p3, "4": 0.2}, samples=8, stop="verifier", wave=2,
                             verifier_share=0.5, verifier_score=0.9)
    assert (attempt.meta["launched"], attempt.stop_reason, attempt.answer) == (launched, reason, "3")


def test_a_vote_that_needs_a_verifier_says_so(verifier, tmp_path) -> None:
    from reasonlab.evaluate import EvalConfig, evaluate

    s = make_strategy("vote", {"weight": "verifier", "samples": 2}, get_template("boxed"), SamplingParams(), verifier)
    with pytest.raises(ConfigError, match="--scorer"):
        s.solve(PROBLEM, ScriptedVoteEngine([("3", 5, -0.1)]), Budget())
    cfg = EvalConfig.from_layers({"dataset": {"name": "gsm8k", "limit": 1}, "strategy": "vote",
                                  "strategy_options": {"select": "best"}})
    with pytest.raises(ConfigError, match="--scorer"):
        evaluate(cfg, out=tmp_path / "r", engine=ScriptedVoteEngine([("3", 5, -0.1)]))
    assert not (tmp_path / "r").exists()  # refused before anything was written
    single = EvalConfig.from_layers({"dataset": {"name": "gsm8k", "limit": 1}, "scorer": {"model": "self"}})
    with pytest.raises(ConfigError, match="'single' does not score traces"):  # not silently ignored
        evaluate(single, out=tmp_path / "s", engine=ScriptedVoteEngine([("3", 5, -0.1)]))
    with pytest.raises(ValueError, match="n_ctxx"):
        ScorerConfig(engine={"n_ctxx": 10})  # a misspelt engine option fails at config time


def test_the_runner_hands_the_verifier_over_and_the_run_keeps_scores(tmp_path) -> None:
    from reasonlab.evaluate import EvalConfig, evaluate
    from reasonlab.runs import read_run

    engine = ScriptedScoringEngine([("18", 10, -0.1), ("17", 10, -0.1), ("17", 10, -0.1)], {"18": 0.9, "17": 0.2})
    cfg = EvalConfig.from_layers({"dataset": {"name": "gsm8k", "limit": 1}, "strategy": "vote",
                                  "strategy_options": {"samples": 3}, "sampling": {"temperature": 0.7},
                                  "scorer": {}})
    summary = evaluate(cfg, out=tmp_path / "r", engine=engine)
    run = read_run(tmp_path / "r")
    assert [t.score for t in run.records[0].traces] == [0.9, 0.2, 0.2]
    assert summary["answer_found_rate"] == 1.0 and summary["correct"] == 0  # the plain vote still says 17
    v = summary["verifier"]
    assert (v["maj"]["acc"], v["weighted"]["acc"], v["best"]["acc"], v["pass"]["acc"]) == (0.0, 1.0, 1.0, 1.0)
    assert v["auroc_within"] == 1.0 and v["cost"]["traces"] == 3 and summary["scorer_stats"]["candidates"] == 3
    assert run.config["identity"]["scorer"]["prompt"].startswith("Question:")
    from reasonlab.evaluate.report import write_report

    page = write_report([tmp_path / "r"]).read_text()
    assert "outcome verifier" in page and "verifier 0.900" in page and "best-of-n</td><td>1.000" in page
    assert "+1.000 (+1.00..+1.00), +100% of pass - majority" in page  # best-of-n against the vote
    assert (tmp_path / "r" / "verifier_scores.png").stat().st_size > 1000
    assert (tmp_path / "r" / "verifier_selection.png").stat().st_size > 1000
    from typer.testing import CliRunner

    from reasonlab.cli import app

    res = CliRunner().invoke(app, ["summary", str(tmp_path / "r")], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    row = next(line for line in res.output.splitlines() if line.startswith(f"│ {tmp_path / 'r'} "))
    assert re.findall(r"\d\.\d{3}", row)[:5] == ["1.000", "0.000", "1.000", "1.000", "1.000"]  # AUROC, maj, ...


@pytest.mark.parametrize(("traces", "within", "best"), [
    ([(True, 0.9), (False, 0.1)], 1.0, 1.0),
    ([(True, 0.1), (False, 0.9)], 0.0, 0.0),
    ([(True, 0.5), (False, 0.5)], 0.5, 0.5),   # a tie at the top: expected correctness of a random pick
])
def test_verifier_metrics_table(traces, within, best) -> None:
    recs = [{"traces": [{"answer": "3" if ok else "4", "correct": ok, "score": s, "sample": i}
                        for i, (ok, s) in enumerate(traces)]}]
    m = verifier_metrics(recs)
    assert (m["auroc_within"], m["best"]["acc"], m["pass"]["acc"]) == (within, best, 1.0)


def test_verifier_metrics_count_unanswered_problems_as_wrong() -> None:
    answered = {"traces": [{"answer": "3", "correct": True, "score": 0.9}, {"answer": "3", "correct": True, "score": 0.8},
                           {"answer": "4", "score": 0.1}]}
    unanswered = {"traces": [{"answer": None}, {"answer": None}]}
    m = verifier_metrics([answered, unanswered])
    assert (m["problems"], m["problems_answered"]) == (2, 1)
    assert all(m[k]["acc"] == 0.5 for k in ("maj", "weighted", "best", "pass"))


def _problem(*traces: tuple[bool, float]) -> dict:
    return {"traces": [{"answer": "3" if ok else "4", "correct": ok, "score": sc, "sample": i}
                       for i, (ok, sc) in enumerate(traces)]}


VOTE_LOST = _problem((True, 0.9), (False, 0.2), (False, 0.3))   # the vote picks 4; the verifier finds 3
VERIFIER_FOOLED = _problem((True, 0.1), (True, 0.2), (False, 0.9))   # the vote is right; the top score is not
UNANIMOUS = _problem((True, 0.8), (True, 0.7))


@pytest.mark.parametrize(("problems", "best_vs_maj", "gap_closed"), [
    ([VOTE_LOST, UNANIMOUS], 0.5, 1.0),        # maj 0.5, best 1.0, pass 1.0: all of the gap
    ([VOTE_LOST, VERIFIER_FOOLED], 0.0, 0.0),  # one won, one lost: none of it
    ([VERIFIER_FOOLED, UNANIMOUS], -0.5, None),  # maj = pass: no gap to close
])
def test_verifier_metrics_gap_closed(problems, best_vs_maj, gap_closed) -> None:
    m = verifier_metrics(problems)
    assert (m["best"]["vs_maj"], m["best"]["gap_closed"]) == (best_vs_maj, gap_closed)
    lo, hi = m["best"]["vs_maj_ci95"]
    assert lo <= best_vs_maj <= hi


def test_selection_curves_draw_unanswered_samples_too() -> None:
    """k-subsets are of all of a problem's samples: a subset holding only an unanswered trace picks nothing."""
    from reasonlab.evaluate.metrics import selection_curves

    rec = {"traces": [{"answer": None, "sample": 0}, {"answer": "3", "correct": True, "score": 0.4, "sample": 1},
                      {"answer": "4", "correct": False, "score": 0.6, "sample": 2}]}
    c = selection_curves([rec])
    assert c["k"] == [1, 2, 3]
    assert (c["maj"][0], c["best"][0], c["pass"][0]) == (0.3333, 0.3333, 0.3333)   # each sample alone
    assert (c["best"][2], c["weighted"][2], c["maj"][2], c["pass"][2]) == (0.0, 0.0, 0.5, 1.0)  # 0.6 beats 0.4
    assert selection_curves([{"traces": [{"answer": "3", "correct": True}]}]) is None  # nothing scored


# --- on a real model ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_p_yes_equals_a_direct_forward_pass(tiny_qwen) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from reasonlab.engines.hf import HFEngine

    engine = HFEngine(str(tiny_qwen))
    solutions = ["two plus two is four so the answer is \\boxed{4}", "the answer is \\boxed{5}"]
    problem = Problem(id="t", question="what is two plus two", answer="4")
    got = Scorer(engine, ScorerConfig(), owns_engine=False).score(problem, solutions)
    tok = AutoTokenizer.from_pretrained(tiny_qwen)
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen, dtype=torch.float32).eval()

    def logp(context: str, word: str) -> float:
        ctx, full = tok(context)["input_ids"], tok(context + word)["input_ids"]
        assert full[: len(ctx)] == ctx
        with torch.no_grad():
            lp = torch.log_softmax(model(input_ids=torch.tensor([full])).logits[0].float(), -1)
        return sum(float(lp[i - 1, full[i]]) for i in range(len(ctx), len(full)))

    for sol, p in zip(solutions, got.scores):
        context = tok.apply_chat_template(verifier_messages(problem.question, sol), add_generation_prompt=True,
                                          tokenize=False)
        assert p == pytest.approx(p_yes(logp(context, "Yes"), logp(context, "No")), abs=1e-4)
    assert got.tokens > 0
    engine.close()


@pytest.mark.slow
def test_datagen_verifier_rows_are_balanced_and_clean(tmp_path) -> None:
    from reasonlab.data import DatasetConfig, load_problems
    from reasonlab.datagen import DatagenConfig, datagen
    from reasonlab.runs import ProblemRecord, RunStore, TraceRecord

    test_q = load_problems(DatasetConfig(name="gsm8k", limit=1))[0].question
    store = RunStore(tmp_path / "run")
    store.open({}, {})

    def rec(pid, question, verdicts):
        return ProblemRecord(id=pid, question=question, prompt="q", traces=[
            TraceRecord(text=f"work {i} so \\boxed{{{7 if ok else 8}}}", answer="7" if ok else "8", correct=ok,
                        sample=i) for i, ok in enumerate(verdicts)])

    qa = "Tom has seven apples and eats none of them today at all, how many are left?"
    store.append(rec("a", qa, [True, True, True, False]))                                     # 3 right, 1 wrong -> 1 + 1
    store.append(rec("b", "Ann buys two bags with four pens in each bag for her class today, how many pens?",
                     [True, False, False]))                                          # -> 1 + 1
    store.append(rec("c", "Ben walks one mile every single day of the week, how many miles in a week?",
                     [True, True]))                                                  # no wrong one: dropped
    store.append(rec("d", test_q, [True, False]))                                    # a GSM8K test problem
    stats = datagen([tmp_path / "run"], tmp_path / "v.jsonl", DatagenConfig(kind="verifier"))
    rows = [json.loads(line) for line in (tmp_path / "v.jsonl").read_text().splitlines()]
    assert [(r["id"], r["label"]) for r in rows] == [("a", True), ("a", False), ("b", True), ("b", False)]
    assert stats["contaminated_problems"] == {"gsm8k": 1}
    assert rows[1]["prompt"] == verifier_messages(qa, "work 3 so \\boxed{8}")  # the scorer's own prompt
    assert {r["completion"][0]["content"] for r in rows} == {"Yes", "No"}
    assert all(("\\boxed{7}" in r["prompt"][0]["content"]) == r["label"] for r in rows)

    from reasonlab.train.data import load_rows

    datagen([tmp_path / "run"], tmp_path / "r.jsonl", DatagenConfig(kind="reward"))  # pairs for the scalar head
    pairs = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [p["id"] for p in pairs] == ["a"] * 3 + ["b"] * 2  # every right x wrong pair, up to max_pairs
    assert all(p["prompt"] == [{"role": "user", "content": p["prompt"][0]["content"]}] for p in pairs)
    assert all("\\boxed{7}" in p["chosen"][0]["content"] and "\\boxed{8}" in p["rejected"][0]["content"]
               for p in pairs)
    assert load_rows(tmp_path / "r.jsonl", "reward").column_names == ["prompt", "chosen", "rejected"]


@pytest.mark.slow
def test_a_few_steps_teach_a_tiny_model_to_verify(tiny_qwen, tmp_path) -> None:
    """Planted: right solutions say the sum of the words in the question, wrong ones another number."""
    from reasonlab.engines.hf import HFEngine
    from reasonlab.evaluate.metrics import auroc
    from reasonlab.train import TrainConfig, train

    words = ["one", "two", "three", "four"]
    rows, cases = [], []
    for i, a in enumerate(words):
        q = f"what is {a} plus {a}"
        for ok, sol in ((True, f"the answer is {words[(2 * i + 1) % 4]} so yes"), (False, f"the answer is {a} so no")):
            rows.append({"prompt": verifier_messages(q, sol),
                         "completion": [{"role": "assistant", "content": "Yes" if ok else "No"}]})
            cases.append((q, sol, ok))
    (tmp_path / "v.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows * 2))

    def separation(lora=None) -> float:
        eng = HFEngine(str(tiny_qwen), lora=lora)
        scorer = Scorer(eng, ScorerConfig(), owns_engine=False)
        scores = [(scorer.score(Problem(id="x", question=q, answer=""), [s]).scores[0], ok) for q, s, ok in cases]
        eng.close()
        return auroc([s for s, ok in scores if ok], [s for s, ok in scores if not ok])

    before = separation()
    cfg = TrainConfig(method="sft", model=str(tiny_qwen), data=str(tmp_path / "v.jsonl"), out=str(tmp_path / "t"),
                      learning_rate=3e-2, batch_size=4, max_steps=30, logging_steps=5, save_steps=30,
                      max_length=256, lora={"r": 8, "alpha": 16, "dropout": 0.0})
    train(cfg)
    after = separation(str(tmp_path / "t" / "adapter"))
    assert after == 1.0 and before < 1.0, (before, after)


@pytest.mark.slow
def test_scoring_on_llamacpp_borrowed_or_its_own_engine(smol_path, smol_engine, tmp_path) -> None:
    """On a real GGUF: the zero-shot judge borrows the run's engine; a scorer with engine options of its own
    loads its own engine (the runner's job), and the same weights give the same scores. The CLI's --scorer
    reaches the run's config and identity."""
    from typer.testing import CliRunner

    from reasonlab.cli import app
    from reasonlab.engines import EngineConfig
    from reasonlab.runs import read_run
    from reasonlab.strategies.scoring import load_scorer

    problem = Problem(id="t", question="What is 2 + 2?", answer="4")
    sols = ["2 + 2 = 4, so the answer is \\boxed{4}.", "2 + 2 = 5, so the answer is \\boxed{5}."]
    borrowed = load_scorer(ScorerConfig(), smol_engine)
    assert borrowed.engine is smol_engine
    a = borrowed.score(problem, sols)
    own = load_scorer(ScorerConfig(engine={"n_ctx": 1024}), smol_engine, EngineConfig(model=str(smol_path)))
    assert own.engine is not smol_engine and own.identity()["model"]["backend"] == "llamacpp"
    b = own.score(problem, sols)
    own.close()
    assert all(0.0 < p < 1.0 for p in a.scores)
    assert a.scores == pytest.approx(b.scores, abs=2e-3)  # stated tolerance: another context, same weights
    assert a.tokens == b.tokens > 0

    res = CliRunner().invoke(app, ["eval", "-d", "gsm8k", "-n", "1", "-k", "2", "-t", "0.7", "--max-tokens", "8",
                                   "-m", str(smol_path), "--no-progress", "--json", "--scorer", "self",
                                   "-O", "select=best", "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    run = read_run(tmp_path / "a")
    assert run.config["config"]["scorer"]["model"] is None and run.config["config"]["strategy_options"]["select"] == "best"
    assert run.config["identity"]["scorer"]["model"] == "the run's model"


@pytest.mark.slow
def test_score_a_stored_run_resumes_and_refuses_another_verifier(smol_path, tmp_path) -> None:
    from typer.testing import CliRunner

    from reasonlab.cli import app
    from reasonlab.evaluate.rescore import rescore
    from reasonlab.runs import ProblemRecord, RunStore, TraceRecord, read_run

    src = RunStore(tmp_path / "src")
    src.open({"config": {"engine": {"model": str(smol_path)}, "strategy": "vote"}}, {})
    for pid, q in (("a", "What is 2 + 2?"), ("b", "What is 3 + 3?")):
        src.append(ProblemRecord(id=pid, question=q, gold="4", prompt="x", traces=[
            TraceRecord(text="so \\boxed{4}", answer="4", correct=True, sample=0),
            TraceRecord(text="so \\boxed{5}", answer="5", correct=False, sample=1),
            TraceRecord(text="hmm", answer=None, sample=2)]))                  # no answer: not scored
    res = CliRunner().invoke(app, ["score", str(tmp_path / "src"), "--scorer", "self", "--out", str(tmp_path / "s"),
                                   "--no-progress"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "best-of-n" in res.output and "within-problem AUROC" in res.output
    scored = read_run(tmp_path / "s")
    assert [[t.score is not None for t in r.traces] for r in scored.records] == [[True, True, False]] * 2
    again = rescore(tmp_path / "src", ScorerConfig(), tmp_path / "s", progress=False)
    assert again["scorer_stats"]["candidates"] == 0 and again["verifier"]["traces"] == 4  # resumed, nothing redone
    with pytest.raises(ConfigError, match="scorer"):
        rescore(tmp_path / "src", ScorerConfig(yes="Correct"), tmp_path / "s", progress=False)


@pytest.mark.slow
def test_a_scalar_head_verifier_trains_on_pairs_and_scores(tiny_qwen, tmp_path) -> None:
    """The discriminative kind: datagen-shaped reward pairs train through TRL's RewardTrainer (LoRA + head), and
    the classifier scorer, loading base + adapter + head afresh, ranks the planted right solutions first."""
    from reasonlab.evaluate.metrics import auroc
    from reasonlab.strategies.scoring import classifier_messages, load_scorer
    from reasonlab.train import TrainConfig, train

    words = ["one", "two", "three", "four"]
    rows, cases = [], []
    for i, a in enumerate(words):
        q = f"what is {a} plus {a}"
        right, wrong = f"the answer is {words[(2 * i + 1) % 4]} so yes", f"the answer is {a} so no"
        rows.append({"prompt": classifier_messages(q, "")[:1], "chosen": classifier_messages(q, right)[1:],
                     "rejected": classifier_messages(q, wrong)[1:]})
        cases += [(q, right, True), (q, wrong, False)]
    (tmp_path / "r.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows * 2))

    heads = []  # was a trained scalar head loaded (the base alone draws a random one)?

    def separation(lora=None, precision="auto") -> float:
        scorer = load_scorer(ScorerConfig(kind="classifier", model=str(tiny_qwen), lora=lora,
                                          engine={"precision": precision}))
        heads.append(scorer.engine.head_trained)
        got = [(scorer.score(Problem(id="x", question=q, answer=""), [s]).scores[0], ok) for q, s, ok in cases]
        assert scorer.stats()["tokens"] > 0 and all(0.0 < p < 1.0 for p, _ in got)
        scorer.close()
        return auroc([p for p, ok in got if ok], [p for p, ok in got if not ok])

    before = separation()
    cfg = TrainConfig(method="reward", model=str(tiny_qwen), data=str(tmp_path / "r.jsonl"), out=str(tmp_path / "t"),
                      learning_rate=3e-2, batch_size=4, max_steps=30, logging_steps=5, save_steps=30,
                      max_length=256, lora={"r": 8, "alpha": 16, "dropout": 0.0})
    summary = train(cfg)
    assert summary["last_loss"] < summary["first_loss"]
    after = separation(str(tmp_path / "t"))
    assert after == 1.0 and before < 1.0, (before, after)
    assert separation(str(tmp_path / "t"), "fp32") == separation(str(tmp_path / "t"), "bf16") == 1.0  # either read
    assert heads == [False, True, True, True]
