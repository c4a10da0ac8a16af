"""A small GPT that thinks at every position at once (Quiet-STaR's parallel sampling; research notebook 003).

The text is read once (block 0: L tokens, causal). Then every position i writes its own thought in lock step:
step 1 feeds <sot> at all L positions, steps 2..T+1 feed the sampled thought tokens, step T+2 feeds <eot>, whose
state predicts character i+1 (with ``add_last_context_token`` the position's own character is read once more
and predicts instead). Step s is one more block of L queries, and the attention mask grows by one block:

    keys:        text (L)       step 1 (L)   ...   step s (L)
    query i   [ k <= i      |   k == i     | ... |  k == i   ]     a thought sees its context and its own
                                                                   earlier thought tokens, nothing else

Dense, that is a [L, L*(s+1)] mask per step. The thought blocks are diagonal, so ``ParallelAttention`` computes
them elementwise (q_i . k_i per step) — O(L^2 + L*s) per step instead of O(L^2 * s) — and ``thought_mask``
builds the dense 4-D mask the tests compare it with. Thought tokens sit at positions offset by the window length
(``window + i + s``) so they never collide with text positions (as the notebook's position ids); a last context
token keeps its text position i.

    >>> import torch
    >>> from reasonlab.experiments.quietstar.config import QuietStarConfig
    >>> cfg = QuietStarConfig(model="transformer", model_hidden_dim=16, model_n_head=2, max_reasoning_len=2, window=8)
    >>> out = ThinkingGPT(cfg, vocab_size=11)(torch.randint(0, 8, (3, 8)))
    >>> out.logits.shape, out.thoughts.shape
    (torch.Size([3, 8, 11]), torch.Size([3, 8, 2]))
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from reasonlab.experiments.quietstar.config import QuietStarConfig
from reasonlab.experiments.quietstar.gru import Mixer, Thinking, empty_thinking


def thought_mask(length: int, steps: int) -> torch.Tensor:
    """[L, L*(steps+1)] bool, True where a step-``steps`` thought query may attend (dense form, for checking):
    the text causally up to its own position, then its own position in every thought block so far."""
    causal = torch.ones(length, length).tril().bool()
    eye = torch.eye(length).bool()
    return torch.cat([causal] + [eye] * steps, dim=1)


class ParallelAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.hd = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, l_, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=-1)
        return tuple(t.view(b, l_, self.heads, self.hd).transpose(1, 2) for t in (q, k, v))  # type: ignore[return-value]

    def forward(self, x: torch.Tensor, text_kv: tuple[torch.Tensor, torch.Tensor] | None,
                thought_kv: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """x: [B, L, D]. text_kv None: this is the text block (causal). Otherwise x is a thought step: it attends
        to the text causally and to ``thought_kv`` (earlier steps' [B, H, L, hd] pairs) and itself diagonally.
        Returns the output [B, L, D] and this block's (k, v)."""
        b, l_, d = x.shape
        q, k, v = self.split(x)  # [B, H, L, hd]
        if text_kv is None:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            tk, tv = text_kv
            causal = torch.ones(l_, l_, dtype=torch.bool, device=x.device).tril()
            s_text = (q @ tk.transpose(-1, -2)) / math.sqrt(self.hd)  # [B, H, L, L]
            s_text = s_text.masked_fill(~causal, float("-inf"))
            ks = torch.stack([kk for kk, _ in thought_kv] + [k], dim=3)  # [B, H, L, S, hd]
            vs = torch.stack([vv for _, vv in thought_kv] + [v], dim=3)
            s_th = torch.einsum("bhld,bhlsd->bhls", q, ks) / math.sqrt(self.hd)  # [B, H, L, S]: the diagonals
            p = torch.softmax(torch.cat([s_text, s_th], -1), -1)
            out = p[..., :l_] @ tv + torch.einsum("bhls,bhlsd->bhld", p[..., l_:], vs)
        return self.proj(out.transpose(1, 2).reshape(b, l_, d)), (k, v)


class Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = ParallelAttention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor, text_kv: tuple[torch.Tensor, torch.Tensor] | None,
                thought_kv: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        a, kv = self.attn(self.ln1(x), text_kv, thought_kv)
        x = x + a
        return x + self.mlp(self.ln2(x)), kv


class ThinkingGPT(nn.Module):
    def __init__(self, cfg: QuietStarConfig, vocab_size: int) -> None:
        super().__init__()
        self.cfg, self.vocab_size = cfg, vocab_size
        self.pad, self.sot, self.eot = vocab_size - 3, vocab_size - 2, vocab_size - 1
        d = cfg.model_hidden_dim
        self.wte = nn.Embedding(vocab_size, d)
        self.wpe = nn.Embedding(2 * cfg.window + cfg.max_reasoning_len + 3, d)  # text, then offset thought positions
        self.blocks = nn.ModuleList(Block(d, cfg.model_n_head) for _ in range(cfg.model_n_layer))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab_size, bias=False)
        self.head.weight = self.wte.weight  # tied, as GPT-2
        self.mixer = Mixer(cfg.mix, d, d, self.head)
        banned = torch.zeros(vocab_size)
        banned[[self.pad, self.sot, self.eot]] = float("-inf")  # fixed-length thoughts of characters
        self.register_buffer("banned", banned, persistent=False)

    def step(self, ids: torch.Tensor, pos: torch.Tensor, cache: list[dict]) -> torch.Tensor:
        """One block of L tokens through every layer; ``cache[layer]`` holds the text's (k, v) and the thought
        steps' so far, and gets this block's. Returns the final states [B, L, D]."""
        h = self.wte(ids) + self.wpe(pos)[None]  # [B, L, D]
        for layer, block in enumerate(self.blocks):
            c = cache[layer]
            h, kv = block(h, c.get("text"), c.setdefault("thought", []))
            if "text" not in c:
                c["text"] = kv
            else:
                c["thought"].append(kv)
        return self.ln_f(h)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> Thinking:
        """x: [B, L] character ids, L <= window."""
        i = torch.arange(x.shape[1], device=x.device)
        cache: list[dict] = [{} for _ in self.blocks]
        last = last_context_block(self.cfg)

        def step(ids: torch.Tensor, s: int) -> torch.Tensor:
            # text and a last context token at the text's positions; thought steps offset past the window
            return self.step(ids, i if s in (0, last) else self.cfg.window + i + s, cache)

        return lockstep_thoughts(self.cfg, x, step, self.head, self.mixer, self.banned, self.sot, self.eot,
                                 generator)


def last_context_block(cfg: QuietStarConfig) -> int:
    """The block index ``lockstep_thoughts`` feeds a last context token at (after <sot>, T thought tokens, <eot>)."""
    return cfg.max_reasoning_len + 3


def lockstep_thoughts(cfg: QuietStarConfig, x: torch.Tensor, step: Callable[[torch.Tensor, int], torch.Tensor],
                      head: nn.Module, mixer: Mixer, banned: torch.Tensor, sot: int,
                      eot: int, generator: torch.Generator | None) -> Thinking:
    """Every position thinks at once. ``step(ids [B, L], s)`` feeds block s into the model's cache and returns its
    final states [B, L, D]: s = 0 the text (causal), 1 <sot>, 2..T+1 the sampled thought tokens, T+2 <eot>, and
    T+3 the position's own token again (``add_last_context_token``). The model owns positions and masks."""
    b, l_ = x.shape
    hb = step(x, 0)  # [B, L, D] the text, read once
    if not cfg.use_reasoner:
        return empty_thinking(head(hb))
    tok = x.new_full((b, l_), sot)
    toks, logp, ent = [], hb.new_zeros(b, l_), hb.new_zeros(b, l_)
    for s in range(1, cfg.max_reasoning_len + 2):  # feed <sot>, t1 .. tT; sample from all but the last
        h = step(tok, s)
        if s == cfg.max_reasoning_len + 1:
            break
        lp = F.log_softmax(head(h) / cfg.temperature + banned, -1)  # [B, L, V]
        with torch.no_grad():  # an integer sample: no gradient through the sampler
            tok = torch.multinomial(lp.exp().reshape(b * l_, -1), 1, generator=generator).reshape(b, l_)
        logp = logp + lp.gather(-1, tok[..., None])[..., 0]
        p = lp.exp()
        ent = ent - (p * lp.masked_fill(p == 0, 0)).sum(-1)
        toks.append(tok)
    end = cfg.max_reasoning_len + 2
    ht = step(x.new_full((b, l_), eot), end)  # <eot>: [B, L, D]
    if cfg.add_last_context_token:
        ht = step(x, last_context_block(cfg))
    logits, gate = mixer(hb, ht)
    thoughts = torch.stack(toks, -1) if toks else x.new_zeros(b, l_, 0)
    return Thinking(logits, thoughts, logp, ent / max(cfg.max_reasoning_len, 1),
                    hb.new_full((b, l_), float(cfg.max_reasoning_len)),
                    torch.ones(b, l_, dtype=torch.bool, device=x.device), gate)
