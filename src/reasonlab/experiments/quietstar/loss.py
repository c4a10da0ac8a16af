"""Quiet-STaR's objective on one batch: the next character's log-likelihood given a thought is the reward; each
position thinks ``trice_samples`` times and their mean reward is the baseline (TRICE-style); the thought is
trained by REINFORCE, the rest by the NLL.

    reward   r_k  = log p(x[i+1] | x[..i], thought_k)                      (minus the length shaping, if any)
    policy   -(r_k - mean_k r).detach() * sum_t log p(thought_k token t)   scaled by policy_loss_beta
    nll      -log p(x[i+1] | x[..i], thought_k)                            scaled by nll_loss_beta
    entropy  the thought-token distributions' mean entropy                 subtracted, scaled by entropy_coef

    >>> import torch
    >>> reward = torch.tensor([[-1.0], [-3.0]])  # [B*K, L]: one position, thought twice (K=2): mean -2
    >>> logp = torch.tensor([[-0.5], [-2.0]])
    >>> policy_loss(reward, logp, trice=2)       # -((+1)(-0.5) + (-1)(-2.0)) / 2
    tensor(-0.7500)
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.nn import functional as F

from reasonlab.experiments.quietstar.config import QuietStarConfig
from reasonlab.experiments.quietstar.gru import Thinking


def advantages(reward: torch.Tensor, trice: int) -> torch.Tensor:
    """reward [B*K, L] (the K thoughts of a window adjacent) -> reward minus the mean over its K, detached."""
    r = reward.detach().view(-1, trice, reward.shape[-1])  # [B, K, L]
    return (r - r.mean(1, keepdim=True)).view_as(reward)


def policy_loss(reward: torch.Tensor, logp: torch.Tensor, trice: int) -> torch.Tensor:
    """REINFORCE with the TRICE baseline, averaged over thoughts: -(r - mean r) * log p(thought)."""
    return -(advantages(reward, trice) * logp).mean()


def quiet_star_loss(out: Thinking, targets: torch.Tensor, cfg: QuietStarConfig) -> tuple[torch.Tensor, dict[str, Any]]:
    """out: the model's forward on [B*K, L] windows (each window K times, adjacent); targets [B*K, L]."""
    nll = F.cross_entropy(out.logits.transpose(1, 2), targets, reduction="none")  # [B*K, L]
    loss = cfg.nll_loss_beta * nll.mean()
    mean = float(nll.detach().mean())
    stats: dict[str, Any] = {"nll": mean, "bpc": mean / math.log(2)}
    if cfg.use_reasoner:
        reward = -nll
        if cfg.variable_len:  # shaping: shorter thoughts, and thoughts that end by themselves
            reward = reward - cfg.length_penalty * out.length - cfg.punish_unfinished * (~out.finished).float()
        pol = policy_loss(reward, out.logp, cfg.trice_samples)
        loss = loss + cfg.policy_loss_beta * pol - cfg.entropy_coef * out.entropy.mean()
        stats.update(policy=float(pol.detach()), entropy=float(out.entropy.detach().mean()),
                     thought_len=float(out.length.mean()))
        if out.gate is not None:
            stats["gate"] = float(out.gate.detach().mean())
    return loss, stats
