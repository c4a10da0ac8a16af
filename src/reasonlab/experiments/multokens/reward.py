"""The notebook's shaped GSM8K reward for GRPO (option A3), a plain callable as TRL calls them — usable by any
GRPO run: ``reasonlab train grpo --reward reasonlab.experiments.multokens.reward:shaped``.

    exact answer 1.0 | within ±1 or 10 % 0.3 | has "=" or "####" 0.1 | contains a mul-token 0.2
    | under 150 words 0.1 | a repeated word trigram -0.3

The answer is the number after the last ``####``, else the last number in the completion.

    >>> shaped(["6 * 9 = 54 #### 54", "#### 59", "<MUL_6_9_54> so 54", "a b c a b c 7"], answer=["54", "54", "54", "9"])
    [1.2, 0.5, 1.3, -0.2]
"""

from __future__ import annotations

import re
from typing import Any

NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
MUL_TOKEN = re.compile(r"<MUL_\d+_\d+_\d+>")


def _text(completion: Any) -> str:
    return completion[-1]["content"] if isinstance(completion, list) else str(completion)


def _number(text: str) -> float | None:
    tail = text.rsplit("####", 1)[-1] if "####" in text else text
    found = NUMBER.findall(MUL_TOKEN.sub(" ", tail))
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
    except ValueError:
        return None


def _repeats_trigram(words: list[str]) -> bool:
    seen = set()
    for tri in zip(words, words[1:], words[2:]):
        if tri in seen:
            return True
        seen.add(tri)
    return False


def shaped(completions: list[Any], answer: list[Any], **_: Any) -> list[float]:
    out = []
    for completion, gold in zip(completions, answer):
        text = _text(completion)
        words = text.split()
        r = 0.0
        got, want = _number(text), _number(str(gold))
        if got is not None and want is not None:
            if got == want:
                r += 1.0
            elif abs(got - want) <= 1 or abs(got - want) <= 0.1 * abs(want):
                r += 0.3
        if "=" in text or "####" in text:
            r += 0.1
        if MUL_TOKEN.search(text):
            r += 0.2
        if len(words) < 150:
            r += 0.1
        if _repeats_trigram(words):
            r -= 0.3
        out.append(round(r, 6))
    return out
