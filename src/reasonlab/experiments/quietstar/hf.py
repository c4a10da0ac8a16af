"""Quiet-STaR on a pretrained causal LM through transformers (issue 16's stretch): the lock-step parallel thinking
of ``transformer.ThinkingGPT`` on any decoder transformers loads (``hf_model``: a registered name such as
smollm2-135m — its GGUF dequantized by the training issue's loader —, an HF directory or a hub id).

The text (``window`` tokens of the model's own tokenizer) is read once into a ``DynamicCache``; every thought step
feeds one more block of L tokens with a dense (B, 1, L, L*(s+1)) additive mask — the text causally, then one
identity block per step (``transformer.thought_mask``) — and explicit position ids (the thought continues from its
position: i + s, as Quiet-STaR's). The start and end of a thought are two tokens the vocabulary already has
(``sot_token``/``eot_token``, by default ChatML's ``<|im_start|>``/``<|im_end|>``), so nothing is resized.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from reasonlab.errors import ConfigError
from reasonlab.experiments.quietstar.config import QuietStarConfig
from reasonlab.experiments.quietstar.data import random_windows, spread_windows
from reasonlab.experiments.quietstar.gru import Mixer, Thinking
from reasonlab.experiments.quietstar.transformer import last_context_block, lockstep_thoughts, thought_mask


class TokenText:
    """The text in the model's tokens, with CharText's interface (train_batch, val_windows) and the characters
    per target token, so validation still reports bits per character."""

    def __init__(self, ids: torch.Tensor, val_fraction: float, chars_per_token: float) -> None:
        cut = int(len(ids) * (1 - val_fraction))
        self.train, self.val, self.chars_per_token = ids[:cut], ids[cut:], chars_per_token

    def train_batch(self, batch: int, window: int, gen: torch.Generator) -> torch.Tensor:
        return random_windows(self.train, batch, window, gen, "training text")

    def val_windows(self, n: int, window: int) -> torch.Tensor:
        return spread_windows(self.val, n, window, "validation text")


def load(cfg: QuietStarConfig) -> tuple[nn.Module, TokenText]:
    """(ThinkingHF around the loaded model, the text in its tokens)."""
    from reasonlab.experiments.quietstar.data import CharText
    from reasonlab.train.model import load_trainable

    lm, tok = load_trainable(cfg.hf_model)
    chars = CharText.load(cfg.data, cfg.val_fraction)
    text = chars.decode(torch.cat([chars.train, chars.val]).tolist())
    ids = torch.tensor(tok(text, add_special_tokens=False)["input_ids"], dtype=torch.long)
    marks = [tok.convert_tokens_to_ids(t) for t in (cfg.sot_token, cfg.eot_token)]
    if any(m is None or m == tok.unk_token_id for m in marks):
        raise ConfigError(f"hf_model {cfg.hf_model}: its vocabulary lacks {cfg.sot_token} or {cfg.eot_token} "
                          f"(set sot_token / eot_token to tokens it has)")
    return ThinkingHF(cfg, lm, *marks), TokenText(ids, cfg.val_fraction, len(text) / len(ids))


class ThinkingHF(nn.Module):
    def __init__(self, cfg: QuietStarConfig, lm: Any, sot: int, eot: int) -> None:
        super().__init__()
        self.cfg, self.lm, self.sot, self.eot = cfg, lm, sot, eot
        d = lm.config.hidden_size
        self.mixer = Mixer(cfg.mix, d, d, lm.get_output_embeddings())
        banned = torch.zeros(lm.get_output_embeddings().weight.shape[0])
        banned[[sot, eot]] = float("-inf")
        self.register_buffer("banned", banned, persistent=False)

    def step(self, ids: torch.Tensor, pos: torch.Tensor, cache: Any, steps: int) -> torch.Tensor:
        """One block of L tokens into the cache; ``steps`` thought blocks before it (0: the text, causal)."""
        b, l_ = ids.shape
        mask = None
        if steps:  # [B, 1, L, L * (steps + 1)]: allowed 0, the rest the dtype's minimum
            allowed = thought_mask(l_, steps).to(ids.device)
            dtype = self.lm.get_input_embeddings().weight.dtype
            mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
            mask = mask.expand(b, 1, -1, -1)
        out = self.lm.model(input_ids=ids, position_ids=pos.expand(b, -1), attention_mask=mask,
                            past_key_values=cache, use_cache=True)
        return out.last_hidden_state  # [B, L, D]

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> Thinking:
        from transformers import DynamicCache

        i = torch.arange(x.shape[1], device=x.device)[None]
        cache = DynamicCache()
        last = last_context_block(self.cfg)

        def step(ids: torch.Tensor, s: int) -> torch.Tensor:
            # a thought continues from its position (i + s); a last context token re-reads position i
            return self.step(ids, i if s == last else i + s, cache, s)

        return lockstep_thoughts(self.cfg, x, step, self.lm.get_output_embeddings(), self.mixer, self.banned,
                                 self.sot, self.eot, generator)
