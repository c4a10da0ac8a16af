"""Variants of known problems with the numbers switched (GSM-Symbolic, Mirzadeh et al. 2024).

    reasonlab datagen variants -d gsm8k -n 50 --per-problem 5 --out data/gsm8k-variants.jsonl
    reasonlab eval -d data/gsm8k-variants.jsonl --out runs/variants
    reasonlab eval -d data/gsm8k-variants.originals.jsonl --out runs/originals     # the same problems, as written

Per problem (with a gold answer):

1. **Template.** Every number the question writes in digits becomes a named slot ``n1, n2, ...`` in order of
   appearance ("1,200", "3.50", "25%" included; years, clock times and ordinals such as "3rd" stay text). The template
   filled with the original numbers must give the original question back, character for character (it does by
   construction; the check guards the number formatting).
2. **Program.** The model sees the template and the original values and writes ``def solve(n1, n2, ...)`` in one
   ```python block, and may name slots that are fixed facts (``FIXED = ["n3"]``: 7 days in a week). Accepted only if
   ``solve`` on the original numbers, run in the locked-down sandbox, equals the gold answer; up to ``attempts``
   programs are sampled (the first greedy, then at ``temperature``).
3. **Variants.** New values for the free slots, drawn around the originals (integers stay integers of a similar size
   and roundness, decimals keep their places, percentages stay 5-95), answers computed by ``solve``; a variant is
   kept only when its answer has the original's kind (an integer stays an integer, a positive answer stays positive)
   and the numbers differ from the original's and from the other variants'.

Why the template is mechanical rather than written by the model: a small model rewriting the question drifts
from its wording, and the fidelity check would reject most problems for that alone; slotting the numbers keeps
the wording exact and leaves the model the part that needs understanding, the program.

Output: JSON lines in the schema ``--dataset`` reads (id, question, answer) plus provenance (source id, variant,
numbers), the accepted originals beside them (``.originals.jsonl``) for a paired comparison, and stats with every
rejection counted by reason (``.stats.json``).
"""

from __future__ import annotations

import ast
import json
import random
import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from reasonlab.answers.normalize import to_number
from reasonlab.data import Problem
from reasonlab.engines import Engine, SamplingParams
from reasonlab.errors import DataError
from reasonlab.sandbox import SandboxPool

# a number in digits: 1,200 | 3.50 | 25 — not part of a word ("3rd", "x2"), a clock time ("2:30") or a longer number
NUMBER = re.compile(r"(?<![\w.:,])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?![\w:]|,\d|\.\d)")
ASK = ("Here is a math word problem in which each number is written as a named variable:\n\n{template}\n\n"
       "In the original problem {values}.\n\nWrite a Python function `solve({args})` that computes the answer to the "
       "problem for any values of these variables. Use the variables, never the original numbers. If a variable is "
       "a fixed fact that cannot change (such as 7 days in a week or 60 minutes in an hour), also write "
       "FIXED = [\"name\", ...]. Answer with one ```python block.")


class VariantsConfig(BaseModel):
    """How programs are written and variants drawn."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    per_problem: int = Field(5, ge=1, description="variants kept per accepted problem")
    attempts: int = Field(3, ge=1, description="programs sampled per problem until one reproduces the gold answer")
    temperature: float = Field(0.7, ge=0.0, description="sampling the programs after the first, greedy one")
    max_tokens: int = Field(512, ge=32, description="longest program reply")
    draws: int = Field(40, ge=1, description="candidate number sets tried per problem to find per_problem variants")
    spread: float = Field(0.5, gt=0.0, lt=1.0, description="new values lie within x*(1-spread) .. x*(1+2*spread)")
    min_slots: int = Field(1, ge=1, description="problems with fewer free numbers than this are skipped")
    parallel: int = Field(8, ge=1, description="problems worked on at once (fills the batched engine)")
    seed: int = Field(0, description="which numbers are drawn, and the program samples")


@dataclass(frozen=True)
class Slot:
    """One number of the question: where it is, its value, how it is written."""

    name: str
    start: int
    end: int
    value: float
    decimals: int  # digits after the point as written
    commas: bool  # written with thousands separators
    percent: bool  # followed by %

    def write(self, value: float) -> str:
        text = f"{value:,.{self.decimals}f}" if self.commas else f"{value:.{self.decimals}f}"
        return text


def slots_of(question: str) -> list[Slot]:
    """The numbers a question writes in digits, as slots n1, n2, ... (years 1900-2100 and 0/1 stay text: a year
    or a "1 more" is rarely a quantity to vary).

    >>> [(s.name, s.value, s.decimals, s.commas) for s in slots_of("Sam has 1,200 coins and $3.50; in 2020, 3rd.")]
    [('n1', 1200.0, 0, True), ('n2', 3.5, 2, False)]
    """
    out: list[Slot] = []
    for m in NUMBER.finditer(question):
        whole, frac = m.group(1), m.group(2) or ""
        value = float(whole.replace(",", "") + frac)
        if (not frac and 1900 <= value <= 2100 and len(whole) == 4) or value in (0.0, 1.0):
            continue
        percent = question[m.end(): m.end() + 1] == "%" or question[m.end(): m.end() + 8].lower() == " percent"
        out.append(Slot(f"n{len(out) + 1}", m.start(), m.end(), value, len(frac) - 1 if frac else 0, "," in whole,
                        percent))
    return out


def render(question: str, slots: list[Slot], values: dict[str, float] | None = None) -> str:
    """The question with each slot written as ``{name}`` (values None) or as the given value."""
    out, last = [], 0
    for s in slots:
        out.append(question[last: s.start])
        out.append("{" + s.name + "}" if values is None else s.write(values.get(s.name, s.value)))
        last = s.end
    return "".join(out) + question[last:]


def draw(slot: Slot, rng: random.Random, spread: float) -> float:
    """A new value for ``slot``, like the original in kind: integers stay integers with the same roundness
    (a multiple of 10 stays one), decimals keep their places, percentages stay 5-95 in steps of 5."""
    x = slot.value
    if slot.percent and slot.decimals == 0 and x <= 100:
        return float(rng.randrange(5, 100, 5))
    if slot.decimals:
        lo, hi = x * (1 - spread), x * (1 + 2 * spread)
        step = 10 ** -slot.decimals
        return round(round(rng.uniform(lo, hi) / step) * step, slot.decimals)
    step = next((k for k in (1000, 100, 50, 10, 5) if x >= 2 * k and x % k == 0), 1)
    lo = max(2, int(x * (1 - spread)) // step * step or step)
    hi = max(lo + step, int(x * (1 + 2 * spread)) // step * step)
    return float(rng.randrange(lo, hi + 1, step))


def parse_program(reply: str) -> str | None:
    """The first ```python block of a reply (or the reply itself when it is bare code defining solve)."""
    m = re.search(r"```(?:python|py)?\s*\n(.*?)```", reply, re.DOTALL)
    code = m.group(1) if m else (reply if "def solve" in reply else None)
    return code if code and "def solve" in code else None


def answer_kind(x: float) -> tuple[bool, int]:
    """(integer?, sign): what a variant's answer must keep from the original's."""
    return abs(x - round(x)) < 1e-9, (x > 0) - (x < 0)


DRIVER = """
import json as _json, math as _math
def _num(v):
    try:
        f = float(v)
    except Exception:
        return None
    return f if _math.isfinite(f) else None
_res = []
for _v in _CASES:
    try:
        _res.append([_num(solve(**_v)), None])
    except Exception as _e:
        _res.append([None, type(_e).__name__])
_fixed = FIXED if "FIXED" in globals() and isinstance(FIXED, (list, tuple)) else []
print(_json.dumps({"results": _res, "fixed": [str(x) for x in _fixed]}))
"""


def run_program(pool: SandboxPool, code: str, cases: list[dict[str, float]]) -> tuple[dict[str, Any] | None, str]:
    """Run ``solve`` on each case in the sandbox: ({results: [[value, error]...], fixed: [...]}, "") or (None,
    why the program failed as a whole)."""
    try:
        ast.parse(code)
    except SyntaxError:
        return None, "syntax error"
    with pool.sandbox() as sb:  # a fresh namespace: the pool resets a worker when it comes back
        res = sb.run(code + "\n_CASES = " + json.dumps(cases) + "\n" + DRIVER)
    if not res.ok:
        return None, "timeout" if res.timed_out else "error"
    try:
        return json.loads(res.stdout.strip().splitlines()[-1]), ""
    except (ValueError, IndexError):
        return None, "no result"


Made = tuple[dict[str, Any] | None, list[dict[str, Any]], str | None]


def make_variants(problem: Problem, engine: Engine, pool: SandboxPool, cfg: VariantsConfig) -> Made:
    """(the accepted original's row, its variant rows, None) for one problem, or (None, [], why it was
    rejected)."""
    gold = to_number(problem.answer, True)
    if gold is None:
        return None, [], "gold answer not a number"
    slots = slots_of(problem.question)
    template = render(problem.question, slots)
    original = {s.name: s.value for s in slots}
    if render(problem.question, slots, original) != problem.question:
        return None, [], "template does not reproduce the question"
    if len(slots) < cfg.min_slots:
        return None, [], "no numbers to vary"
    values = ", ".join(f"{s.name} = {s.write(s.value)}" for s in slots)
    ask = ASK.replace("{template}", template).replace("{values}", values).replace(
        "{args}", ", ".join(s.name for s in slots))
    prompt = engine.render_chat([{"role": "user", "content": ask}])
    program, fixed, failure = None, [], "no program"
    for attempt in range(cfg.attempts):
        params = SamplingParams(temperature=0.0 if attempt == 0 else cfg.temperature, max_tokens=cfg.max_tokens,
                                seed=cfg.seed + attempt)
        reply = engine.generate([prompt], params)[0].text
        code = parse_program(reply)
        if code is None:
            failure = "no program"
            continue
        out, err = run_program(pool, code, [original])
        if out is None:  # the program failed as a whole
            failure = f"program {err}"
            continue
        value, raised = out["results"][0]
        if value is None:  # an exception inside solve, or solve returning something not a number
            failure = f"program raised {raised}" if raised else "program returned no number"
            continue
        if abs(value - gold) > 1e-6 * max(1.0, abs(gold)):
            failure = "wrong on the original numbers"
            continue
        program, fixed = code, [f for f in out["fixed"] if f in original]
        break
    if program is None:
        return None, [], failure
    free = [s for s in slots if s.name not in fixed]
    if len(free) < cfg.min_slots:
        return None, [], "every number fixed"
    rng = random.Random(f"{cfg.seed}:{problem.id}")
    cases = []
    for _ in range(cfg.draws):
        case = dict(original)
        for s in free:
            case[s.name] = draw(s, rng, cfg.spread)
        cases.append(case)
    out, err = run_program(pool, program, cases)
    kind = answer_kind(gold)
    rows, seen = [], {tuple(sorted(original.items()))}
    for case, (value, _) in zip(cases, (out or {"results": []})["results"]):
        key = tuple(sorted(case.items()))
        if value is None or key in seen or answer_kind(value) != kind:
            continue
        seen.add(key)
        answer = str(int(round(value))) if kind[0] else f"{value:.6g}"
        rows.append({"id": f"{problem.id}-v{len(rows) + 1}", "question": render(problem.question, slots, case),
                     "answer": answer, "source_id": problem.id, "variant": len(rows) + 1,
                     "numbers": {k: v for k, v in case.items() if k in {s.name for s in free}}})
        if len(rows) == cfg.per_problem:
            break
    if len(rows) < cfg.per_problem:
        return None, [], "too few variants of the same kind"
    base = {"id": problem.id, "question": problem.question, "answer": problem.answer, "source_id": problem.id,
            "variant": 0, "program": program, "fixed": fixed, "attempt": attempt + 1}
    return base, rows, None


def variants(problems: list[Problem], engine: Engine, out: str | Path, cfg: VariantsConfig | None = None,
             progress: bool | None = None) -> dict[str, Any]:
    """Write variants of ``problems`` to ``out`` (and ``.originals.jsonl``, ``.stats.json`` beside it)."""
    import sys

    from rich.progress import Progress

    cfg = cfg or VariantsConfig()
    why: Counter[str] = Counter()
    results: dict[str, Made] = {}
    start = time.perf_counter()
    show = sys.stderr.isatty() if progress is None else progress
    with SandboxPool(size=min(cfg.parallel, 2), max_size=2, timeout_s=10.0) as pool, \
            Progress(disable=not show, transient=True) as bar, ThreadPoolExecutor(cfg.parallel) as ex:
        task = bar.add_task("writing programs and variants", total=len(problems))
        futures = {p.id: ex.submit(make_variants, p, engine, pool, cfg) for p in problems}
        for pid, fut in futures.items():
            results[pid] = fut.result()
            if results[pid][2] is not None:
                why[results[pid][2]] += 1
            bar.advance(task)
    originals = [results[p.id][0] for p in problems if results[p.id][0] is not None]
    rows = [r for p in problems for r in results[p.id][1]]
    if not rows:
        raise DataError(f"no variants from {len(problems)} problems: "
                        + ", ".join(f"{k} {v}" for k, v in why.most_common()))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for path, items in ((out, rows), (out.with_name(out.stem + ".originals.jsonl"), originals)):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in items), encoding="utf-8")
        tmp.replace(path)
    stats = {"problems": len(problems), "accepted": len(originals),
             "acceptance_rate": round(len(originals) / len(problems), 4), "variants": len(rows),
             "rejected": dict(why.most_common()),
             "accepted_at_attempt": dict(Counter(o["attempt"] for o in originals)),
             "seconds": round(time.perf_counter() - start, 1), "engine": engine.describe(),
             "config": cfg.model_dump()}
    out.with_name(out.name + ".stats.json").write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    return stats
