"""Batched multi-sequence decoding in the llamacpp engine, for real, on smollm2-135m.

These pin the decoder with the prefix cache off (today's behaviour, call for call reproducible in one
process); ``test_prefix_cache.py`` and ``test_prefix_cache_engine.py`` cover it on."""

from __future__ import annotations

import math
import threading

import pytest

from reasonlab.engines import SamplingParams
from reasonlab.engines.llamacpp import LlamaCppEngine


@pytest.fixture(scope="module")
def seq_engine(smol_path):
    eng = LlamaCppEngine(smol_path, n_ctx=2048, n_parallel=1)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def batch_engine(smol_path):
    eng = LlamaCppEngine(smol_path, n_ctx=2048, n_parallel=4, prefix_cache=False)
    yield eng
    eng.close()


def chat(eng: LlamaCppEngine, text: str) -> str:
    return eng.render_chat([{"role": "user", "content": text}])


@pytest.mark.parametrize("params", [
    SamplingParams(temperature=0.0, max_tokens=40),
    SamplingParams(temperature=0.8, top_p=0.9, max_tokens=40, seed=123),
], ids=["greedy", "seeded-sampling"])
def test_batch_of_one_equals_unbatched_path(seq_engine, batch_engine, params) -> None:
    for question in ("What is 7 times 8?", "Name a famous river."):
        one = seq_engine.generate([chat(seq_engine, question)], params)[0]
        batched = batch_engine.generate([chat(batch_engine, question)], params)[0]
        assert batched.text == one.text and batched.completion_tokens == one.completion_tokens


def test_batch_twice_is_identical(batch_engine) -> None:
    prompts = [chat(batch_engine, "Tell me a joke."), chat(batch_engine, "What is 12 + 30?")]
    params = SamplingParams(n=3, temperature=0.8, max_tokens=24, seed=5)
    first = [(g.index, g.sample, g.text) for g in batch_engine.generate(prompts, params)]
    again = [(g.index, g.sample, g.text) for g in batch_engine.generate(prompts, params)]
    assert first == again
    assert [(i, s) for i, s, _ in first] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert len({t for i, _, t in first if i == 0}) > 1  # samples of one prompt differ (seed + i)


def test_stop_and_max_tokens_per_sequence(batch_engine) -> None:
    counting = "1, 2, 3, 4, 5, 6, 7, 8,"
    story = chat(batch_engine, "Write a long story about a dragon.")
    out = batch_engine.generate([counting, story], SamplingParams(max_tokens=30, stop=["10"]))
    assert out[0].finish_reason == "stop" and out[0].text.strip() == "9," and out[0].stop_reason == "10"
    assert out[1].stop_reason is None
    assert "10" not in out[1].text
    assert out[1].finish_reason == "length" and out[1].completion_tokens == 30


def test_cancel_some_sequences_leaves_others_correct(batch_engine) -> None:
    prompt = chat(batch_engine, "Describe the ocean in detail.")
    params = SamplingParams(n=3, temperature=0.0, max_tokens=32)
    plain = batch_engine.generate([prompt], params)

    def cancel(i: int, s: int, n: int, lp: float | None) -> bool:
        return s == 0 and n >= 5  # sample 0 holds the prompt's KV cells that the others copied

    cut = batch_engine.generate([prompt], params, cancel=cancel)
    assert cut[0].finish_reason == "cancelled" and cut[0].completion_tokens == 5
    assert plain[0].text.startswith(cut[0].text)
    for s in (1, 2):
        assert cut[s].finish_reason == "length" and cut[s].completion_tokens == 32
    assert cut[1].text == cut[2].text  # same inputs in the same batch: the same greedy path
    # until the batch shrank the survivors saw exactly the uncancelled run's logits; after it, batched
    # kernels may round differently (the documented drift), but the prompt cells they share are intact
    common = next((k for k, (a, b) in enumerate(zip(cut[1].text, plain[1].text)) if a != b),
                  min(len(cut[1].text), len(plain[1].text)))
    assert batch_engine.count_tokens(cut[1].text[:common]) >= 5
    assert [g.text for g in batch_engine.generate([prompt], params, cancel=cancel)] == [g.text for g in cut]


def test_kv_cache_freed_when_sequences_end(batch_engine) -> None:
    batch_engine.generate([chat(batch_engine, "Count to five.")], SamplingParams(n=4, temperature=1.0, max_tokens=16))
    assert batch_engine._decoder.cells_in_use() == 0


def test_logprobs_from_the_batch(batch_engine) -> None:
    g = batch_engine.generate([chat(batch_engine, "Say yes.")], SamplingParams(max_tokens=8, logprobs=0))[0]
    assert g.token_logprobs is not None and len(g.token_logprobs) == g.completion_tokens
    assert all(-50 < lp <= 1e-6 and math.isfinite(lp) for lp in g.token_logprobs)


def test_concurrent_callers_share_the_batch(batch_engine) -> None:
    results: dict[int, list] = {}

    def call(k: int) -> None:
        results[k] = batch_engine.generate([chat(batch_engine, f"What is {k} plus {k}?")],
                                           SamplingParams(n=2, max_tokens=12, temperature=0.7, seed=k))

    threads = [threading.Thread(target=call, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [0, 1, 2]
    assert all(len(r) == 2 and [g.sample for g in r] == [0, 1] and all(g.completion_tokens > 0 for g in r)
               for r in results.values())
    assert batch_engine._decoder.cells_in_use() == 0


def test_prompt_over_context_is_an_error_generation(batch_engine) -> None:
    out = batch_engine.generate(["word " * 3000, "1, 2, 3,"], SamplingParams(max_tokens=4))
    assert out[0].finish_reason == "error" and "context" in out[0].error
    assert out[1].finish_reason == "length" and out[1].completion_tokens == 4


def test_min_tokens_holds_off_the_end_on_both_paths(seq_engine, batch_engine) -> None:
    """min_tokens (vLLM's): end-of-sequence is not sampled before it; the sequential and batched paths agree."""
    prompt = seq_engine.render_chat([{"role": "user", "content": "What is 2+2? Reply with the number only."}])
    free = seq_engine.generate([prompt], SamplingParams(max_tokens=40))[0]
    assert free.finish_reason == "stop" and free.completion_tokens < 20  # it ends early by itself
    held = [eng.generate([prompt], SamplingParams(max_tokens=40, min_tokens=20))[0]
            for eng in (seq_engine, batch_engine)]
    assert all(g.completion_tokens >= 20 for g in held)
    assert held[0].token_ids == held[1].token_ids and held[0].text.startswith(free.text.rstrip(".").strip()[:5])
