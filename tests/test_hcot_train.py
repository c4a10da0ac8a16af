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
    # the markers' rows trained beside the LoRA, both matrices (tiny_qwen's output is untied): a frozen seed row at a
    # phrase's mean is never the argmax against the phrase's own tokens, so an adapter without them never writes one
    from reasonlab.engines.lora import adapter_token_rows

    rows = adapter_token_rows(summary["result"])
    ids = sorted(saved.convert_tokens_to_ids([THOUGHT, SOLUTION, RETURN]))
    assert sorted(rows) == ["output.weight", "token_embd.weight"]
    assert all(sorted(r[0]) == ids for r in rows.values())
    seeded, _, _ = _tok_with_markers(tiny_qwen)  # the seeded rows, before training
    seed = seeded.get_output_embeddings().weight.detach().numpy()[rows["output.weight"][0]]
    assert abs(rows["output.weight"][1] - seed).max() > 1e-4  # they moved


# --- prune-agnostic training: the 4-D mask ------------------------------------------------------------------------

NESTED = f"a {THOUGHT} b {THOUGHT} c {SOLUTION} 3 {RETURN} d {SOLUTION} 5 {RETURN} so 5"


def _mask_example(tiny_qwen):
    from reasonlab.train.hcot import HcotCollator, mask_rows

    model, tok, m = _tok_with_markers(tiny_qwen)
    rows, counts = mask_rows([{"prompt": "the answer ?", "completion": NESTED}], tok)
    assert counts == {"examples": 1, "rows": 1, "too_long": 0, "malformed": 0}
    return model, tok, m, rows[0], HcotCollator(tok.pad_token_id)


def test_the_4d_mask_is_min_on_exactly_the_pruned_columns(tiny_qwen) -> None:
    import torch

    _, tok, m, row, collate = _mask_example(tiny_qwen)
    ids = row["input_ids"]
    th = [i for i, t in enumerate(ids) if t == m[THOUGHT]]
    so = [i for i, t in enumerate(ids) if t == m[SOLUTION]]
    re_ = [i for i, t in enumerate(ids) if t == m[RETURN]]
    inner = set(range(th[1] + 1, so[0] + 1))  # the inner body and its [SOLUTION]
    outer = set(range(th[0] + 1, so[1] + 1))  # the outer one's, which holds the inner block's remains
    batch = collate([row, {"input_ids": ids[:5], "labels": [-100] * 5, "pruned": []}])  # the second pads the first
    mask = batch["attention_mask"]
    n, length = len(ids), mask.shape[-1]
    assert mask.shape == (2, 1, n, n) and length == n
    low = torch.finfo(mask.dtype).min
    for q in range(n):
        hidden = (outer if q >= re_[1] else inner if q >= re_[0] else set())
        blocked = {k for k in range(n) if k > q} | hidden
        assert {k for k in range(n) if mask[0, 0, q, k] == low} == blocked, q
        assert all(mask[0, 0, q, k] == 0 for k in range(n) if k not in blocked)
    assert (mask[1, 0, :5, 5:] == low).all()  # padding keys are never read
    assert batch["position_ids"][0].tolist() == list(range(n))  # original positions, explicit
    assert batch["labels"][1, 5:].eq(-100).all() and batch["real_tokens"].sum() == n + 5


def test_the_4d_mask_is_a_cut_in_the_kv_cache_without_a_shift(tiny_qwen) -> None:
    """One masked forward computes what decoding computes when each returned block's cells are removed from the
    KV cache as [RETURN] is sampled (positions kept, nothing recomputed): the semantics the mask trains."""
    import torch
    from transformers import DynamicCache

    model, tok, m, row, collate = _mask_example(tiny_qwen)
    model.eval()
    batch = collate([row])
    with torch.no_grad():
        whole = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                      position_ids=batch["position_ids"]).logits[0]  # [n, vocab]
        cache, kept, steps = DynamicCache(), [], []  # kept: the original index of each cached cell
        for q, tok_id in enumerate(row["input_ids"]):
            for q0, start, end in row["pruned"]:
                if q0 == q:  # [RETURN] was sampled: cut the block's cells before reading it
                    keep = torch.tensor([j for j, i in enumerate(kept) if not start <= i < end])
                    for layer in cache.layers:
                        layer.keys, layer.values = layer.keys[:, :, keep], layer.values[:, :, keep]
                    kept = [kept[j] for j in keep.tolist()]
            out = model(input_ids=torch.tensor([[tok_id]]), position_ids=torch.tensor([[q]]), past_key_values=cache,
                        use_cache=True)
            cache, kept = out.past_key_values, kept + [q]
            steps.append(out.logits[0, -1])
    assert len(kept) < len(row["input_ids"])  # the cache did shrink
    assert torch.allclose(torch.stack(steps), whole, atol=1e-4)


def test_stage_rows_can_keep_the_original_positions(tiny_qwen) -> None:
    from reasonlab.train.hcot import HcotCollator, example_ids, stage_rows

    _, tok, m = _tok_with_markers(tiny_qwen)
    row = {"prompt": "the answer ?", "completion": f"the {THOUGHT} answer is {SOLUTION} 4 {RETURN} so 4"}
    ids, _ = example_ids(row, tok)
    rows, _ = stage_rows([row], tok, positions="keep")
    th, so = ids.index(m[THOUGHT]), ids.index(m[SOLUTION])
    assert rows[0]["position_ids"] == list(range(ids.index(m[RETURN]) + 1))
    assert rows[1]["position_ids"] == list(range(th + 1)) + list(range(so + 1, len(ids)))  # a gap where the body was
    batch = HcotCollator(tok.pad_token_id)(rows)
    assert batch["attention_mask"].shape == batch["input_ids"].shape  # 2-D: stages need no 4-D mask
    assert batch["position_ids"][1, th + 1].item() == so + 1
    assert (batch["labels"][1] != -100).sum().item() == len(ids) - ids.index(m[RETURN]) - 1


def test_sft_with_the_hcot_mask_trains(tmp_path, tiny_qwen) -> None:
    from reasonlab.train import TrainConfig, train

    data = tmp_path / "hcot.jsonl"
    rows = [{"prompt": [{"role": "user", "content": "the answer ?"}],
             "completion": [{"role": "assistant", "content": NESTED + " the answer is \\boxed{5}"}]}] * 4
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for mode, positions in (("mask", "renumber"), ("stages", "keep")):
        cfg = TrainConfig(method="sft", model=str(tiny_qwen), data=str(data), out=str(tmp_path / mode), max_steps=2,
                          batch_size=2, sft={"hcot": mode, "hcot_positions": positions})
        summary = train(cfg)
        assert summary["steps"] == 2 and summary["last_loss"] > 0, mode
    assert summary["hcot_stages"]["stages"] == 12  # 3 stages (two returns, then the tail) x 4
    history = [json.loads(x) for x in (tmp_path / "mask" / "log_history.jsonl").read_text().splitlines()]
    assert history[0]["num_tokens"] > 0  # counted from the real tokens, not the 4-D mask's sum
