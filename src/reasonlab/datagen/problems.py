"""Problems that verify themselves: a model proposes a problem with its answer; structure checks, a solver that
must agree, near-duplicate removal and a test-set contamination check decide what is kept.

    reasonlab datagen problems -n 100 --style gsm8k --out data/gen-gsm.jsonl                  # the default model
    reasonlab datagen problems -n 100 --style aime --proposer qwen2.5-coder-1.5b --solver qwen2.5-coder-0.5b \\
        --k 4 --m 3 --out data/gen-aime.jsonl
    reasonlab eval -d data/gen-gsm.jsonl                                                       # usable as a dataset

1. **Propose.** The proposer is asked for one new problem of the style (``gsm8k``: a grade-school word problem with a
   whole-number answer, shown one GSM8K *train* problem as an example; ``aime``: a competition problem whose answer
   is an integer 0-999), on a topic drawn from a list for diversity, written as ``Problem: ...`` then
   ``Solution: ...`` ending in ``\\boxed{answer}``. The solution may use Python (tool use): a ```python block in it
   is run in the sandbox and what it prints last must equal the boxed answer.
2. **Format checks.** A problem part of sensible length, exactly one boxed answer in the solution, an integer in the
   style's range; the problem must not give its own answer away (no ``\\boxed`` in it).
3. **Solve back.** The solver (the proposer's model unless another is named) samples ``k`` solutions of the problem
   alone; it is kept when at least ``m`` reach the proposer's answer. Difficulty = the solver's pass rate.
4. **Near duplicates** among the kept ones (word 5-gram Jaccard >= ``dedup``) and **contamination** against every
   bundled test set (the datagen guard's 10-gram overlap) are removed.

Every rejection is counted by reason in ``.stats.json``; kept problems are JSON lines with id, question, answer,
difficulty, the proposer's solution and provenance: the schema ``--dataset`` reads. Each proposal's outcome is
journaled as it finishes (``.rows.jsonl`` beside the output): the same command again resumes a stopped run.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from reasonlab.answers import Verifier
from reasonlab.answers.extract import boxed_answers
from reasonlab.answers.normalize import to_number
from reasonlab.datagen.contamination import Guard, ngrams
from reasonlab.datagen.pivotal import read_rows
from reasonlab.engines import Engine, SamplingParams
from reasonlab.errors import DataError
from reasonlab.sandbox import SandboxPool

TOPICS = ("shopping and prices", "travel, speed and time", "ages", "fractions of a quantity", "percentages and "
          "discounts", "areas and perimeters", "work rates", "saving and spending money", "recipes and scaling",
          "sports scores", "calendars and schedules", "counting arrangements", "divisibility and remainders",
          "sequences and patterns", "probability with coins or dice", "geometry of triangles and circles")
STYLES: dict[str, str] = {
    "gsm8k": ("Write one new grade-school math word problem about {topic}. It must take several steps to solve and "
              "have a single whole-number answer. Here is an example of the kind of problem wanted:\n\n{example}\n\n"
              "Write your new problem after 'Problem:', then its step-by-step solution after 'Solution:', ending "
              "with the final answer in \\boxed{{}}."),
    "aime": ("Write one new competition math problem (in the style of the AIME) about {topic}, whose answer is an "
             "integer from 0 to 999. Write the problem after 'Problem:', then a complete solution after 'Solution:' "
             "(you may use a ```python block to compute, its printed output must be the answer), ending with the "
             "final answer in \\boxed{{}}."),
}
RANGES = {"gsm8k": (0, 10**9), "aime": (0, 999)}
SOLVE = "{question}\nPlease reason step by step, and put your final answer within \\boxed{}."


class ProblemsConfig(BaseModel):
    """What is proposed and what it takes to be kept."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    proposals: int = Field(100, ge=1, description="problems proposed")
    style: Literal["gsm8k", "aime"] = Field("gsm8k", description="what kind of problem, and the answer range")
    k: int = Field(4, ge=1, description="solver samples per problem")
    m: int = Field(3, ge=1, description="of which at least this many must reach the proposer's answer")
    temperature: float = Field(0.9, ge=0.0, description="proposing (diversity)")
    solver_temperature: float = Field(0.7, ge=0.0, description="solving back")
    max_tokens: int = Field(768, ge=64, description="longest proposal (problem + solution)")
    solver_max_tokens: int = Field(768, ge=64, description="longest solve-back sample")
    min_chars: int = Field(60, ge=1, description="shortest problem text")
    max_chars: int = Field(1500, ge=1, description="longest problem text")
    dedup: float = Field(0.5, gt=0.0, le=1.0, description="word 5-gram Jaccard at which two problems are one")
    parallel: int = Field(8, ge=1, description="proposals worked on at once")
    seed: int = Field(0, description="topics, examples and sampling")


PROPOSAL = re.compile(r"Problem:\s*(.*?)\s*Solution:\s*(.*)", re.DOTALL | re.IGNORECASE)


def parse_proposal(text: str) -> tuple[str, str] | None:
    """(problem, solution) from a proposer's reply, or None without both parts.

    >>> parse_proposal("Problem: Ann has 3 pens. How many?\\nSolution: She has \\\\boxed{3}.")
    ('Ann has 3 pens. How many?', 'She has \\\\boxed{3}.')
    """
    m = PROPOSAL.search(text)
    if not m:
        return None
    problem = m.group(1).strip().strip("*").strip()
    return (problem, m.group(2).strip()) if problem else None


def check_format(problem: str, solution: str, cfg: ProblemsConfig) -> tuple[int | None, str | None]:
    """(the answer, None) when the proposal is well formed, else (None, why not)."""
    if not cfg.min_chars <= len(problem) <= cfg.max_chars:
        return None, "problem length"
    if "\\boxed" in problem:
        return None, "answer inside the problem"
    boxed = boxed_answers(solution)
    if len(set(boxed)) != 1:  # the same answer boxed twice is still one answer
        return None, "not exactly one boxed answer"
    value = to_number(boxed[0], True)
    lo, hi = RANGES[cfg.style]
    if value is None or not float(value).is_integer() or not lo <= value <= hi:
        return None, "answer not an integer in range"
    return int(value), None


def code_check(pool: SandboxPool, solution: str, answer: int) -> str | None:
    """None when the solution's ```python blocks (if any), run in the sandbox, print the answer last; else why."""
    blocks = re.findall(r"```python\s*\n(.*?)```", solution, re.DOTALL)
    if not blocks:
        return None
    with pool.sandbox() as sb:
        res = sb.run("\n".join(blocks))
    printed = res.stdout.strip().splitlines()[-1:] if res.ok else []
    value = to_number(printed[0], True) if printed else None
    return None if value is not None and abs(value - answer) < 1e-9 else "code disagrees with the answer"


def jaccard(a: set[Any], b: set[Any]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


def read_journal(path: Path, head: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """The proposals a stopped run finished, by index; refuses a journal written with other settings."""
    rows = read_rows(path)  # a last line torn by a kill is skipped: that proposal runs again
    if rows and rows[0] != head:
        raise DataError(f"{path} was written with other settings or models; delete it, or write to another --out")
    return {r["proposal"]: r for r in rows[1:]}


def generate_problems(proposer: Engine, out: str | Path, cfg: ProblemsConfig | None = None,
                      solver: Engine | None = None, progress: bool | None = None) -> dict[str, Any]:
    """Propose, check, solve back, dedupe and guard; write the kept problems to ``out`` and stats beside it."""
    import sys

    from rich.progress import Progress

    from reasonlab.data import load_problems

    cfg = cfg or ProblemsConfig()
    solver = solver or proposer
    examples = [p.question for p in load_problems("gsm8k-train", limit=500)] if cfg.style == "gsm8k" else [""]
    # every finished proposal goes to a journal beside the output as it finishes: a stopped run resumes there
    out = Path(out)
    journal = out.with_name(out.name + ".rows.jsonl")
    head = {"settings": {k: v for k, v in cfg.model_dump().items() if k not in ("proposals", "parallel")},
            "proposer": proposer.model, "solver": solver.model}
    done = read_journal(journal, head)
    todo = [i for i in range(cfg.proposals) if i not in done]
    verifier = Verifier()
    start = time.perf_counter()

    def one(i: int) -> dict[str, Any]:
        rng = random.Random(f"{cfg.seed}:{i}")
        topic = rng.choice(TOPICS)
        ask = STYLES[cfg.style].replace("{topic}", topic).replace("{example}", rng.choice(examples)).replace(
            "{{}}", "{}")
        gen = proposer.generate([proposer.render_chat([{"role": "user", "content": ask}])], SamplingParams(
            temperature=cfg.temperature, max_tokens=cfg.max_tokens, seed=cfg.seed * 100003 + i))[0]
        row: dict[str, Any] = {"proposal": i, "topic": topic, "tokens": gen.completion_tokens}
        parsed = parse_proposal(gen.text)
        if parsed is None:
            return {**row, "rejected": "no Problem/Solution parts"}
        problem, solution = parsed
        answer, why = check_format(problem, solution, cfg)
        if why is None:
            why = code_check(pool, solution, answer)  # type: ignore[arg-type]
        if why is not None:
            return {**row, "rejected": why}
        prompt = solver.render_chat([{"role": "user", "content": SOLVE.replace("{question}", problem)}])
        gens = solver.generate([prompt], SamplingParams(n=cfg.k, temperature=cfg.solver_temperature,
                                                        max_tokens=cfg.solver_max_tokens, seed=cfg.seed + i))
        hits = sum(1 for g in gens if verifier.equivalent(verifier.extract(g.text), str(answer), "number"))
        row.update(question=problem, answer=str(answer), solution=solution, difficulty=round(1 - hits / cfg.k, 3),
                   solver_pass_rate=round(hits / cfg.k, 3), tokens=row["tokens"] + sum(g.completion_tokens for g in gens))
        return row if hits >= cfg.m else {**row, "rejected": "solver disagrees"}

    show = sys.stderr.isatty() if progress is None else progress
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with journal.open("a", encoding="utf-8") as jf:
            if jf.tell() == 0:  # a new journal: what it was written with comes first
                jf.write(json.dumps(head) + "\n")
            with SandboxPool(size=1, max_size=2, timeout_s=10.0) as pool, ThreadPoolExecutor(cfg.parallel) as ex, \
                    Progress(disable=not show, transient=True) as bar:
                task = bar.add_task("proposing and solving back", total=cfg.proposals,
                                    completed=cfg.proposals - len(todo))
                futures = [ex.submit(one, i) for i in todo]
                try:
                    for fut in as_completed(futures):
                        row = fut.result()
                        done[row["proposal"]] = row
                        jf.write(json.dumps(row, ensure_ascii=False) + "\n")
                        jf.flush()
                        bar.advance(task)
                except BaseException:
                    for f in futures:  # what is journaled stays; nothing new starts
                        f.cancel()
                    raise
    finally:
        verifier.close()
    rows = [done[i] for i in range(cfg.proposals) if i in done]  # proposal order: the dedup below keeps the first
    why = Counter(r["rejected"] for r in rows if "rejected" in r)
    guard, kept = Guard(), []
    for r in (r for r in rows if "rejected" not in r):
        grams = ngrams(r["question"], 5)
        if any(jaccard(grams, k["_grams"]) >= cfg.dedup for k in kept):
            why["near duplicate"] += 1
        elif (hit := guard.hit(r["question"])) is not None:
            why[f"overlaps {hit} (test)"] += 1
        else:
            kept.append({**r, "_grams": grams})
    if not kept:
        raise DataError(f"no problems kept of {cfg.proposals} proposed: "
                        + ", ".join(f"{k} {v}" for k, v in why.most_common()))
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for n, r in enumerate(kept):
            fh.write(json.dumps({"id": f"gen-{cfg.style}-{r['proposal']}", "question": r["question"],
                                 "answer": r["answer"], "difficulty": r["difficulty"],
                                 "solver_pass_rate": r["solver_pass_rate"], "topic": r["topic"],
                                 "solution": r["solution"], "proposer": proposer.model, "solver": solver.model},
                                ensure_ascii=False) + "\n")
    tmp.replace(out)
    stats = {"proposed": cfg.proposals, "resumed": cfg.proposals - len(todo), "kept": len(kept),
             "kept_rate": round(len(kept) / cfg.proposals, 4), "rejected": dict(why.most_common()),
             "tokens": sum(r["tokens"] for r in rows),
             "mean_solver_pass_rate": round(sum(r["solver_pass_rate"] for r in kept) / len(kept), 3),
             "seconds": round(time.perf_counter() - start, 1),  # this call's, not the resumed rows'
             "proposer": proposer.describe(), "solver": solver.describe(), "config": cfg.model_dump()}
    out.with_name(out.name + ".stats.json").write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    return stats
