"""Answer-type normalisation: the cheap, exact part of grading that needs no sympy.

    >>> normalize(r"\\$1,000.00")
    '1000'
    >>> normalize("025", "int"), normalize(27.0), normalize("1025", "mod1000")
    ('25', '27', '25')
    >>> normalize(r"18 \\text{ dollars}")
    '18'
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Literal

AnswerType = Literal["auto", "number", "int", "mod1000", "latex", "text"]

# digit groups decide, as math-verify's number parser does: 1,000 and 1 000 are thousands (first group
# 1-3 digits, not led by 0, then groups of exactly 3); 1,22 and 0,111 are decimal commas
_THOUSANDS = re.compile(r"^-?[1-9]\d{0,2}(?:[ ,]\d{3})+(\.\d+)?$")
_DECIMAL_COMMA = re.compile(r"^-?\d+,\d+$")
_UNIT_TEXT = re.compile(r"\\(?:text|textbf|mathrm|mbox)\s*\{[^{}]*\}")
_NUMERIC = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$")
_FRAC = re.compile(r"^(-?)\\[dt]?frac\{(-?\d+)\}\{(\d+)\}$")


def _strip_decorations(s: str) -> str:
    s = s.strip()
    s = re.sub(r"^\$+|\$+$", "", s).strip()  # math delimiters
    s = s.replace("\\$", "").replace("\\!", "").replace("\\,", "")
    s = re.sub(r"(?<!\\)\\ ", " ", s)  # "\ " is a space; "\\ " (a matrix row break) is not
    s = s.replace("\\left", "").replace("\\right", "").replace("dfrac", "frac").replace("tfrac", "frac")
    s = re.sub(r"\^\{?\\circ\}?", "", s)  # degrees
    s = s.replace("\\%", "").rstrip("%") if re.search(r"\d\s*\\?%$", s) else s
    s = s.strip().rstrip(".").strip()
    if s.startswith("$"):
        s = s[1:].strip()
    return s


def to_number(s: str, decimal_comma: bool = True) -> float | None:
    """The numeric value of a plain number string (thousands separators, units, \\frac{a}{b}), else None.

    ``decimal_comma`` reads "1,22" as 1.22 (what math-verify does with a bare number); off for LaTeX
    answers, where MATH writes the solutions of an equation as "-2,1".

    >>> to_number("1,000"), to_number("1 000"), to_number("1,22"), to_number("0,111"), to_number("-2,1", False)
    (1000.0, 1000.0, 1.22, 0.111, None)
    """
    s = _strip_decorations(s)
    without_units = _UNIT_TEXT.sub("", s).strip()
    if without_units and without_units != s:
        s = without_units
    s = re.sub(r"\s*(dollars?|cents?|units?|meters?|cm|km|kg|hours?|minutes?|mph)$", "", s).strip()
    if _THOUSANDS.match(s):
        s = s.replace(",", "").replace(" ", "")
    elif decimal_comma and _DECIMAL_COMMA.match(s):
        s = s.replace(",", ".")
    if _NUMERIC.match(s):
        value = float(s)
        return value if math.isfinite(value) else None
    m = _FRAC.match(s)
    if m and int(m.group(3)) != 0:
        value = float(Fraction(int(m.group(2)), int(m.group(3))))
        return -value if m.group(1) else value
    return None


def _fmt(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def normalize(answer: object, kind: AnswerType = "auto") -> str:
    """A canonical string: equal strings mean equal answers (the converse needs ``equivalent``)."""
    if isinstance(answer, bool):
        answer = str(answer)
    if isinstance(answer, (int, float)):
        value: float | None = float(answer)
    else:
        text = str(answer)
        if kind in ("latex", "text"):
            return " ".join(_strip_decorations(text).split())
        value = to_number(text, decimal_comma=kind != "latex")
        if value is None:
            return " ".join(_strip_decorations(text).split())
    if kind == "int" and value == int(value):
        return str(int(value))
    if kind == "mod1000" and value == int(value):
        return str(int(value) % 1000)
    return _fmt(value)
