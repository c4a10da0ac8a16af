"""Export the study's GPT to transformers' ``GPT2LMHeadModel`` (+ tokenizer), verified by equal logits.

GPT-2 in transformers stores its four projection matrices as ``Conv1D``, whose weight is the *transpose* of an
``nn.Linear``'s: every one is transposed here — ``c_attn`` and ``mlp.c_fc``/``mlp.c_proj`` (a shape check would
catch a miss, they are not square) and ``attn.c_proj``, which is square (C x C), so a missed transpose still loads
and silently computes something else: the notebook's exporter had exactly that bug. ``verify`` compares logits on
random inputs after export; a model whose square matrices are symmetric would hide the bug, trained or random
weights are not. Also handled: the ``_orig_mod.`` prefix ``torch.compile`` puts on checkpoint keys, the tied head,
and the padded vocabulary rows (dropped: the exported vocabulary is the tokenizer's).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from reasonlab.experiments.multokens.model import GPT

TRANSPOSED = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def hf_state_dict(state: dict[str, torch.Tensor], vocab_size: int) -> dict[str, torch.Tensor]:
    """Our checkpoint's state dict, as GPT2LMHeadModel's."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix("_orig_mod.")  # torch.compile's wrapper
        if key == "lm_head.weight":
            continue  # tied to wte: transformers ties it again
        if key.endswith(TRANSPOSED):
            value = value.t()
        if key == "transformer.wte.weight":
            value = value[:vocab_size]  # padded rows never map to a token
        out[key] = value.contiguous().clone()
    return out


def to_hf(model: GPT, hf_tokenizer: Any, out: str | Path) -> Any:
    """Write a transformers GPT-2 directory (model + tokenizer) and return the loaded model."""
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = model.cfg
    hf_cfg = GPT2Config(vocab_size=cfg.vocab_size, n_positions=cfg.block_size, n_embd=cfg.n_embd,
                        n_layer=cfg.n_layer, n_head=cfg.n_head, activation_function="gelu_new",
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=True,
                        bos_token_id=hf_tokenizer.eos_token_id, eos_token_id=hf_tokenizer.eos_token_id)
    hf = GPT2LMHeadModel(hf_cfg)
    missing, unexpected = hf.load_state_dict(hf_state_dict(model.state_dict(), cfg.vocab_size), strict=False)
    missing = [k for k in missing if not k.endswith(("attn.bias", "attn.masked_bias", "lm_head.weight"))]
    if missing or unexpected:
        raise RuntimeError(f"export: missing {missing[:3]}, unexpected {unexpected[:3]}")
    hf.tie_weights()
    out = Path(out)
    hf.save_pretrained(out)
    hf_tokenizer.save_pretrained(out)
    return hf


@torch.no_grad()
def verify(model: GPT, hf: Any, n: int = 4, seed: int = 0) -> float:
    """Max |logit difference| between the two models on random token sequences (over the real vocabulary)."""
    model.eval()
    hf.eval()
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, model.cfg.vocab_size, (n, model.cfg.block_size), generator=gen)
    ours, _ = model(ids)
    theirs = hf(input_ids=ids).logits
    return float((ours[..., : model.cfg.vocab_size] - theirs).abs().max())
