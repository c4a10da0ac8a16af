"""Arithmetic-fact tokens and the injector that writes them into text (research notebook 001; its public code:
zhengpu-berkeley/domain-token-gpt2).

A fact family is a set of facts a ∘ b = c, each one token. The default, ``mul``, has the 45 facts a × b = c with
1 <= a <= b <= 9: ``6 * 9 = 54`` and ``9 × 6 = 54`` both become ``<MUL_6_9_54>`` (one token per unordered pair).
The injector rewrites a fact only when its result is right; ``strict`` needs the ``= c``, ``weak`` rewrites a bare
``a * b`` too. ``x`` counts as a times sign only between numbers and not when a letter follows (``3 x 4 = 12``
yes, ``3 xylophones`` no). Families are pluggable (the notes' G1): ``squares``, ``add`` and ``div`` are registered
beside ``mul``, and any other is a ``FactFamily`` away — the training code never names one.

    >>> mul = FAMILIES["mul"]()
    >>> inject("so 6 * 9 = 54 and 9 × 6 = 54, not 6 x 9 = 55", mul)
    'so <MUL_6_9_54> and <MUL_6_9_54>, not 6 x 9 = 55'
    >>> inject("3 xylophones, 3 x 4 = 12", mul), inject("it costs 4*5 dollars", mul, mode="weak")
    ('3 xylophones, <MUL_3_4_12>', 'it costs <MUL_4_5_20> dollars')
    >>> len(mul.facts), len(FAMILIES["mul"](upto=12).facts)
    (45, 78)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Literal

Mode = Literal["strict", "weak"]


@dataclass(frozen=True)
class Fact:
    a: int
    b: int
    c: int
    token: str


@dataclass(frozen=True)
class FactFamily:
    """Facts and how text writes them: ``signs`` a regex for the operator between two numbers; ``commutative``
    families share one token between a ∘ b and b ∘ a."""

    name: str
    facts: tuple[Fact, ...]
    signs: str
    commutative: bool
    index: dict[tuple[int, int], Fact] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for f in self.facts:
            self.index[(f.a, f.b)] = f
            if self.commutative:
                self.index[(f.b, f.a)] = f

    @property
    def tokens(self) -> list[str]:
        return [f.token for f in self.facts]

    def lookup(self, a: int, b: int) -> Fact | None:
        return self.index.get((a, b))


def _mul(upto: int = 9) -> FactFamily:
    facts = tuple(Fact(a, b, a * b, f"<MUL_{a}_{b}_{a * b}>") for a in range(1, upto + 1) for b in range(a, upto + 1))
    # x is a times sign only when no letter follows it (3 x 4, not 3 xylophones)
    return FactFamily("mul", facts, r"(?:\*|×|x(?![A-Za-z]))", commutative=True)


def _squares(upto: int = 12) -> FactFamily:
    facts = tuple(Fact(a, a, a * a, f"<SQ_{a}_{a * a}>") for a in range(1, upto + 1))
    return FactFamily("squares", facts, r"(?:\*|×|x(?![A-Za-z]))", commutative=True)


def _add(upto: int = 9) -> FactFamily:
    facts = tuple(Fact(a, b, a + b, f"<ADD_{a}_{b}_{a + b}>") for a in range(1, upto + 1) for b in range(a, upto + 1))
    return FactFamily("add", facts, r"\+", commutative=True)


def _div(upto: int = 9) -> FactFamily:
    facts = tuple(Fact(a * b, b, a, f"<DIV_{a * b}_{b}_{a}>") for a in range(1, upto + 1) for b in range(1, upto + 1))
    return FactFamily("div", facts, r"(?:/|÷)", commutative=False)


FAMILIES: dict[str, Callable[..., FactFamily]] = {"mul": _mul, "squares": _squares, "add": _add, "div": _div}


def _pattern(family: FactFamily, mode: Mode) -> re.Pattern[str]:
    # whole numbers only: not a digit (or a decimal point) on either side of an operand
    num = r"(?<![\d.])(\d+)(?![\d.]\d)"
    result = r"\s*=\s*(\d+)(?![\d.]\d)"
    return re.compile(num + r"\s*" + family.signs + r"\s*" + r"(\d+)(?![\d.]\d)" + (result if mode == "strict" else
                                                                                 f"(?:{result})?"))


def inject(text: str, family: FactFamily, mode: Mode = "strict") -> str:
    """``text`` with every correct fact of ``family`` written as its token (a wrong result is left alone)."""
    def swap(m: re.Match[str]) -> str:
        fact = family.lookup(int(m.group(1)), int(m.group(2)))
        if fact is None:
            return m.group(0)
        if m.group(3) is None:  # weak: a bare a * b stands for its fact
            return fact.token
        return fact.token if int(m.group(3)) == fact.c else m.group(0)

    return _pattern(family, mode).sub(swap, text)


def count_tokens(text: str, family: FactFamily) -> int:
    """How many of ``family``'s tokens ``text`` holds (mul-token usage in a generated answer)."""
    return sum(text.count(t) for t in family.tokens)
