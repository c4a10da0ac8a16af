"""The hf engine for real, on a tiny randomly initialised Llama with a tokenizer built in the test."""

from __future__ import annotations

import math

import pytest

from reasonlab.engines import EngineConfig, SamplingParams, load_engine, resolve
from reasonlab.errors import ModelError


@pytest.fixture(scope="module")
def hf_engine(tiny_hf_dir):
    eng = load_engine(str(tiny_hf_dir))  # a directory resolves to the hf backend
    assert eng.backend == "hf"
    yield eng
    eng.close()


def test_resolves_directory_to_hf(tiny_hf_dir) -> None:
    assert resolve(EngineConfig(model=str(tiny_hf_dir))) == ("hf", str(tiny_hf_dir))


def test_chat_template_and_count(hf_engine) -> None:
    text = hf_engine.render_chat([{"role": "user", "content": "one plus two"}])
    assert text == "<|user|> one plus two <|assistant|>"
    assert hf_engine.count_tokens("one plus two") == 3


def test_greedy_deterministic_batched(hf_engine) -> None:
    params = SamplingParams(max_tokens=6)
    a = hf_engine.generate(["the answer is", "one plus two equals"], params)
    b = hf_engine.generate(["the answer is", "one plus two equals"], params)
    assert [g.text for g in a] == [g.text for g in b]
    assert [g.index for g in a] == [0, 1]
    assert all(g.completion_tokens <= 6 for g in a)


def test_sampling_n_and_seed(hf_engine) -> None:
    params = SamplingParams(n=4, temperature=1.5, max_tokens=8, seed=3)
    first = [g.text for g in hf_engine.generate(["the"], params)]
    again = [g.text for g in hf_engine.generate(["the"], params)]
    assert len(first) == 4 and first == again
    assert [g.sample for g in hf_engine.generate(["the"], params)] == [0, 1, 2, 3]


def test_sample_s_uses_seed_plus_s_and_leaves_the_global_rng_alone(hf_engine) -> None:
    import torch

    state = torch.get_rng_state()
    params = SamplingParams(n=3, temperature=1.5, max_tokens=10, seed=7, ignore_eos=True)
    batch = [g.text for g in hf_engine.generate(["the", "one plus"], params)]
    assert torch.equal(state, torch.get_rng_state())  # no process state leaks
    one = SamplingParams(n=1, temperature=1.5, max_tokens=10, ignore_eos=True)
    for s in range(3):  # sample s of prompt 1, alone and seeded 7 + s: the same tokens as in the batch
        alone = hf_engine.generate(["one plus"], one.model_copy(update={"seed": 7 + s}))[0].text
        assert alone == batch[3 + s]
    assert len(set(batch[:3])) > 1  # the samples differ


def test_sampled_logprobs_come_from_the_sampled_distribution(hf_engine) -> None:
    g = hf_engine.generate(["one two"], SamplingParams(max_tokens=6, temperature=1.0, seed=1, logprobs=0,
                                                       ignore_eos=True))[0]
    assert len(g.token_logprobs) == 6 and all(lp < 0 for lp in g.token_logprobs)  # not the one-hot scores


def test_logprobs_per_token(hf_engine) -> None:
    g = hf_engine.generate(["one two"], SamplingParams(max_tokens=5, logprobs=0))[0]
    assert g.token_logprobs is not None and len(g.token_logprobs) == g.completion_tokens
    assert all(lp <= 0.0 and math.isfinite(lp) for lp in g.token_logprobs)


def test_stop_string_cut(hf_engine) -> None:
    full = hf_engine.generate(["one"], SamplingParams(max_tokens=12))[0].text
    words = full.split()
    if len(words) < 3:
        pytest.skip("random model ended too early to place a stop string")  # pragma: no cover
    stop = words[2]
    cut = hf_engine.generate(["one"], SamplingParams(max_tokens=12, stop=[stop]))[0]
    assert stop not in cut.text and cut.finish_reason == "stop" and cut.stop_reason == stop
    assert full.startswith(cut.text.rstrip())


def test_missing_directory_is_clear(tmp_path) -> None:
    with pytest.raises(ModelError, match="not found"):
        load_engine(str(tmp_path / "nope" / "model.gguf"))


def test_cancel_ends_one_row_mid_generation(hf_engine) -> None:
    params = SamplingParams(n=2, temperature=1.0, seed=3, max_tokens=12, ignore_eos=True, logprobs=0)
    seen = []

    def cancel(i: int, s: int, n: int, lp: float | None) -> bool:
        seen.append(lp)
        return s == 0 and n >= 4

    gens = hf_engine.generate(["Once upon a time"], params, cancel=cancel)
    assert gens[0].finish_reason == "cancelled" and gens[0].completion_tokens == 4
    assert gens[1].finish_reason == "length" and gens[1].completion_tokens == 12
    assert all(lp is not None and lp <= 0 for lp in seen)


def test_gguf_conversions_are_keyed_by_content_not_mtime(tmp_path, monkeypatch) -> None:
    """A reinstalled package rewrites the same GGUF with a new mtime: the cached conversion is found again (keyed by
    a hash of the bytes), while a different file of the same size and name is not mistaken for it."""
    import os

    from reasonlab.engines.hf import _digest, gguf_to_hf

    monkeypatch.setenv("REASONLAB_CACHE", str(tmp_path / "cache"))
    a = tmp_path / "a" / "m.gguf"
    a.parent.mkdir()
    a.write_bytes(b"GGUF" + bytes(1000))
    done = tmp_path / "cache" / "hf" / f"m-{_digest(a)}"
    done.mkdir(parents=True)
    (done / "config.json").write_text("{}")
    os.utime(a, (1_000_000, 1_000_000))  # reinstalled: same bytes, new mtime
    assert gguf_to_hf(a) == done
    b = tmp_path / "b" / "m.gguf"
    b.parent.mkdir()
    b.write_bytes(b"GGUF" + bytes(999) + b"\x01")  # same name and size, other bytes
    assert _digest(b) != _digest(a)


def test_min_tokens_on_hf(hf_engine) -> None:
    gens = hf_engine.generate(["one two"], SamplingParams(n=3, temperature=1.5, seed=1, max_tokens=12, min_tokens=9))
    assert all(g.completion_tokens >= 9 for g in gens)


def test_positioned_ids_are_decoded_at_their_positions(hf_engine) -> None:
    """Prune-agnostic decoding: ids with a gap in their positions are prefilled at those positions and generation goes
    on from the last + 1 — the same greedy tokens as a hand-written loop feeding those positions to the model."""
    import torch

    from reasonlab.engines.base import PositionedIds

    ids = hf_engine.tokenize("one plus two equals the answer is", prompt=True)
    positions = list(range(3)) + [p + 9 for p in range(3, len(ids))]  # 9 positions cut after the third token
    got = hf_engine.generate([PositionedIds(tuple(ids), tuple(positions)), ids], SamplingParams(max_tokens=6))
    lm = hf_engine.lm
    with torch.no_grad():
        seq, pos = list(ids), list(positions)
        for _ in range(6):
            logits = lm(input_ids=torch.tensor([seq]), position_ids=torch.tensor([pos])).logits[0, -1]
            seq.append(int(logits.argmax()))
            pos.append(pos[-1] + 1)
        gapped = lm(input_ids=torch.tensor([ids]), position_ids=torch.tensor([positions])).logits[0, -1]
        plain = lm(input_ids=torch.tensor([ids])).logits[0, -1]
    assert (gapped - plain).abs().max() > 1e-5  # the positions change what the model computes
    assert got[0].token_ids == seq[len(ids):][: len(got[0].token_ids)] and got[0].completion_tokens == 6
    assert got[1].token_ids == hf_engine.generate([ids], SamplingParams(max_tokens=6))[0].token_ids  # batch mate


def test_only_engines_that_take_positions_get_them(smol_path) -> None:
    from reasonlab.engines.base import PositionedIds
    from reasonlab.engines.llamacpp import LlamaCppEngine
    from reasonlab.errors import ConfigError

    with pytest.raises(ConfigError, match="positions must start at 0 or later and increase"):
        PositionedIds((1, 2), (3, 3))
    with LlamaCppEngine(smol_path, n_ctx=256, name="smol") as eng:
        with pytest.raises(ConfigError, match="llamacpp engine cannot take token positions"):
            eng.generate([PositionedIds((1, 2), (0, 5))], SamplingParams(max_tokens=2))
