"""The GRU reasoner/interpreter language model (research notebook 003, after jakob-bjorner/quiet-star-replicate).

Four parts, each an embedding + a one-layer GRU:

    base LM          reads the text; its state h_b[i] predicts character i+1 without thinking
    base reasoner    reads the text; its state seeds a thought at every position i
    reasoner         samples the thought: <sot> t1 .. tT from the seed (through a head; the LM's when shared)
    interpreter      reads <sot> t1 .. tT <eot>; its final state h_t[i] is what the thought says

and the prediction of character i+1 combines h_b[i] and h_t[i] (``mix``). ``weight_groups`` says which parts are one
module: ``("A","A","A","A")`` is one GRU playing all four roles, ``("A","B","C","D")`` four separate ones. Every
position thinks at once: B*L thoughts are sampled as one batch of B*L rows.

    >>> import torch
    >>> from reasonlab.experiments.quietstar.config import QuietStarConfig
    >>> m = ReasonerInterpreterGRU(QuietStarConfig(max_reasoning_len=3), vocab_size=13)
    >>> out = m(torch.randint(0, 10, (2, 7)))
    >>> out.logits.shape, out.thoughts.shape, out.logp.shape
    (torch.Size([2, 7, 13]), torch.Size([2, 7, 3]), torch.Size([2, 7]))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from reasonlab.experiments.quietstar.config import QuietStarConfig


@dataclass
class Thinking:
    """What a forward pass returns. B windows, L positions, T thought tokens, V vocabulary."""

    logits: torch.Tensor  # [B, L, V] the prediction of the next character at each position
    thoughts: torch.Tensor  # [B, L, T] sampled thought tokens (pad after an early end)
    logp: torch.Tensor  # [B, L] sum of log p of the sampled thought tokens (the policy's log-likelihood)
    entropy: torch.Tensor  # [B, L] mean entropy of the thought-token distributions
    length: torch.Tensor  # [B, L] thought tokens before the end
    finished: torch.Tensor  # [B, L] bool: the thought ended with <eot> itself (variable_len)
    gate: torch.Tensor | None = None  # [B, L] mix=gate: the weight of the with-thought prediction


def empty_thinking(logits: torch.Tensor) -> Thinking:
    """No thoughts (use_reasoner off): zeros that carry no gradient."""
    b, l_ = logits.shape[:2]
    zeros = logits.new_zeros(b, l_)
    return Thinking(logits, logits.new_zeros(b, l_, 0, dtype=torch.long), zeros, zeros, zeros,
                    torch.ones(b, l_, dtype=torch.bool, device=logits.device))


class Part(nn.Module):
    """An embedding and a one-layer GRU of one width."""

    def __init__(self, vocab_size: int, width: int) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab_size, width)
        self.gru = nn.GRU(width, width, batch_first=True)

    def forward(self, ids: torch.Tensor, h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        out, h = self.gru(self.emb(ids), h0)  # [N, S, W], [1, N, W]
        return out, h


class Mixer(nn.Module):
    """Combines the base state h_b [.., Hb] and the thought's state h_t [.., Ht] into next-character logits."""

    def __init__(self, kind: str, hb: int, ht: int, head: nn.Module) -> None:
        super().__init__()
        self.kind, self.head = kind, head
        self.down = nn.Linear(hb + ht if kind == "concat" else ht, hb)
        if kind == "gate":  # Quiet-STaR's mixing head: starts at w = sigmoid(0) * ceiling, the ceiling eased in
            self.norm_b, self.norm_t = nn.LayerNorm(hb), nn.LayerNorm(ht)
            self.gate = nn.Sequential(nn.Linear(hb + ht, 64), nn.GELU(), nn.Linear(64, 1))
            nn.init.zeros_(self.gate[-1].weight)
            nn.init.zeros_(self.gate[-1].bias)
        self.ceiling = 1.0  # set by the training loop (gate_warmup)

    def forward(self, hb: torch.Tensor, ht: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.kind == "concat":
            return self.head(self.down(torch.cat([hb, ht], -1))), None
        with_thought = self.head(hb + self.down(ht))
        if self.kind == "add":
            return with_thought, None
        w = torch.sigmoid(self.gate(torch.cat([self.norm_b(hb), self.norm_t(ht)], -1))) * self.ceiling  # [.., 1]
        return (1 - w) * self.head(hb) + w * with_thought, w[..., 0]


class ReasonerInterpreterGRU(nn.Module):
    def __init__(self, cfg: QuietStarConfig, vocab_size: int) -> None:
        super().__init__()
        self.cfg, self.vocab_size = cfg, vocab_size
        # the last three ids are <pad>, <sot>, <eot> (data.CharText)
        self.pad, self.sot, self.eot = vocab_size - 3, vocab_size - 2, vocab_size - 1
        widths = (cfg.base_lm_hidden_dim, cfg.reasoner_hidden_dim, cfg.reasoner_hidden_dim, cfg.interpreter_hidden_dim)
        made: dict[str, Part] = {}
        parts = []
        for letter, width in zip(cfg.weight_groups, widths):
            if letter not in made:
                made[letter] = Part(vocab_size, width)
            parts.append(made[letter])
        self.base_lm, self.base_reasoner, self.reasoner, self.interpreter = parts  # shared parts: one object
        hb, hr, hi = cfg.base_lm_hidden_dim, cfg.reasoner_hidden_dim, cfg.interpreter_hidden_dim
        self.lm_head = nn.Linear(hb, vocab_size)
        if cfg.share_lm_head:  # the reasoner speaks through the LM's head (projected when widths differ)
            self.reasoner_head: nn.Module = self.lm_head if hr == hb else nn.Sequential(nn.Linear(hr, hb), self.lm_head)
        else:
            self.reasoner_head = nn.Linear(hr, vocab_size)
        self.start_reasoner = nn.Parameter(torch.zeros(hr))  # marks "a thought starts here" in the seed state
        self.start_interpreter = nn.Parameter(torch.zeros(hi))  # the interpreter's initial state
        self.mixer = Mixer(cfg.mix, hb, hi, self.lm_head)
        # thought tokens are characters (and <eot> when a thought may end early), never <pad> or <sot>
        banned = torch.zeros(vocab_size)
        banned[[self.pad, self.sot] + ([] if cfg.variable_len else [self.eot])] = float("-inf")
        self.register_buffer("banned", banned, persistent=False)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> Thinking:
        """x: [B, L] character ids."""
        cfg = self.cfg
        hb, _ = self.base_lm(x)  # [B, L, Hb]
        if not cfg.use_reasoner:
            return empty_thinking(self.lm_head(hb))
        b, l_ = x.shape
        n = b * l_  # one thought per position, all at once
        seed, _ = self.base_reasoner(x)  # [B, L, Hr]
        h = (seed.reshape(n, -1) + self.start_reasoner)[None]  # [1, N, Hr]
        tok = x.new_full((n, 1), self.sot)
        alive = torch.ones(n, dtype=torch.bool, device=x.device)  # not yet ended (variable_len)
        toks, logp, ent, length = [], x.new_zeros(n, dtype=torch.float), x.new_zeros(n, dtype=torch.float), \
            x.new_zeros(n, dtype=torch.float)
        for _ in range(cfg.max_reasoning_len):
            out, h = self.reasoner(tok, h)  # [N, 1, Hr]
            logits = self.reasoner_head(out[:, 0]) / cfg.temperature + self.banned  # [N, V]
            lp = F.log_softmax(logits, -1)
            with torch.no_grad():  # the sample is an integer: no gradient passes through the sampler
                nxt = torch.multinomial(lp.exp(), 1, generator=generator)[:, 0]  # [N]
            logp = logp + lp.gather(1, nxt[:, None])[:, 0] * alive
            p = lp.exp()
            ent = ent + -(p * lp.masked_fill(p == 0, 0)).sum(-1) * alive
            length = length + (alive & (nxt != self.eot))
            nxt = torch.where(alive, nxt, torch.full_like(nxt, self.pad))
            if cfg.variable_len:
                alive = alive & (nxt != self.eot)
            toks.append(nxt)
            tok = nxt[:, None]
        thoughts = torch.stack(toks, 1) if toks else x.new_zeros(n, 0)  # [N, T]
        finished = ~alive
        # the interpreter reads <sot> thought <eot>: a thought that ended early is read up to its own <eot>, at
        # index length + 1 as the appended one is for a full thought (the GRU is causal: later pads do not matter)
        seq = torch.cat([x.new_full((n, 1), self.sot), thoughts, x.new_full((n, 1), self.eot)], 1)  # [N, T+2]
        read, _ = self.interpreter(seq, self.start_interpreter.expand(1, n, -1).contiguous())  # [N, T+2, Hi]
        ht = read[torch.arange(n, device=x.device), length.long() + 1]  # [N, Hi]
        logits, gate = self.mixer(hb, ht.reshape(b, l_, -1))
        steps = max(cfg.max_reasoning_len, 1)
        return Thinking(logits, thoughts.reshape(b, l_, -1), logp.reshape(b, l_), (ent / steps).reshape(b, l_),
                        length.reshape(b, l_), finished.reshape(b, l_), gate)


def parameter_count(model: nn.Module) -> int:
    """Distinct parameters (a shared part counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def describe(model: Any) -> dict[str, Any]:
    return {"parameters": parameter_count(model)}
