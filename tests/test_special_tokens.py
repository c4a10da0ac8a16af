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
    """A model with more embedding rows than tokens gets the first spare rows."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from reasonlab.train.tokens import add_tokens

    tok = AutoTokenizer.from_pretrained(tiny_qwen)
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen, dtype=torch.float32)
    model.resize_token_embeddings(len(tok) + 8, mean_resizing=False)
    ids = add_tokens(model, tok, {"[X]": "answer"})
    assert ids["[X]"] == len(tok) - 1 and model.get_input_embeddings().weight.shape[0] == len(tok) + 7


def test_spare_vocabulary_entries_take_the_tokens_as_in_the_gguf(tiny_qwen, tmp_path) -> None:
    """Qwen2.5's tokenizer read from its GGUF holds [PADn] entries: the markers take those ids (what the GGUF
    writer gives them), matched whole and printed, with nothing resized."""
    import json
    import shutil

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from reasonlab.train.tokens import HCOT_SEEDS, add_tokens

    d = tmp_path / "spare"
    shutil.copytree(tiny_qwen, d)
    state = json.loads((d / "tokenizer.json").read_text())
    n = max(state["model"]["vocab"].values()) + 1
    for k in range(4):  # spare entries after the real vocabulary, as the GGUF has them
        state["model"]["vocab"][f"[PAD{n + k}]"] = n + k
    (d / "tokenizer.json").write_text(json.dumps(state))
    tok = AutoTokenizer.from_pretrained(d)
    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32)
    model.resize_token_embeddings(len(tok), mean_resizing=False)
    rows = model.get_input_embeddings().weight.shape[0]
    ids = add_tokens(model, tok, HCOT_SEEDS)
    assert ids == {"[THOUGHT]": n, "[SOLUTION]": n + 1, "[RETURN]": n + 2}
    assert model.get_input_embeddings().weight.shape[0] == rows  # nothing resized
    enc = tok("a [THOUGHT] b [RETURN]", add_special_tokens=False)["input_ids"]
    assert n in enc and n + 2 in enc and "[THOUGHT]" in tok.decode(enc, skip_special_tokens=True)
    tok.save_pretrained(tmp_path / "saved")  # the renamed entries persist
    assert AutoTokenizer.from_pretrained(tmp_path / "saved").convert_tokens_to_ids("[RETURN]") == n + 2


def test_an_empty_seed_phrase_is_refused(tiny_qwen) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from reasonlab.train.tokens import add_tokens

    tok = AutoTokenizer.from_pretrained(tiny_qwen)
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen, dtype=torch.float32)
    with pytest.raises(ValueError, match="tokenizes to nothing"):
        add_tokens(model, tok, {"[X]": ""})


def test_tokens_written_into_a_gguf_load_tokenize_and_print(tmp_path, smol_path) -> None:
    """smollm2 has no spare slots: three control tokens it never uses in chat take the markers. The file loads in
    llama.cpp, tokenizes each marker to its one id inside text, prints it back, and its rows are the phrase means
    (re-quantized) while every other row is the base's byte for byte."""
    import gguf
    import numpy as np

    from reasonlab.engines.llamacpp import LlamaCppEngine
    from reasonlab.train.gguf_vocab import add_gguf_tokens
    from reasonlab.train.tokens import HCOT_SEEDS

    out = tmp_path / "smol-hcot.gguf"
    ids = add_gguf_tokens(smol_path, out, HCOT_SEEDS, slots=[3, 4, 5])
    assert ids == {"[THOUGHT]": 3, "[SOLUTION]": 4, "[RETURN]": 5}
    with LlamaCppEngine(out, n_ctx=256, name="smol-hcot") as eng:
        enc = eng.tokenize("so [THOUGHT] 2+2 [SOLUTION] 4 [RETURN] done")
        assert [i for i in enc if i in (3, 4, 5)] == [3, 4, 5]
        assert "[THOUGHT]" in eng.detokenize(enc) and "[RETURN]" in eng.detokenize(enc)
        phrase = eng.tokenize("subproblem start")
    new, old = gguf.GGUFReader(str(out)), gguf.GGUFReader(str(smol_path))
    emb_new = next(t for t in new.tensors if t.name == "token_embd.weight")
    emb_old = next(t for t in old.tensors if t.name == "token_embd.weight")
    keep = np.ones(emb_old.data.shape[0], bool)
    keep[[3, 4, 5]] = False
    assert np.array_equal(np.asarray(emb_new.data)[keep], np.asarray(emb_old.data)[keep])
    want = gguf.quants.dequantize(np.asarray(emb_old.data)[phrase], emb_old.tensor_type).mean(0)
    got = gguf.quants.dequantize(np.asarray(emb_new.data)[[3]], emb_new.tensor_type)[0]
    assert np.abs(got - want).max() < 0.02  # the mean, up to re-quantization


def test_trained_rows_go_into_the_gguf_and_a_base_without_them_is_refused(tmp_path, smol_path) -> None:
    """An adapter that trained the markers' rows: add-tokens writes those rows (not the seeds), and loading the
    adapter on a base holding other rows there fails in one line naming the fix."""
    import json

    import gguf
    import numpy as np
    from safetensors.numpy import save_file

    from reasonlab.engines.lora import adapter_token_rows, check_token_rows
    from reasonlab.errors import ModelError
    from reasonlab.train.gguf_vocab import add_gguf_tokens
    from reasonlab.train.tokens import HCOT_SEEDS

    hidden = next(t for t in gguf.GGUFReader(str(smol_path)).tensors if t.name == "token_embd.weight").shape[0]
    trained = np.random.default_rng(0).normal(0, 0.05, (3, int(hidden))).astype(np.float32)
    run = tmp_path / "run"
    adapter = run / "adapter"  # what peft saves for trainable tokens on a tied model (no LoRA pairs needed here)
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(json.dumps({"trainable_token_indices": {"embed_tokens": [3, 4, 5]}}))
    save_file({"base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta": trained},
              str(adapter / "adapter_model.safetensors"))
    rows = adapter_token_rows(adapter)
    assert list(rows) == ["token_embd.weight"] and rows["token_embd.weight"][0] == [3, 4, 5]

    seeded, withrows = tmp_path / "seeded.gguf", tmp_path / "trained.gguf"
    add_gguf_tokens(smol_path, seeded, HCOT_SEEDS, slots=[3, 4, 5])
    add_gguf_tokens(smol_path, withrows, HCOT_SEEDS, slots=[3, 4, 5], rows=rows)
    emb = next(t for t in gguf.GGUFReader(str(withrows)).tensors if t.name == "token_embd.weight")
    got = gguf.quants.dequantize(np.asarray(emb.data)[[3, 4, 5]], emb.tensor_type).reshape(trained.shape)
    assert np.abs(got - trained).max() < 0.01  # the trained rows, up to re-quantization
    check_token_rows(adapter, withrows)  # the right base: no error
    with pytest.raises(ModelError, match=r"add-tokens --rows .*run"):
        check_token_rows(adapter, seeded)
    with pytest.raises(ModelError, match="trained rows of token_embd.weight are for tokens"):
        add_gguf_tokens(smol_path, tmp_path / "x.gguf", HCOT_SEEDS, slots=[6, 7, 8], rows=rows)


def test_a_gguf_without_spare_slots_says_so(tmp_path, smol_path) -> None:
    from reasonlab.errors import ModelError
    from reasonlab.train.gguf_vocab import add_gguf_tokens

    with pytest.raises(ModelError, match="0 spare vocabulary slots"):
        add_gguf_tokens(smol_path, tmp_path / "x.gguf", {"[X]": "answer"})
