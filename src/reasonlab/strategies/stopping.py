"""When a vote has seen enough: the early-stopping rules, as pure functions of the votes so far.

Each rule sees the tally after a wave of traces and says whether to stop (and why). They are pure so
they are tested on hand-made tallies, without a model.

- window (ESC, Li et al. 2024): sample in waves of ``w``; stop when a whole wave agrees;
- adaptive (Adaptive-Consistency, Aggarwal et al. 2023): stop when the posterior probability that the
  leading answer is the most likely one exceeds a threshold (Beta over the top two counts);
- quorum (AIMO practice): stop once one answer has at least ``m`` votes and more than ``p`` of all;
- consensus (DeepConf): stop once the leading answer holds at least ``tau`` of the (weighted) vote;
- unbeatable: stop once the samples left could not change the winner (exact: the full vote's answer);
- verifier: stop once the leader holds a share of the vote and an outcome verifier scores one of its traces high.

    >>> window_unanimous(["4", "4"]), window_unanimous(["4", "5"]), window_unanimous(["4", None])
    (True, False, False)
    >>> round(beta_lead_probability(3, 0), 4), round(beta_lead_probability(1, 1), 4)
    (0.9375, 0.5)
    >>> quorum_reached({"4": 2, "5": 1}, min_votes=2, fraction=0.5)
    True
"""

from __future__ import annotations

import math
from typing import Sequence


def window_unanimous(answers: Sequence[str | None]) -> bool:
    """Every trace of the wave gave the same (non-missing) answer."""
    return bool(answers) and answers[0] is not None and all(a == answers[0] for a in answers)


def beta_lead_probability(v1: float, v2: float) -> float:
    """P(p1 > p2) for the top two answers with p1 ~ Beta(v1 + 1, v2 + 1) (uniform prior), i.e. P(X > 1/2).

    Exact for integer counts (P(Beta(a, b) <= 1/2) = P(Binomial(a + b - 1, 1/2) >= a)); weighted,
    fractional votes integrate the density numerically (Simpson, 2000 intervals).
    """
    a, b = v1 + 1, v2 + 1
    if float(v1).is_integer() and float(v2).is_integer():
        a, b, n = int(a), int(b), int(a + b - 1)
        return 1.0 - sum(math.comb(n, j) for j in range(a, n + 1)) / 2**n
    log_norm = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)

    def pdf(x: float) -> float:
        return math.exp(log_norm + (a - 1) * math.log(x) + (b - 1) * math.log1p(-x)) if 0 < x < 1 else 0.0

    steps, lo, hi = 2000, 0.5, 1.0
    h = (hi - lo) / steps
    total = pdf(lo) + pdf(hi) + sum((4 if k % 2 else 2) * pdf(lo + k * h) for k in range(1, steps))
    return min(1.0, total * h / 3)


def top_two(votes: dict[str, float]) -> tuple[float, float]:
    ranked = sorted(votes.values(), reverse=True) + [0.0, 0.0]
    return ranked[0], ranked[1]


def adaptive_confident(votes: dict[str, float], threshold: float) -> bool:
    v1, v2 = top_two(votes)
    return v1 > 0 and beta_lead_probability(v1, v2) >= threshold


def quorum_reached(votes: dict[str, float], min_votes: float, fraction: float) -> bool:
    total = sum(votes.values())
    v1, _ = top_two(votes)
    return total > 0 and v1 >= min_votes and v1 / total > fraction


def consensus_reached(votes: dict[str, float], tau: float) -> bool:
    total = sum(votes.values())
    v1, _ = top_two(votes)
    return total > 0 and v1 / total >= tau


def verifier_settled(lead: float, total: float, lead_score: float | None, share: float, score: float) -> bool:
    """The outcome verifier has settled the vote: the leader holds ``share`` of it and one of its traces
    scores at least ``score``.

    >>> verifier_settled(2, 3, 0.95, share=0.5, score=0.9), verifier_settled(2, 3, 0.6, share=0.5, score=0.9)
    (True, False)
    """
    return total > 0 and lead_score is not None and lead / total >= share and lead_score >= score


def unbeatable(votes: dict[str, float], remaining: int) -> bool:
    """The leader's lead exceeds what the ``remaining`` (unit-weight) samples could add to any rival.

    >>> unbeatable({"3": 5}, 3), unbeatable({"3": 4, "5": 1}, 3), unbeatable({"3": 4, "5": 1}, 2)
    (True, False, True)
    """
    v1, v2 = top_two(votes)
    return v1 > 0 and v1 - v2 > remaining


def window_means(logprobs: Sequence[float], window: int) -> list[float]:
    """Mean log-prob of every full sliding window (the whole trace when it is shorter than one)."""
    if not logprobs:
        return []
    if len(logprobs) <= window:
        return [sum(logprobs) / len(logprobs)]
    out, acc = [], sum(logprobs[:window])
    out.append(acc / window)
    for i in range(window, len(logprobs)):
        acc += logprobs[i] - logprobs[i - window]
        out.append(acc / window)
    return out


def lowest_group_confidence(logprobs: Sequence[float], window: int) -> float | None:
    """DeepConf's trace confidence: the lowest sliding-window mean token log-prob."""
    means = window_means(logprobs, window)
    return min(means) if means else None


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 100] (numpy's default), without numpy."""
    xs = sorted(values)
    if not xs:
        raise ValueError("percentile of no values")
    pos = (len(xs) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


class RunningConfidence:
    """A trace's sliding-window mean log-prob, updated token by token (O(1) per token)."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.buf: list[float] = []
        self.acc = 0.0

    def add(self, logprob: float) -> float | None:
        """Add a token; the window mean once the window is full, else None."""
        self.buf.append(logprob)
        self.acc += logprob
        if len(self.buf) > self.window:
            self.acc -= self.buf[-self.window - 1]
        return self.acc / self.window if len(self.buf) >= self.window else None
