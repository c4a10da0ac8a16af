"""The prefix cache in the batched llama.cpp decoder, for real, on smollm2-135m."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from reasonlab.engines import SamplingParams
from reasonlab.engines.llamacpp import LlamaCppEngine

GREEDY = SamplingParams(temperature=0.0, max_tokens=24, logprobs=0)


def chat(eng: LlamaCppEngine, text: str) -> str:
    return eng.render_chat([{"role": "user", "content": text}])


@pytest.fixture(scope="module")
def engines(smol_path):
    cold = LlamaCppEngine(smol_path, n_ctx=2048, n_parallel=2, prefix_cache=False)
    warm = LlamaCppEngine(smol_path, n_ctx=2048, n_parallel=2)
    yield cold, warm
    cold.close()
    warm.close()


def test_a_continuation_is_served_from_the_cache_and_matches_a_cold_prefill(engines) -> None:
    cold, warm = engines
    prompt = chat(warm, "Explain why the sky is blue.")
    first = warm.generate([prompt], GREEDY)[0]  # leaves prompt + its 24 tokens behind
    n_prompt = len(warm._tokens(prompt))
    again = warm.generate([prompt + first.text], GREEDY)[0]  # a TIR-style continuation of the same text
    assert again.cached_tokens >= n_prompt  # the prompt (and most of the trace) came from the cache
    ref = cold.generate([prompt + first.text], GREEDY)[0]
    assert ref.cached_tokens == 0
    # same next-token distributions within 1e-3 nats (stated tolerance), hence the same greedy tokens
    assert again.text[:40] == ref.text[:40]
    assert all(abs(a - b) < 1e-3 for a, b in zip(again.token_logprobs[:8], ref.token_logprobs[:8]))


def test_eviction_under_a_tiny_kv_never_corrupts_another_sequence(smol_path) -> None:
    tiny = LlamaCppEngine(smol_path, n_ctx=1024, n_parallel=2, n_ctx_batch=512)  # the cache must evict
    cold = LlamaCppEngine(smol_path, n_ctx=1024, n_parallel=2, n_ctx_batch=512, prefix_cache=False)
    params = SamplingParams(temperature=0.0, max_tokens=16)
    questions = [f"What is {k} times {k + 3}? Answer briefly." for k in range(8)]
    for q in questions:  # one after another: every finished sequence is cached, older ones evicted
        a = tiny.generate([chat(tiny, q)], params)[0]
        b = cold.generate([chat(cold, q)], params)[0]
        assert a.text == b.text and a.finish_reason == b.finish_reason
        assert tiny._decoder.cached_tokens() <= tiny._decoder.cache.max_tokens
    both = tiny.generate([chat(tiny, q) for q in questions[:2]], SamplingParams(n=2, temperature=0.0, max_tokens=16))
    assert [g.text for g in both[::2]] == [cold.generate([chat(cold, q)], params)[0].text for q in questions[:2]]
    assert tiny._decoder.cells_in_use() == 0
    tiny._decoder.clear_cache()
    assert tiny._decoder.cached_tokens() == 0
    tiny.close()
    cold.close()


def test_cancelling_mid_prefill_frees_everything(engines) -> None:
    _, warm = engines
    calls = []

    def cancel(i: int, s: int, n: int, lp: float | None) -> bool:
        calls.append(n)
        return len(calls) > 1  # let it be admitted, then stop it (during the prefill, or at its first token)

    g = warm.generate(["word " * 1500], SamplingParams(max_tokens=8), cancel=cancel)[0]
    assert g.finish_reason == "cancelled" and g.completion_tokens <= 1
    assert warm._decoder.cells_in_use() == 0
    assert warm.generate([chat(warm, "Say hi.")], SamplingParams(max_tokens=4))[0].completion_tokens > 0


SCRIPT = """
import json, sys
from reasonlab.engines import SamplingParams
from reasonlab.engines.llamacpp import LlamaCppEngine
eng = LlamaCppEngine(sys.argv[1], n_ctx=2048, n_parallel=4)
p = eng.render_chat([{"role": "user", "content": "Give me three colours."}])
first = eng.generate([p], SamplingParams(n=3, temperature=0.8, seed=7, max_tokens=20))
more = eng.generate([p + g.text for g in first], SamplingParams(temperature=0.8, seed=9, max_tokens=12))
print(json.dumps([g.text for g in first + more] + [sum(g.cached_tokens for g in more)]))
"""


def test_with_the_cache_on_the_same_command_in_a_fresh_process_reproduces(smol_path) -> None:
    runs = [subprocess.run([sys.executable, "-c", SCRIPT, str(smol_path)], capture_output=True, text=True)
            for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr
    a, b = (json.loads(r.stdout.strip().splitlines()[-1]) for r in runs)
    assert a == b and a[-1] > 0  # identical outputs, and the continuations were served from the cache


def test_a_forced_trace_reports_what_the_cache_saved(engines, tmp_path) -> None:
    from reasonlab.evaluate import EvalConfig, evaluate
    from reasonlab.runs import read_run

    _, warm = engines
    c = EvalConfig.from_layers({"dataset": {"limit": 2}, "sampling": {"max_tokens": 48},
                                "strategy": "forced", "strategy_options": {"max_thinking": 16}})
    s = evaluate(c, out=tmp_path / "run", engine=warm, progress=False)
    traces = [t for r in read_run(tmp_path / "run").records for t in r.traces]
    # the answer call after the cut re-reads prompt + trace: most of it comes from the cache
    assert traces and all(t.finish_reason == "cut" and t.cached_tokens > t.prompt_tokens for t in traces)
    assert s["prompt_tokens_cached"] > 0 and 0 < s["prefix_cache_hit_rate"] < 1


def test_samples_sent_by_separate_calls_share_one_prefill(engines) -> None:
    import threading

    _, warm = engines
    warm._decoder.clear_cache()
    prompt = chat(warm, "List four prime numbers and explain why each is prime.")
    head = len(warm._tokens(prompt)) - 1
    out: dict[int, object] = {}

    def one(k: int) -> None:  # as a trace policy's threads do: one call per sample
        out[k] = warm.generate([prompt], SamplingParams(temperature=0.8, seed=k, max_tokens=12))[0]

    threads = [threading.Thread(target=one, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # whichever started second found the first's cells, live or cached: the prompt was prefilled once
    assert sorted(g.cached_tokens for g in out.values()) == [0, head]


def test_a_continuation_queued_behind_fresh_samples_keeps_its_cells(smol_path) -> None:
    """A trace coming back from a tool call waits behind fresh samples of other problems; their finished cells
    would push its entry out of a small cache. Continuations go first and pin their entry, so they still read
    only their new tokens; fresh samples keep their arrival order among themselves."""
    eng = LlamaCppEngine(smol_path, n_ctx=1024, n_parallel=2)
    params = SamplingParams(temperature=0.0, max_tokens=16)
    trace = chat(eng, "Explain why the sky is blue.")
    first = eng.generate([trace], params)[0]
    held = len(first.prompt_token_ids) + len(first.token_ids) - 1  # the cells its sequence left behind
    eng._decoder.cache.max_tokens = held + 40  # room for that entry and little else: fresh samples evict
    fresh = [chat(eng, f"What is {k} plus {k}?") for k in range(6)]
    resumed = first.prompt_token_ids + first.token_ids + eng.tokenize("\nWait,")  # by ids, as policies continue
    outs = eng.generate([*fresh, resumed], params)
    assert outs[-1].cached_tokens == held  # served from the pinned entry, not prefilled again
    assert not eng._decoder.cache.pins  # every pin released once its job started
    assert all(g.finish_reason in ("stop", "length") for g in outs)
    eng.close()
