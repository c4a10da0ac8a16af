"""Prune-aware hCoT training: stage rows are exactly the pruned contexts with the loss on each stage's own tokens,
and a real TRL SFT run trains on them with the markers added."""

from __future__ import annotations

import json

from reasonlab.strategies.hcot_format import RETURN, SOLUTION, THOUGHT


def _tok_with_markers(tiny_qwen):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from reasonlab.train.tokens import HCOT_SEEDS, add_tokens

    tok = AutoTokenizer.from_pretrained(tiny_qwen)
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen, dtype=torch.float32)
    return model, tok, add_tokens(model, tok, HCOT_SEEDS)


def test_stage_rows_are_the_pruned_contexts(tiny_qwen) -> None:
    from reasonlab.train.hcot import example_ids, stage_rows

    _, tok, m = _tok_with_markers(tiny_qwen)
    row = {"prompt": "the answer ?", "completion": f"the {THOUGHT} answer is {SOLUTION} 4 {RETURN} so 4"}
    ids, n_prompt = example_ids(row, tok)
    rows, counts = stage_rows([row], tok)
    assert counts == {"examples": 1, "stages": 2, "too_long": 0, "malformed": 0}
    th, so, re_ = ids.index(m[THOUGHT]), ids.index(m[SOLUTION]), ids.index(m[RETURN])
    # stage 1: everything up to [RETURN], loss on the completion part of it
    assert rows[0]["input_ids"] == ids[: re_ + 1]
    assert rows[0]["completion_mask"] == [0] * n_prompt + [1] * (re_ + 1 - n_prompt)
    # stage 2: the body and [SOLUTION] gone; loss only after [RETURN] (the end-of-sequence included)
    kept = ids[: th + 1] + ids[so + 1:]
    assert rows[1]["input_ids"] == kept
    tail = len(ids) - re_ - 1
    assert rows[1]["completion_mask"] == [0] * (len(kept) - tail) + [1] * tail
    assert rows[1]["input_ids"][-1] == tok.eos_token_id


def test_malformed_examples_are_counted_not_trained(tiny_qwen) -> None:
    from reasonlab.train.hcot import stage_rows

    _, tok, _ = _tok_with_markers(tiny_qwen)
    rows, counts = stage_rows([{"prompt": "q", "completion": f"{THOUGHT} never returns"}], tok)
    assert rows == [] and counts["malformed"] == 1


def test_sft_with_hcot_stages_trains(tmp_path, tiny_qwen) -> None:
    from transformers import AutoTokenizer

    from reasonlab.train import TrainConfig, train

    data = tmp_path / "hcot.jsonl"
    rows = [{"prompt": [{"role": "user", "content": "the answer ?"}],
             "completion": [{"role": "assistant", "content": f"{THOUGHT} the answer is {SOLUTION} 4 {RETURN} "
                                                             f"the answer is \\boxed{{4}}"}]}] * 4
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = TrainConfig(method="sft", model=str(tiny_qwen), data=str(data), out=str(tmp_path / "t"), max_steps=2,
                      batch_size=2, sft={"hcot": "stages"})
    summary = train(cfg)
    assert summary["steps"] == 2 and summary["hcot_stages"]["stages"] == 8
    saved = AutoTokenizer.from_pretrained(summary["result"])
    assert RETURN in saved.tokenize(f"a {RETURN}")  # the adapter's tokenizer has the markers, whole
