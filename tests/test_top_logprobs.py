"""Per-token top-k log-probs (``SamplingParams.logprobs = k``, vLLM's meaning) on every engine."""

from __future__ import annotations

import pytest

from reasonlab.engines import SamplingParams, load_engine
from reasonlab.engines.openai import _top_logprobs


def check(gen, k: int, greedy: bool) -> None:
    assert gen.top_logprobs is not None and len(gen.top_logprobs) == gen.completion_tokens
    for chosen, alts in zip(gen.token_logprobs, gen.top_logprobs):
        lps = [lp for _, _, lp in alts]
        assert len(alts) == k and lps == sorted(lps, reverse=True) and all(lp <= 1e-6 for lp in lps)
        assert chosen <= lps[0] + 1e-5  # nothing beats the best alternative
        if greedy:
            assert chosen == pytest.approx(lps[0], abs=1e-4)  # greedy takes the best one


@pytest.mark.parametrize("temperature", [0.0, 0.9])
def test_llamacpp_batched_top_k(smol_path, temperature) -> None:
    eng = load_engine(str(smol_path), n_parallel=2)
    prompt = eng.render_chat([{"role": "user", "content": "Name three fruits."}])
    gen = eng.generate([prompt], SamplingParams(max_tokens=10, temperature=temperature, seed=3, logprobs=3))[0]
    eng.close()
    check(gen, 3, greedy=temperature == 0.0)
    assert all(isinstance(text, str) and tid >= 0 for tid, text, _ in gen.top_logprobs[0])


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_hf_top_k(tiny_hf_dir, temperature) -> None:
    eng = load_engine(str(tiny_hf_dir))
    gen = eng.generate(["one two"], SamplingParams(max_tokens=6, temperature=temperature, seed=1, logprobs=4,
                                                   ignore_eos=True))[0]
    eng.close()
    check(gen, 4, greedy=temperature == 0.0)


def test_server_top_logprobs_are_parsed_in_both_formats() -> None:
    completions = {"logprobs": {"token_logprobs": [-0.1], "top_logprobs": [{" a": -0.1, " b": -2.5}]}}
    chat = {"logprobs": {"content": [{"token": "a", "logprob": -0.1,
                                      "top_logprobs": [{"token": "a", "logprob": -0.1}, {"token": "b", "logprob": -3.0}]}]}}
    assert _top_logprobs(completions) == [[(-1, " a", -0.1), (-1, " b", -2.5)]]
    assert _top_logprobs(chat) == [[(-1, "a", -0.1), (-1, "b", -3.0)]]
