"""Find the final answer in a model's text.

Policy, in order: drop ``<think>…</think>`` blocks; take the last ``\\boxed{…}`` (nested braces
balanced); else the configured fallbacks ("The answer is …", "#### N", optionally the last number).

    >>> extract_answer(r"so $x = \\boxed{\\frac{1}{2}}$. <think>\\boxed{9}</think>")
    '\\\\frac{1}{2}'
    >>> extract_answer("... #### 1,234")
    '1,234'
    >>> extract_answer("no answer here") is None
    True
"""

from __future__ import annotations

import re
from typing import Literal

Fallback = Literal["answer_is", "hash", "last_number"]
DEFAULT_FALLBACKS: tuple[Fallback, ...] = ("answer_is", "hash")

_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)
_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BOX_BARE = re.compile(r"\\boxed\s+([^\s$]+)")
_ANSWER_IS = re.compile(
    r"(?:final answer|the answer)\s*(?:is|:|=)\s*:?\s*(?:\$\s*)?([^\n]+?)\s*(?:\$)?\s*(?:\.\s*)?(?:\n|$)", re.IGNORECASE
)
_HASH = re.compile(r"####\s*([^\n]+)")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def strip_think(text: str) -> str:
    """Remove closed ``<think>`` blocks; with an unclosed one, keep only what follows the last ``</think>``."""
    text = _THINK.sub("", text)
    if "</think>" in text:
        text = text.rsplit("</think>", 1)[1]
    return text


def boxed_answers(text: str) -> list[str]:
    r"""Contents of every ``\boxed{…}`` or ``\fbox{…}`` whose braces balance, in order.

    >>> boxed_answers("so \\boxed{\\frac{1}{2}} or \\boxed{3} or \\boxed{4")
    ['\\frac{1}{2}', '3']
    """
    out = []
    for m in _BOX.finditer(text):
        depth = 1
        for i in range(m.end(), len(text)):
            c = text[i]
            if c == "{" and text[i - 1] != "\\":
                depth += 1
            elif c == "}" and text[i - 1] != "\\":
                depth -= 1
                if depth == 0:
                    out.append(text[m.end():i].strip())
                    break
    return out


def last_boxed(text: str) -> str | None:
    """Contents of the last ``\\boxed{…}`` or ``\\fbox{…}`` with balanced braces; None if none closes."""
    boxed = boxed_answers(text)
    if boxed:
        return boxed[-1]
    bare = _BOX_BARE.findall(text)
    return bare[-1] if bare else None


def extract_answer(text: str, fallbacks: tuple[Fallback, ...] = DEFAULT_FALLBACKS) -> str | None:
    """The final answer as a string, or None when the text gives none."""
    text = strip_think(text)
    boxed = last_boxed(text)
    if boxed:
        return boxed
    for kind in fallbacks:
        if kind == "answer_is":
            found = _ANSWER_IS.findall(text)
            if found:
                inner = last_boxed(found[-1])
                if inner is not None or _BOX.search(found[-1]):
                    # "the answer is \boxed{}" parrots the instruction: an empty box is no answer
                    if inner:
                        return inner
                    continue
                return found[-1].strip().rstrip(".").strip()
        elif kind == "hash":
            found = _HASH.findall(text)
            if found:
                return found[-1].strip()
        elif kind == "last_number":
            found = _NUMBER.findall(text)
            if found:
                return found[-1]
    return None
