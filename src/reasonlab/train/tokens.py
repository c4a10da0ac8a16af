"""New tokens for a model (the hierarchical-CoT markers), with embeddings that start where their meaning is.

    >>> ids = add_tokens(model, tok, HCOT_SEEDS)                          # doctest: +SKIP
    >>> tok.tokenize("[THOUGHT] a")[0]                                     # doctest: +SKIP
    '[THOUGHT]'

A token is added to the tokenizer whole (never split) and as ordinary text, not a "special" token: decoding keeps
it (``skip_special_tokens`` would drop a special one, and the markers are part of the trace). Its input embedding —
and its output row when the model does not tie the two — starts as the mean of the rows of a phrase's tokens
(the notebook's seeding: "[THOUGHT]" from "subproblem start"), so a small dataset does not have to teach the
token's meaning from random noise.

The rows must then be trained (``token_rows``: peft's trainable tokens beside a LoRA). A frozen output row at a
phrase's mean can never win greedy decoding against the phrase's own tokens: its logit h·mean(w_i) is the mean
of their logits, never above the largest. The first LoRA run with frozen seeds showed it: the marker had p ≈ 0.2
where it was due, but "problem" (from "subproblem") had more. Decoded greedily, that model never wrote a marker.

Where the embedding matrix already has rows beyond the tokenizer (Qwen2.5's 151 936 rows for 151 665 tokens: the
GGUF names the spare ones ``[PAD151665]`` and up), the new tokens take the first spare rows and nothing is resized —
the same ids a GGUF gets when the tokens are written into those slots (``train.gguf_tokens``).
"""

from __future__ import annotations

import json
import re
from typing import Any

# unused vocabulary entries by family: Qwen's [PADn], Llama 3's reserved special tokens, Gemma's <unusedN>
SPARE = re.compile(r"^(\[PAD\d+\]|<\|reserved_special_token_\d+\|>|<unused\d+>)$")
HCOT_SEEDS: dict[str, str] = {"[THOUGHT]": "subproblem start", "[SOLUTION]": "summary of solution",
                              "[RETURN]": "subproblem return"}


def add_tokens(model: Any, tok: Any, seeds: dict[str, str]) -> dict[str, int]:
    """Add each key of ``seeds`` to ``tok`` (whole, as text) and start its embedding rows at the mean of the rows
    of its phrase; returns token -> id. Tokens the tokenizer already has are only re-seeded."""
    import torch
    from tokenizers import AddedToken

    phrases = {t: tok(p, add_special_tokens=False)["input_ids"] for t, p in seeds.items()}  # before adding
    for t, ids in phrases.items():
        if not ids:
            raise ValueError(f"the seed phrase of {t} tokenizes to nothing")
    missing = [t for t in seeds if t not in tok.get_vocab()]
    if missing and not _into_spare_entries(tok, missing):
        tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in missing])
    emb = model.get_input_embeddings()
    if len(tok) > emb.weight.shape[0]:
        model.resize_token_embeddings(len(tok), mean_resizing=False)
        emb = model.get_input_embeddings()
    out = model.get_output_embeddings()
    tied = out is None or out.weight.data_ptr() == emb.weight.data_ptr()
    ids = {t: tok.convert_tokens_to_ids(t) for t in seeds}
    with torch.no_grad():
        for t, tid in ids.items():
            src = torch.tensor(phrases[t])
            emb.weight[tid] = emb.weight[src].mean(0)  # (hidden,)
            if not tied:
                out.weight[tid] = out.weight[src].mean(0)
    return ids


def token_rows(model: Any, ids: list[int]) -> dict[str, list[int]]:
    """peft's ``trainable_token_indices`` for ``ids``: the input embedding's rows, and the output matrix's too when
    it is not tied to the input (tied, peft trains the shared rows once)."""
    names = {id(m): n.rsplit(".", 1)[-1] for n, m in model.named_modules()}
    emb, out = model.get_input_embeddings(), model.get_output_embeddings()
    rows = {names[id(emb)]: list(ids)}
    if out is not None and out.weight.data_ptr() != emb.weight.data_ptr():
        rows[names[id(out)]] = list(ids)
    return rows


def spare_slots(tokens: list[str]) -> list[int]:
    """Ids of a vocabulary's spare entries (``SPARE``), in order.

    >>> spare_slots(["a", "[PAD3]", "b", "[PAD5]", "<unused0>"])
    [1, 3, 4]
    """
    return [i for i, t in enumerate(tokens) if SPARE.match(t)]


def _into_spare_entries(tok: Any, names: list[str]) -> bool:
    """Rename the first spare entries of a fast tokenizer's BPE vocabulary to ``names``, each also an added token
    (matched whole, printed as text); False when there are too few."""
    from tokenizers import Tokenizer

    state = json.loads(tok.backend_tokenizer.to_str())
    vocab = state["model"].get("vocab")
    if not isinstance(vocab, dict):
        return False
    by_id = {i: k for k, i in vocab.items()}
    slots = spare_slots([by_id.get(i, "") for i in range(max(by_id) + 1)])
    if len(slots) < len(names):
        return False
    for name, i in zip(names, slots):
        del vocab[by_id[i]]
        vocab[name] = i
        state["added_tokens"].append({"id": i, "content": name, "single_word": False, "lstrip": False,
                                      "rstrip": False, "normalized": False, "special": False})
    tok._tokenizer = Tokenizer.from_str(json.dumps(state))  # this instance only: nothing shared is mutated
    return True
