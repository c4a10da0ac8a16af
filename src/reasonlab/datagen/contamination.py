"""A contamination guard: training rows whose problem overlaps a bundled test problem are dropped.

Overlap is word n-gram overlap (lower-cased, punctuation stripped), as the GPT-3 and Llama reports measure it:
a row is contaminated when its problem shares any n-gram (default 10 words) with a test problem of gsm8k,
math500, aime24, aime25, amc23 or PolyMath-en — or, for a problem shorter than n words, when it equals one. Train on test
problems only when you say so.

    >>> guard = Guard(n=5, texts={"t": ["Natalia sold clips to 48 of her friends in April."]})
    >>> guard.hit("Natalia sold clips to 48 of her friends in May!"), guard.hit("A different problem about clips.")
    ('t', None)
"""

from __future__ import annotations

import re
from functools import lru_cache

TEST_SETS = ("gsm8k", "math500", "aime24", "aime25", "amc23",  # the bundled evaluation sets
             "polymath-en-low", "polymath-en-medium", "polymath-en-high", "polymath-en-top")
_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    w = words(text)
    if len(w) < n:
        return {tuple(w)} if w else set()  # a short problem is compared whole
    return {tuple(w[i: i + n]) for i in range(len(w) - n + 1)}


class Guard:
    """The n-grams of the test problems, by set name; ``hit(text)`` names the first set ``text`` overlaps."""

    def __init__(self, n: int = 10, texts: dict[str, list[str]] | None = None) -> None:
        self.n = n
        texts = texts if texts is not None else bundled_test_problems()
        self.grams: dict[tuple[str, ...], str] = {}
        for name, problems in texts.items():
            for problem in problems:
                for g in ngrams(problem, n):
                    self.grams.setdefault(g, name)

    def hit(self, text: str) -> str | None:
        return next((self.grams[g] for g in ngrams(text, self.n) if g in self.grams), None)


@lru_cache(maxsize=1)
def _bundled_questions() -> tuple[tuple[str, tuple[str, ...]], ...]:
    from reasonlab.data import load_problems

    return tuple((name, tuple(p.question for p in load_problems(name))) for name in TEST_SETS)


def bundled_test_problems() -> dict[str, list[str]]:
    """The bundled test sets' problem texts, by name."""
    return {name: list(qs) for name, qs in _bundled_questions()}
