"""Scoring fixed continuations (lm-eval's ``loglikelihood``): against a direct forward pass on a tiny hf
model, across llama.cpp's sequential and batched engines on smollm2, and the greedy flag against real
greedy generation."""

from __future__ import annotations

import json
import math

import pytest

from reasonlab.engines import SamplingParams, load_engine
from reasonlab.engines.base import split_pair
from reasonlab.errors import ConfigError

PAIRS = [("The capital of France is", " Paris"), ("The capital of France is", " London"),
         ("1, 2, 3, 4,", " 5, 6"), ("", "Hello there")]


def test_split_pair_moves_trailing_space_to_the_continuation() -> None:
    assert split_pair("one plus ", "two") == ("one plus", " two") and split_pair("a", "b") == ("a", "b")


def test_hf_loglikelihood_equals_a_direct_forward_pass(tiny_hf_dir) -> None:
    import torch

    eng = load_engine(str(tiny_hf_dir))
    pairs = [("one plus two equals", " three"), ("the answer is", " five six"), ("one", " two three four five")]
    got = eng.loglikelihood(pairs)  # one right-padded batch of three
    tok, lm = eng.tokenizer, eng.lm
    for (context, continuation), (lp, greedy) in zip(pairs, got):
        ctx = tok(context)["input_ids"]
        cont = tok(continuation, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = lm(torch.tensor([ctx + cont])).logits[0].double()  # [T, vocab]
        logp = torch.log_softmax(logits, -1)
        want = sum(float(logp[len(ctx) - 1 + j, t]) for j, t in enumerate(cont))
        argmax = [int(logp[len(ctx) - 1 + j].argmax()) for j in range(len(cont))]
        assert lp == pytest.approx(want, abs=1e-4) and greedy == (argmax == cont)
    eng.close()


@pytest.fixture(scope="module")
def scores(smol_path):
    eng = load_engine(str(smol_path))
    cold = [eng.loglikelihood([p])[0] for p in PAIRS]  # one at a time
    warm = eng.loglikelihood(PAIRS)  # in one call: the shared context's KV is reused
    greedy_text = eng.generate(["1, 2, 3, 4,"], SamplingParams(max_tokens=6))[0].text
    greedy = eng.loglikelihood([("1, 2, 3, 4,", greedy_text)])[0]
    eng.close()
    return cold, warm, greedy


def test_llamacpp_scores_are_log_probs_and_reuse_changes_nothing(scores) -> None:
    cold, warm, _ = scores
    assert all(lp < 0 for lp, _ in cold)
    assert cold[0][0] > cold[1][0]  # " Paris" is likelier than " London"
    assert cold[0][1] and not cold[1][1]  # and the greedy continuation
    for (a, ga), (b, gb) in zip(cold, warm):
        assert a == pytest.approx(b, abs=1e-3) and ga == gb  # stated tolerance: 1e-3 nats


def test_greedy_generation_is_scored_greedy(scores) -> None:
    _, _, (lp, greedy) = scores
    assert greedy and lp <= 0


def test_batched_engine_scores_the_same(smol_path, scores) -> None:
    cold, _, _ = scores
    eng = load_engine(str(smol_path), n_parallel=2)
    got = eng.loglikelihood(PAIRS)
    eng.close()
    assert [g for _, g in got] == [g for _, g in cold]
    assert all(math.isclose(a, b, abs_tol=1e-3) for (a, _), (b, _) in zip(got, cold))


@pytest.mark.parametrize("server", ["llama_server", "llamacpp_server"])
def test_a_server_without_prompt_logprobs_says_it_cannot_score(server, request) -> None:
    """llama-server refuses echo; llama-cpp-python's server echoes log-probs shifted by one token (each
    token scored by the distribution after it): one clear error naming what can score, no retries."""
    eng = load_engine(request.getfixturevalue(server))
    with pytest.raises(ConfigError, match="vLLM"):
        eng.loglikelihood(PAIRS[:1])
    eng.close()


def test_echoed_prompt_logprobs_are_read_at_the_continuation() -> None:
    """The client's side of scoring through echo, on a scripted fake server (a canned reply in vLLM's
    completions format): the continuation's tokens are found by text offset, the generated token and the
    context are left out, and greedy means every continuation token was the most likely."""
    import httpx

    from reasonlab.engines.openai import OpenAIEngine

    reply = {"choices": [{"text": "The capital is Paris!", "logprobs": {
        "tokens": ["The", " capital", " is", " Paris", "!"], "text_offset": [0, 3, 11, 14, 20],
        "token_logprobs": [None, -5.0, -1.0, -0.5, -2.0],
        "top_logprobs": [None, {" capital": -5.0, " city": -1.0}, {" is": -1.0}, {" Paris": -0.5, " Rome": -3.0},
                         {"!": -2.0, ".": -0.1}]}}], "usage": {"prompt_tokens": 4, "completion_tokens": 1}}
    seen = []

    def answer(req: httpx.Request) -> httpx.Response:
        seen.append(json.loads(req.content))
        return httpx.Response(200, json=reply)

    eng = OpenAIEngine("http://fake.invalid/v1", model="m")
    eng._http = httpx.Client(transport=httpx.MockTransport(answer))
    eng._is_llama_cpp_python = lambda: False
    (lp, greedy), = eng.loglikelihood([("The capital is ", "Paris")])
    assert seen[0]["echo"] is True and seen[0]["prompt"] == "The capital is Paris"
    assert lp == pytest.approx(-0.5) and greedy
    (lp, greedy), = eng.loglikelihood([("The capital", " is Paris")])
    assert lp == pytest.approx(-1.5) and greedy
    (lp, greedy), = eng.loglikelihood([("The", " capital is")])
    assert lp == pytest.approx(-6.0) and not greedy  # " city" was likelier than " capital"
    eng.close()


@pytest.fixture(scope="session")
def smol_hf_dir(smol_path, tmp_path_factory):
    from reasonlab.engines.hf import gguf_to_hf

    out = gguf_to_hf(smol_path, tmp_path_factory.mktemp("smol-hf") / "model")  # dequantized by transformers
    assert gguf_to_hf(smol_path, out) == out  # converted once, then reused
    return out


def test_llamacpp_and_hf_agree_on_smollm2(smol_path, smol_hf_dir) -> None:
    pairs = PAIRS[:3] + [("Once upon a time", " there was a little girl who lived in a village")]
    hf = load_engine(str(smol_hf_dir))
    cpp = load_engine(str(smol_path))
    a, b = hf.loglikelihood(pairs), cpp.loglikelihood(pairs)
    n_tokens = [len(cpp._plain_tokens(c)) for _, c in pairs]
    hf.close()
    cpp.close()
    # the same Q4_1 weights, fp32 torch kernels vs llama.cpp's quantized ones: within 0.05 nats per token
    # (measured: at most 0.031), and the same greedy verdicts
    for (x, gx), (y, gy), n in zip(a, b, n_tokens):
        assert abs(x - y) / n < 0.05 and gx == gy
