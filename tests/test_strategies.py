"""Search strategies and their stopping rules, budgets and allotments.

Logic runs on ``ScriptedVoteEngine``, a scripted fake engine (not a model): sample s of a prompt
returns ``script[s]`` — a text, its token count and one log-prob per token — and asks the cancel hook
after every token exactly as the llama.cpp engine does, so what is under test is the strategy code.
"""

from __future__ import annotations

import pytest

from reasonlab.answers import Verifier
from reasonlab.data import Problem
from reasonlab.engines import Engine, Generation, SamplingParams
from reasonlab.evaluate.metrics import majority_correct, pass_at_k, sample_curves
from reasonlab.evaluate.runner import RunClock, allot
from reasonlab.strategies import Budget, get_template, make_strategy, stopping
from reasonlab.strategies.variants import split_samples

PROBLEM = Problem(id="p", question="What is 1 + 2?", answer="3")


class ScriptedVoteEngine(Engine):
    """Scripted fake engine: sample s (seed + s) answers script[s] = (answer, tokens, logprob per token)."""

    backend = "scripted"

    def __init__(self, script: list[tuple[str | None, int, float]], tool_text: str = "") -> None:
        super().__init__("scripted")
        self.script = script
        self.tool_text = tool_text
        self.calls: list[tuple[str, int, int]] = []  # (prompt, first sample, n)
        self.emitted = 0

    def generate(self, prompts: list[str], params: SamplingParams, cancel=None) -> list[Generation]:
        out = []
        for i, prompt in enumerate(prompts):
            first = params.seed or 0
            self.calls.append((prompt, first, params.n))
            for s in range(params.n):
                answer, tokens, lp = self.script[(first + s) % len(self.script)]
                text = self.tool_text + (f"so the answer is \\boxed{{{answer}}}" if answer is not None else "hmm")
                n, finish = 0, "stop"
                for _ in range(min(tokens, params.max_tokens)):
                    n += 1
                    self.emitted += 1
                    if cancel is not None and cancel(i, s, n, lp if params.logprobs is not None else None):
                        finish = "cancelled"
                        break
                if finish == "stop" and tokens > params.max_tokens:
                    finish = "length"
                out.append(Generation(text=text if finish == "stop" else "", index=i, sample=s, completion_tokens=n,
                                      prompt_tokens=5, finish_reason=finish, seconds=0.01 * n,
                                      token_logprobs=[lp] * n if params.logprobs is not None else None))
        return out

    def render_chat(self, messages) -> str:
        return "\n".join(m["content"] for m in messages) + "\nA: "

    def count_tokens(self, text: str) -> int:
        return len(text.split())


@pytest.fixture(scope="module")
def verifier():
    with Verifier() as v:
        yield v


def vote(verifier, script, budget=None, strategy="vote", problem=PROBLEM, tool_text="", **options):
    engine = ScriptedVoteEngine(script, tool_text)
    s = make_strategy(strategy, options, get_template("boxed"), SamplingParams(temperature=0.7, seed=0, max_tokens=100),
                      verifier)
    try:
        return s.solve(problem, engine, budget or Budget()), engine
    finally:
        s.close()


# --- pure rules --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("v1,v2,expected", [(0, 0, 0.5), (1, 0, 0.75), (2, 0, 0.875), (3, 0, 0.9375), (2, 1, 0.6875),
                                            (1, 1, 0.5)])
def test_beta_lead_probability_table(v1, v2, expected) -> None:
    assert stopping.beta_lead_probability(v1, v2) == pytest.approx(expected)
    # the weighted (numerical) path agrees with the exact one
    assert stopping.beta_lead_probability(v1 + 1e-9, v2) == pytest.approx(expected, abs=1e-3)


@pytest.mark.parametrize("votes,m,p,expected", [
    ({"3": 2, "4": 1}, 2, 0.5, True), ({"3": 2, "4": 2}, 2, 0.5, False), ({"3": 1}, 2, 0.5, False),
    ({"3": 3, "4": 1, "5": 1}, 3, 0.5, True), ({}, 1, 0.0, False),
])
def test_quorum_table(votes, m, p, expected) -> None:
    assert stopping.quorum_reached(votes, m, p) is expected


def test_window_consensus_percentile_and_running_confidence() -> None:
    assert stopping.window_unanimous(["a", "a", "a"]) and not stopping.window_unanimous([])
    assert stopping.consensus_reached({"a": 19, "b": 1}, 0.95) and not stopping.consensus_reached({"a": 3, "b": 1}, 0.8)
    assert stopping.percentile([1, 2, 3, 4], 50) == 2.5 and stopping.percentile([5], 10) == 5
    lps = [-0.1, -0.2, -3.0, -0.1, -0.1, -0.5]
    means = stopping.window_means(lps, 3)
    run = stopping.RunningConfidence(3)
    online = [m for m in (run.add(x) for x in lps) if m is not None]
    assert online == pytest.approx(means) and len(means) == 4
    assert stopping.lowest_group_confidence(lps, 3) == pytest.approx(min(means))


@pytest.mark.parametrize("n,c,k,expected", [(5, 2, 1, 0.4), (5, 2, 2, 0.7), (5, 2, 3, 0.9), (5, 2, 4, 1.0),
                                            (10, 1, 5, 0.5), (4, 0, 2, 0.0), (1, 1, 1, 1.0)])
def test_pass_at_k_against_hand_computed_table(n, c, k, expected) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(expected)


def test_maj_at_k_from_shared_samples() -> None:
    assert majority_correct([("<correct>", True), ("5", False), ("<correct>", True)]) == 1.0
    assert majority_correct([(None, False)]) == 0.0
    rec = {"traces": [{"sample": s, "answer": a, "correct": a == "3"} for s, a in enumerate(["3", "5", "3", "5"])]}
    curve = sample_curves([rec], ks=[1, 2, 4])
    assert curve["k"] == [1, 2, 4] and curve["avg"] == 0.5
    assert curve["pass"] == [0.5, pytest.approx(5 / 6, abs=1e-4), 1.0]
    assert curve["maj"][-1] == 0.5  # a 2-2 tie is a coin flip


def test_split_samples_follows_shares() -> None:
    owners = split_samples([75, 25], 8)
    assert owners.count(0) == 6 and owners.count(1) == 2
    assert split_samples([1], 3) == [0, 0, 0]


def test_allotment_lets_unused_time_flow_on() -> None:
    now = [0.0]
    clock = RunClock(Budget(run_seconds=100, min_problem_seconds=2), problems=4, concurrency=1, clock=lambda: now[0])
    assert clock.next_budget().max_seconds == 25  # 100 s over 4 problems
    now[0] = 5.0  # the first problem used 5 of its 25 s: the other 20 flow on
    assert clock.next_budget().max_seconds == pytest.approx(95 / 3)
    now[0] = 99.0
    assert clock.next_budget().max_seconds == 2  # the floor
    assert allot(10, 2, 4, 1) == 10  # never more than the time left


# --- the vote on the scripted engine -----------------------------------------------------------------------
def test_full_vote_uses_every_sample_and_picks_the_majority(verifier) -> None:
    a, eng = vote(verifier, [("3", 10, -0.1), ("4", 10, -0.1), ("3", 10, -0.1), ("5", 10, -0.1)], samples=4)
    assert a.answer == "3" and a.votes == {"3": 2.0, "4": 1.0, "5": 1.0}
    assert a.stop_reason == "samples_done" and len(a.traces) == 4 and eng.calls == [(eng.calls[0][0], 0, 4)]


def test_window_stops_on_a_unanimous_wave(verifier) -> None:
    a, eng = vote(verifier, [("3", 10, -0.1), ("4", 10, -0.1), ("3", 10, -0.1), ("3", 10, -0.1)] * 2,
                  samples=8, stop="window", window=2)
    assert a.stop_reason == "window_unanimous" and len(a.traces) == 4 and a.answer == "3"
    assert [c[1:] for c in eng.calls] == [(0, 2), (2, 2)]  # waves of 2, seeded on


def test_quorum_and_adaptive_stop_when_decided(verifier) -> None:
    script = [("3", 10, -0.1), ("4", 10, -0.1), ("3", 10, -0.1)] + [("3", 10, -0.1)] * 5
    a, _ = vote(verifier, script, samples=8, stop="quorum", wave=1)
    assert a.stop_reason == "quorum" and len(a.traces) == 3
    a, _ = vote(verifier, [("3", 10, -0.1)] * 8, samples=8, stop="adaptive", threshold=0.9, wave=1)
    assert a.stop_reason == "adaptive_confident" and len(a.traces) == 3  # P = 0.9375 after 3 agreeing votes
    a, _ = vote(verifier, [("3", 10, -0.1), ("4", 10, -0.1)] + [("3", 10, -0.1)] * 6, samples=8, stop="unbeatable",
                wave=1)
    assert a.stop_reason == "unbeatable" and len(a.traces) == 6  # 5-1 after 6: the 2 left cannot overturn it
    a, _ = vote(verifier, [("3", 10, -0.1)] * 8, samples=8, stop="quorum", wave=1, min_samples=5)
    assert len(a.traces) == 5


def test_confidence_rule_cuts_low_confidence_traces_mid_generation(verifier) -> None:
    script = [("3", 40, -0.2), ("3", 40, -0.3)] + [("7", 40, -2.0)] * 3 + [("3", 40, -0.25)] * 3
    a, eng = vote(verifier, script, samples=8, stop="confidence", warmup=2, conf_window=8, conf_keep=0.9,
                  consensus=None, weight="confidence")
    cut = [t for t in a.traces if t.dropped == "low confidence"]
    assert len(cut) == 3 and all(t.completion_tokens == 8 for t in cut)  # cut as soon as the window filled
    assert a.answer == "3" and "7" not in a.votes
    assert a.meta["threshold"] == pytest.approx(-0.29)
    assert a.completion_tokens == 2 * 40 + 3 * 8 + 3 * 40 == eng.emitted


def test_confidence_consensus_stops_the_vote(verifier) -> None:
    a, _ = vote(verifier, [("3", 20, -0.2)] * 8, samples=8, stop="confidence", warmup=2, consensus=0.9)
    assert a.stop_reason == "consensus" and len(a.traces) == 2


def test_equivalent_answers_share_a_vote_and_integer_mod(verifier) -> None:
    a, _ = vote(verifier, [("0.5", 5, -0.1), ("\\frac{1}{2}", 5, -0.1), ("2", 5, -0.1)], samples=3,
                problem=Problem(id="h", question="half?", answer="1/2"))
    assert len(a.votes) == 2 and max(a.votes.values()) == 2.0
    a, _ = vote(verifier, [("1003", 5, -0.1), ("3", 5, -0.1), ("2.5", 5, -0.1)], samples=3, integer_mod=1000)
    assert a.votes == {"3": 2.0} and a.traces[2].dropped == "not an integer"


def test_token_budget_cancels_samples_in_flight(verifier) -> None:
    a, eng = vote(verifier, [("3", 50, -0.1)] * 4, samples=4, budget=Budget(max_tokens=120))
    # a sample is asked after each token, so each sample in flight may overshoot by the one token it just made
    assert 120 <= a.completion_tokens <= 120 + 4 and eng.emitted == a.completion_tokens
    assert a.stop_reason == "budget_tokens"
    assert sum(t.finish_reason == "cancelled" for t in a.traces) >= 1


def test_time_budget_already_spent_stops_before_sampling(verifier) -> None:
    a, eng = vote(verifier, [("3", 5, -0.1)], samples=4, budget=Budget(max_seconds=1e-9))
    assert a.stop_reason == "budget_time" and a.answer is None and eng.calls == []


def test_sc_tir_filters_traces_without_code_or_with_invented_output(verifier) -> None:
    invented = "```python\nprint(3)\n```\n```output\n3\n```\n"
    a, _ = vote(verifier, [("3", 5, -0.1)] * 2, samples=2, tool_text=invented, drop_invented_output=True)
    assert a.answer is None and {t.dropped for t in a.traces} == {"invented output"}
    a, _ = vote(verifier, [("3", 5, -0.1)] * 2, samples=2, require_code=True)
    assert a.answer is None and {t.dropped for t in a.traces} == {"no code"}


def test_prompt_variants_cycle_and_pool(verifier) -> None:
    a, eng = vote(verifier, [("3", 5, -0.1)] * 6, strategy="prompts", samples=6,
                  variants=["genius, expert", "plain", "lang:zh"])
    assert [t.tags["variant"] for t in a.traces] == ["genius, expert", "plain", "lang:zh"] * 2
    prompts = {c[0] for c in eng.calls}
    assert any("You are a genius, expert mathematician." in p for p in prompts)
    assert any("请一步一步地推理" in p for p in prompts) and a.votes == {"3": 6.0}


def test_vote_rejects_a_search_policy(verifier) -> None:
    from reasonlab.errors import ConfigError

    with pytest.raises(ConfigError, match="not a trace policy"):
        vote(verifier, [("3", 5, -0.1)], policy="vote")
    with pytest.raises(ConfigError, match="warmup"):
        vote(verifier, [("3", 5, -0.1)], samples=2, stop="confidence", warmup=2)
