"""Run-level metrics from stored records.

    >>> s = summarize([{"correct": True, "answer": "1", "tokens": 10, "seconds": 1.0, "finish_reason": "stop"},
    ...                {"correct": False, "answer": None, "tokens": 30, "seconds": 1.0, "finish_reason": "length"}])
    >>> s["accuracy"], s["answer_found_rate"], s["tokens_per_s"]
    (0.5, 0.5, 20.0)
"""

from __future__ import annotations

import math
from typing import Any


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for k successes in n trials (honest error bars at small n)."""
    if n == 0:
        return (0.0, 0.0)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(records)
    correct = sum(1 for r in records if r.get("correct"))
    found = sum(1 for r in records if r.get("answer") is not None)
    tokens = sum(int(r.get("tokens", 0)) for r in records)
    prompt_tokens = sum(int(r.get("prompt_tokens", 0)) for r in records)
    seconds = sum(float(r.get("seconds", 0.0)) for r in records)
    lo, hi = wilson_interval(correct, n)
    return {
        "n": n,
        "correct": correct,
        "accuracy": correct / n if n else 0.0,
        "accuracy_ci95": [round(lo, 4), round(hi, 4)],
        "answer_found_rate": found / n if n else 0.0,
        "tokens": tokens,
        "mean_tokens": tokens / n if n else 0.0,
        "prompt_tokens": prompt_tokens,
        "seconds": round(seconds, 3),
        "tokens_per_s": round(tokens / seconds, 2) if seconds else 0.0,
        "truncated": sum(1 for r in records if r.get("finish_reason") == "length"),
        "errors": sum(1 for r in records if r.get("error") or r.get("finish_reason") == "error"),
    }
