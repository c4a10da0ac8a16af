"""New tokens: added whole, kept by decoding, embeddings (input and untied output rows) seeded from a phrase."""

from __future__ import annotations

import pytest


def test_hcot_tokens_are_whole_and_seeded(tiny_qwen) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from reasonlab.train.tokens import HCOT_SEEDS, add_tokens

    tok = AutoTokenizer.from_pretrained(tiny_qwen)
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen, dtype=torch.float32)
    rows_before = model.get_input_embeddings().weight.shape[0]
    phrase = tok("subproblem start", add_special_tokens=False)["input_ids"]
    ids = add_tokens(model, tok, HCOT_SEEDS)
    assert sorted(ids.values()) == list(range(rows_before, rows_before + 3))  # appended (no spare rows here)
    enc = tok("the [THOUGHT] answer [SOLUTION] 4 [RETURN]", add_special_tokens=False)["input_ids"]
    assert [ids["[THOUGHT]"], ids["[SOLUTION]"], ids["[RETURN]"]] == [i for i in enc if i in ids.values()]
    assert tok.decode(enc, skip_special_tokens=True).count("[THOUGHT]") == 1  # text, not a dropped special
    emb, out = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    assert emb.shape[0] == len(tok)
    assert torch.allclose(emb[ids["[THOUGHT]"]], emb[phrase].mean(0))
    assert torch.allclose(out[ids["[THOUGHT]"]], out[phrase].mean(0))  # untied: the output row too
    logits = model(torch.tensor([enc])).logits  # (1, len, vocab)
    assert logits.shape[-1] == len(tok) and torch.isfinite(logits).all()
    assert add_tokens(model, tok, HCOT_SEEDS) == ids  # again: nothing new, same ids


def test_spare_rows_are_used_before_resizing(tiny_qwen) -> None:
    """A model with more embedding rows than tokens (Qwen2.5: the GGUF's [PAD…] slots) gets the first spare rows."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from reasonlab.train.tokens import add_tokens

    tok = AutoTokenizer.from_pretrained(tiny_qwen)
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen, dtype=torch.float32)
    model.resize_token_embeddings(len(tok) + 8, mean_resizing=False)
    ids = add_tokens(model, tok, {"[X]": "answer"})
    assert ids["[X]"] == len(tok) - 1 and model.get_input_embeddings().weight.shape[0] == len(tok) + 7


def test_an_empty_seed_phrase_is_refused(tiny_qwen) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from reasonlab.train.tokens import add_tokens

    tok = AutoTokenizer.from_pretrained(tiny_qwen)
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen, dtype=torch.float32)
    with pytest.raises(ValueError, match="tokenizes to nothing"):
        add_tokens(model, tok, {"[X]": ""})
