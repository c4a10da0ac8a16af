"""Pivotal-token search (Phi-4 technical report, section 4.3; codelion/pts is the open implementation): the tokens
of a sampled solution where the chance of ending right jumps, and single-token DPO pairs on them.

    reasonlab datagen pivotal runs/star/sample --out runs/pivotal -n 30                      # sequential (default)
    reasonlab datagen pivotal runs/star/sample --out runs/pivotal-n10 --estimator fixed \\
        --problems-from runs/pivotal                                                        # fixed n on the same ones

p(i) = p(success | prompt + trace[:i]): the share of sampled continuations of that token prefix the verifier grades
correct. Continuations are raw, by token ids (the ids the model sampled, never re-tokenised), so the engine's prefix
cache serves the shared prompt and trace head. p(0) is the problem's own pass rate; p(L), the whole trace, is its
verdict (1 or 0). A problem is searched only when p(0) lies in ``p_range`` — too easy or too hard, no token decides.

The search (Phi-4's): a span [a, b) of the trace is split at its middle while |p(b) - p(a)| >= threshold, down to one
token: that token is pivotal, with p before = p(a) and after = p(b). Spans of one depth are estimated together, and
problems run concurrently, so the batched engine stays full.

The estimator: ``fixed`` draws ``samples`` continuations per prefix, as PTS does. ``sequential`` draws ``round`` at a
time and stops once the Wilson interval of the estimate excludes every decision point that the estimate is compared
with — p(a) +- threshold and p(b) +- threshold for a middle, the range ends for p(0), p(after) -+ threshold for an
alternative — so a prefix whose side is clear after four samples costs four, not ten; ``samples`` caps it. Estimates
are cached by (problem, prefix ids).

Pairs (what TRL's DPO trains, one token on each side): for a pivot that raises p, chosen = the pivotal token and
rejected = the most likely alternative (top-k log-probs at that position) whose p is lower by >= threshold than
p(after); for one that lowers p, rejected = the pivotal token and chosen = the most likely alternative higher by >=
threshold. Rows carry ``prompt_ids`` / ``chosen_ids`` / ``rejected_ids`` (the prefix exactly as the model read it, one
id each side) beside the text for reading: ``reasonlab train dpo`` trains on the ids as they are, so no end-of-
sequence token is appended and no one-token completion merges with the prompt's last token.

The output directory (resumable: finished problems are skipped; another config there is refused):

    config.json     the config, the source run and the engine
    roots.jsonl     per drawn problem: p(0) with its samples, qualified or not
    searched.jsonl  per searched problem: the trace, the pivots (prefix ids, token, p before/after, the pair), cost
    dpo.jsonl       the pairs, for ``reasonlab train dpo --data``
    summary.json    problems drawn / qualified, pivots, pairs, samples and model tokens (per pivot), wall time
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from reasonlab.answers import Verifier
from reasonlab.engines import Engine, SamplingParams
from reasonlab.errors import ConfigError, DataError
from reasonlab.runs import ProblemRecord, TraceRecord, read_run


class PivotalConfig(BaseModel):
    """How pivotal tokens are searched and how p(success | prefix) is estimated."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: float = Field(0.2, gt=0.0, lt=1.0, description="a span is split while its ends' p differ by this much; "
                                                              "a pair's sides must differ by it too")
    p_range: tuple[float, float] = Field((0.2, 0.8), description="search only problems whose own p(0) is in range")
    estimator: Literal["sequential", "fixed"] = Field("sequential", description="fixed: `samples` per prefix; "
                                                      "sequential: stop once the estimate's side is settled")
    samples: int = Field(10, ge=1, description="fixed: continuations per prefix; sequential: the most per prefix")
    round: int = Field(2, ge=1, description="sequential: continuations drawn per prefix per round")
    risk: float = Field(0.1, gt=0.0, lt=1.0, description="sequential: stop a prefix once the chance that drawing on "
                                                         "to `samples` would flip one of its comparisons is below this")
    temperature: float = Field(0.7, ge=0.0, description="sampling the continuations (the run's own setting, usually)")
    top_p: float = Field(0.8, gt=0.0, le=1.0)
    max_tokens: int = Field(512, ge=1, description="longest continuation; one that ends without an answer is wrong")
    alternatives: int = Field(4, ge=1, description="top-k alternatives tried, most likely first, for a pivot's pair")
    traces_per_problem: int = Field(1, ge=1, description="traces searched per qualified problem")
    problems: int | None = Field(None, ge=1, description="stop drawing once this many problems qualified")
    ids: tuple[str, ...] | None = Field(None, description="search exactly these problems (range not applied)")
    reuse_samples: bool = Field(True, description="count the run's own traces as the first samples of p(0) when the "
                                                  "run sampled them plainly with these settings")
    parallel: int = Field(8, ge=1, description="problems searched at once (fills the batched engine)")
    seed: int = Field(0, description="continuation seeds and which traces are searched")

    @model_validator(mode="after")
    def _range(self) -> PivotalConfig:
        lo, hi = self.p_range
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"p_range must be 0 <= low <= high <= 1, got {self.p_range}")
        return self


# --- the estimator ------------------------------------------------------------------------------------------------

EPS = 1e-9  # estimates are fractions k/n and decision points sums of them: compare with a tolerance


def flip_chance(successes: int, n: int, cap: int, points: tuple[float, ...], prior: float = 0.5) -> float:
    """The chance that drawing on to ``cap`` samples would move the estimate to the other side of any decision
    point than ``successes / n`` is on now: stochastic curtailment, with the beta-binomial predictive of the
    draws left (Jeffreys prior Beta(1/2, 1/2)). 0 once nothing left to draw could move it.

    >>> round(flip_chance(2, 2, 10, (0.8,)), 2), round(flip_chance(4, 4, 10, (0.8,)), 2), flip_chance(8, 8, 10, (0.8,))
    (0.21, 0.06, 0.0)
    """
    left = cap - n
    if n == 0:
        return 1.0
    if left <= 0 or not points:
        return 0.0

    def log_beta(x: float, y: float) -> float:
        return math.lgamma(x) + math.lgamma(y) - math.lgamma(x + y)

    f = n - successes
    now = [successes / n >= d - EPS for d in points]
    chance = 0.0
    for k in range(left + 1):  # k more successes among the draws left
        final = (successes + k) / cap
        if any((final >= d - EPS) != side for d, side in zip(points, now)):
            log_choose = math.lgamma(left + 1) - math.lgamma(k + 1) - math.lgamma(left - k + 1)
            chance += math.exp(log_choose + log_beta(successes + k + prior, f + left - k + prior)
                               - log_beta(successes + prior, f + prior))
    return chance


@dataclass
class Estimate:
    successes: int = 0
    n: int = 0

    @property
    def p(self) -> float:
        return self.successes / self.n if self.n else 0.0


@dataclass
class Cost:
    """What the search spent: continuations drawn, tokens generated and prefilled, prefixes estimated."""

    samples: int = 0
    completion_tokens: int = 0
    prefilled_tokens: int = 0
    prefixes: int = 0
    calls: int = 0

    def add(self, other: Cost) -> None:
        for k in vars(self):
            setattr(self, k, getattr(self, k) + getattr(other, k))

    @property
    def model_tokens(self) -> int:
        return self.completion_tokens + self.prefilled_tokens


@dataclass
class Problem:
    """One problem of the source run, as the search needs it."""

    id: str
    gold: Any
    prompt_ids: list[int]
    record: ProblemRecord
    cache: dict[tuple[int, ...], Estimate] = field(default_factory=dict)  # (prefix ids) -> estimate
    cost: Cost = field(default_factory=Cost)


class Estimator:
    """p(success | prompt + trace prefix) by sampling continuations on ``engine`` and grading them."""

    def __init__(self, engine: Engine, verifier: Verifier, cfg: PivotalConfig, answer_type: Any = None,
                 on_progress: Callable[[str, int], None] | None = None) -> None:
        self.engine, self.verifier, self.cfg, self.answer_type = engine, verifier, cfg, answer_type
        self.on_progress = on_progress or (lambda what, k: None)

    def estimate(self, problem: Problem, prefixes: list[tuple[list[int], tuple[float, ...]]]) -> list[Estimate]:
        """Estimate p for each (trace prefix ids, decision points) of one problem, all in one batch per round."""
        cfg = self.cfg
        ests = []
        for ids, _ in prefixes:
            key = tuple(ids)
            if key not in problem.cache:
                problem.cache[key] = Estimate()
                problem.cost.prefixes += 1
                self.on_progress("prefixes", 1)
            ests.append(problem.cache[key])

        def wanted(i: int) -> int:  # continuations still to draw for prefix i this round
            e, points = ests[i], prefixes[i][1]
            if cfg.estimator == "fixed":
                return max(0, cfg.samples - e.n)
            if e.n and flip_chance(e.successes, e.n, cfg.samples, points) < cfg.risk:
                return 0
            return min(cfg.round, cfg.samples - e.n)

        rnd = 0
        while todo := [(i, k) for i in range(len(prefixes)) if (k := wanted(i)) > 0]:
            # one generate call per round and sample count: the batched engine decodes all of them together
            for k in sorted({k for _, k in todo}):
                group = [i for i, kk in todo if kk == k]
                seed = zlib.crc32(f"{cfg.seed}:{problem.id}:{rnd}:{ests[group[0]].n}".encode()) & 0x3FFFFFFF
                params = SamplingParams(n=k, temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=cfg.max_tokens,
                                        seed=seed)
                gens = self.engine.generate([prefixes[i][0] for i in group], params)
                problem.cost.calls += 1
                heads = [self.engine.detokenize(prefixes[i][0][len(problem.prompt_ids):]) for i in group]
                for g in gens:
                    if g.finish_reason == "error":
                        raise DataError(f"problem {problem.id}: the engine failed a continuation: {g.error}")
                    e = ests[group[g.index]]
                    ok = self.verifier.grade(heads[g.index] + g.text, problem.gold, self.answer_type).correct
                    e.successes += int(ok)
                    e.n += 1
                    problem.cost.samples += 1
                    problem.cost.completion_tokens += g.completion_tokens
                    problem.cost.prefilled_tokens += g.prefilled_tokens
                self.on_progress("samples", len(gens))
            rnd += 1
        return ests

    def alternatives(self, problem: Problem, ids: list[int], exclude: int) -> list[tuple[int, str, float]]:
        """The most likely next tokens after ``ids`` (id, text, log p), best first, without ``exclude`` and
        without tokens that spell nothing (end of sequence, template markers)."""
        g = self.engine.generate([ids], SamplingParams(max_tokens=1, temperature=0.0,
                                                        logprobs=self.cfg.alternatives + 2))[0]
        problem.cost.calls += 1
        problem.cost.prefilled_tokens += g.prefilled_tokens
        top = (g.top_logprobs or [[]])[0]
        out = [(tid, text, lp) for tid, text, lp in top if tid != exclude and tid >= 0 and text != ""]
        return out[: self.cfg.alternatives]


# --- the search ---------------------------------------------------------------------------------------------------

@dataclass
class Pivot:
    position: int  # index in the trace's token ids
    token: int
    text: str
    p_before: float
    p_after: float
    pair: dict[str, Any] | None = None  # chosen/rejected ids and texts, the alternative's p


def search_trace(est: Estimator, problem: Problem, trace_ids: list[int], p_end: float,
                 injected: list[tuple[int, int]] = ()) -> tuple[float, list[Pivot]]:
    """Bisect ``trace_ids`` (the trace after the prompt) for pivotal tokens; (p(0), pivots by position).
    Tokens inside ``injected`` spans (text a policy added, not sampled) are not pivots."""
    thr, base = est.cfg.threshold, problem.prompt_ids
    p: dict[int, float] = {len(trace_ids): p_end}
    root = problem.cache.get(tuple(base))
    p[0] = root.p if root is not None and root.n else est.estimate(problem, [(base, est.cfg.p_range)])[0].p
    spans = [(0, len(trace_ids))] if abs(p_end - p[0]) >= thr - EPS else []
    pivots: list[Pivot] = []
    while spans:  # breadth first: the middles of one depth are estimated in one batch
        leaves = [(a, b) for a, b in spans if b - a == 1]
        for a, _ in leaves:
            if not any(s <= a < e for s, e in injected):
                pivots.append(Pivot(a, trace_ids[a], est.engine.detokenize([trace_ids[a]]), p[a], p[a + 1]))
        splits = [(a, b) for a, b in spans if b - a > 1]
        mids = [(a + b) // 2 for a, b in splits]
        points = [tuple(x for x in (p[a] - thr, p[a] + thr, p[b] - thr, p[b] + thr) if 0.0 < x <= 1.0)
                  for a, b in splits]
        for m, e in zip(mids, est.estimate(problem, [(base + trace_ids[:m], pts) for m, pts in zip(mids, points)])):
            p[m] = e.p
        spans = [s for (a, b), m in zip(splits, mids) for s in ((a, m), (m, b)) 
                 if abs(p[s[1]] - p[s[0]]) >= thr - EPS]
    pivots.sort(key=lambda v: v.position)
    for v in pivots:
        v.pair = pair_for(est, problem, base + trace_ids[: v.position], v)
    return p[0], pivots


def pair_for(est: Estimator, problem: Problem, prefix: list[int], pivot: Pivot) -> dict[str, Any] | None:
    """The DPO pair at a pivot: the pivotal token against the most likely alternative on the other side of
    p(after) by at least the threshold; None when no alternative among the top k is."""
    thr = est.cfg.threshold
    raises = pivot.p_after > pivot.p_before
    bound = pivot.p_after - thr if raises else pivot.p_after + thr
    for tid, text, lp in est.alternatives(problem, prefix, exclude=pivot.token):
        e = est.estimate(problem, [(prefix + [tid], (bound,) if 0.0 < bound <= 1.0 else ())])[0]
        if (e.p <= bound + EPS) if raises else (e.p >= bound - EPS):
            good, bad = ((pivot.token, pivot.text, pivot.p_after), (tid, text, e.p)) if raises else \
                ((tid, text, e.p), (pivot.token, pivot.text, pivot.p_after))
            return {"chosen_id": good[0], "chosen": good[1], "p_chosen": round(good[2], 4),
                    "rejected_id": bad[0], "rejected": bad[1], "p_rejected": round(bad[2], 4),
                    "alternative_logprob": round(lp, 4)}
    return None


# --- over a run ---------------------------------------------------------------------------------------------------

class _Out:
    """The output directory: append-only JSON lines, config checked on resume."""

    def __init__(self, path: Path, config: dict[str, Any], force_new: bool) -> None:
        self.path, self.lock = path, threading.Lock()
        path.mkdir(parents=True, exist_ok=True)
        cfg_file = path / "config.json"
        if force_new:
            for name in ("roots.jsonl", "searched.jsonl", "dpo.jsonl", "summary.json"):
                (path / name).unlink(missing_ok=True)
        elif cfg_file.exists():
            old = json.loads(cfg_file.read_text(encoding="utf-8"))
            if old.get("identity") != config["identity"]:
                raise ConfigError(f"{path} holds a pivotal search with another config or source: use another "
                                  f"--out, or --force-new to start over there")
        cfg_file.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")

    def read(self, name: str) -> dict[str, dict[str, Any]]:
        f = self.path / name
        rows = [json.loads(line) for line in f.read_text(encoding="utf-8").splitlines() if line.strip()] \
            if f.exists() else []
        return {r["id"]: r for r in rows}

    def append(self, name: str, row: dict[str, Any]) -> None:
        with self.lock, (self.path / name).open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            fh.flush()


def _trace_ids(rec: ProblemRecord, trace: TraceRecord) -> tuple[list[int], list[int]] | None:
    prompt, ids = rec.trace_prompt_ids(trace), trace.token_ids
    return (list(prompt), list(ids)) if prompt and ids else None


def _pick_traces(rec: ProblemRecord, cfg: PivotalConfig) -> list[TraceRecord]:
    """Finished traces with ids, a right and a wrong one alternating (seeded), up to traces_per_problem."""
    ok = [t for t in rec.traces if t.finish_reason in ("stop", "length") and t.token_ids and
          _trace_ids(rec, t) is not None]
    rng = random.Random(f"{cfg.seed}:{rec.id}")
    right, wrong = [t for t in ok if t.correct], [t for t in ok if not t.correct]
    rng.shuffle(right)
    rng.shuffle(wrong)
    order = [t for pair in zip(right, wrong) for t in pair] + right[len(wrong):] + wrong[len(right):]
    return order[: cfg.traces_per_problem]


def pivotal_search(run_dir: str | Path, out: str | Path, engine: Engine, cfg: PivotalConfig | None = None,
                   limit: int | None = None, progress: bool | None = None, force_new: bool = False) -> dict[str, Any]:
    """Search the traces of run ``run_dir`` for pivotal tokens on ``engine`` (the model the run sampled, or the
    searched model); write ``out`` (see the module doc); returns the summary. ``limit``: draw at most that many
    problems."""
    import sys

    from rich.progress import Progress

    cfg = cfg or PivotalConfig()
    run = read_run(run_dir)
    run_cfg = run.config.get("config") or {}
    answer_type = (run_cfg.get("dataset") or {}).get("answer_type")
    records = [r for r in run.records if r.prompt_token_ids or any(t.prompt_token_ids for t in r.traces)]
    if not records:
        raise DataError(f"{run_dir}: no problem kept its prompt's token ids (made by an engine without a vocabulary, "
                        f"or before ids were recorded): pivotal search continues by ids")
    if cfg.ids is not None:
        wanted = set(cfg.ids)
        records = [r for r in records if r.id in wanted]
        missing = wanted - {r.id for r in records}
        if missing:
            raise DataError(f"{run_dir} has no problem {sorted(missing)[0]} (of {len(missing)} asked for)")
    records = records[:limit] if limit else records
    ident = {"config": cfg.model_dump(mode="json", exclude={"parallel", "problems"}),
             "source": str(Path(run_dir).resolve()), "engine": engine.identity()}
    store = _Out(Path(out), {"identity": ident, "engine": engine.describe(), "command": " ".join(sys.argv)},
                 force_new)
    roots, searched = store.read("roots.jsonl"), store.read("searched.jsonl")
    verifier = Verifier()
    counts = {"samples": 0, "prefixes": 0, "pivots": 0}
    show = sys.stderr.isatty() if progress is None else progress
    start = time.perf_counter()
    try:
        with Progress(disable=not show, transient=True) as bar:
            task = bar.add_task("pivotal search", total=None)

            def tick(what: str, k: int) -> None:
                counts[what] += k
                bar.update(task, description=f"problems {len(roots)} drawn / {len(searched)} searched · "
                                             f"prefixes {counts['prefixes']} · samples {counts['samples']} · "
                                             f"pivots {counts['pivots']}")

            est = Estimator(engine, verifier, cfg, answer_type, tick)
            reuse = cfg.reuse_samples and _plain_samples(run_cfg, cfg)
            problems = {r.id: _problem(r, reuse) for r in records}
            # 1. draw problems in order, p(0) in batches of `parallel`, until enough qualify (deterministic by order)
            qualified = [i for i, r in roots.items() if r["qualified"]]
            pending = iter([r for r in records if r.id not in roots])
            with ThreadPoolExecutor(cfg.parallel) as pool:
                while cfg.problems is None or len(qualified) < cfg.problems:
                    batch = [next(pending, None) for _ in range(cfg.parallel)]
                    batch = [r for r in batch if r is not None]
                    if not batch:
                        break
                    for r, e in zip(batch, pool.map(lambda r: _root(est, problems[r.id]), batch)):
                        q = cfg.ids is not None or cfg.p_range[0] <= e.p <= cfg.p_range[1]
                        if q and cfg.problems is not None and len(qualified) >= cfg.problems:
                            break  # enough qualified already: later problems of the batch count as not drawn
                        row = {"id": r.id, "p": round(e.p, 4), "successes": e.successes, "n": e.n, "qualified": q,
                               **_cost_row(problems[r.id].cost)}
                        roots[r.id] = row
                        store.append("roots.jsonl", row)
                        qualified += [r.id] if q else []
                        tick("samples", 0)
                # 2. search the qualified problems' traces, `parallel` problems at once
                todo = [problems[i] for i in qualified if i not in searched]
                for row in pool.map(lambda pr: _search(est, pr, cfg, roots[pr.id]), todo):
                    searched[row["id"]] = row
                    store.append("searched.jsonl", row)
                    tick("pivots", len(row["pivots"]))
    finally:
        verifier.close()
    summary = _summarize(roots, searched, cfg, time.perf_counter() - start)
    _write_pairs(Path(out), searched, engine)
    (Path(out) / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def _plain_samples(run_cfg: dict[str, Any], cfg: PivotalConfig) -> bool:
    """Are the run's traces draws from p(0) as this search samples it: plain traces (a vote over single traces, or
    single), at the same temperature, top-p and length cap?"""
    sampling, options = run_cfg.get("sampling") or {}, run_cfg.get("strategy_options") or {}
    plain = run_cfg.get("strategy") in ("vote", "single") and options.get("policy", "single") == "single" \
        and options.get("stop", "none") == "none"
    return plain and sampling.get("temperature") == cfg.temperature and sampling.get("top_p", 1.0) == cfg.top_p \
        and sampling.get("max_tokens") == cfg.max_tokens and sampling.get("top_k", -1) == -1 \
        and sampling.get("min_p", 0.0) == 0.0


def _problem(rec: ProblemRecord, reuse: bool) -> Problem:
    prompt = list(rec.prompt_token_ids or next(t.prompt_token_ids for t in rec.traces if t.prompt_token_ids))
    problem = Problem(rec.id, rec.gold, prompt, rec)
    if reuse:  # the run's finished traces of this prompt are samples of p(0) already drawn
        drawn = [t for t in rec.traces if t.finish_reason in ("stop", "length") and rec.trace_prompt_ids(t) == prompt]
        if drawn:
            problem.cache[tuple(prompt)] = Estimate(sum(1 for t in drawn if t.correct), len(drawn))
    return problem


def _root(est: Estimator, problem: Problem) -> Estimate:
    return est.estimate(problem, [(problem.prompt_ids, est.cfg.p_range)])[0]


def _cost_row(c: Cost) -> dict[str, int]:
    return {"samples": c.samples, "completion_tokens": c.completion_tokens, "prefilled_tokens": c.prefilled_tokens,
            "prefixes": c.prefixes}


def _search(est: Estimator, problem: Problem, cfg: PivotalConfig, root: dict[str, Any]) -> dict[str, Any]:
    """Search one problem's traces; its row for searched.jsonl (cost: the search's, the root's excluded)."""
    start = time.perf_counter()
    before = Cost()
    before.add(problem.cost)
    problem.cache.setdefault(tuple(problem.prompt_ids), Estimate(root["successes"], root["n"]))
    traces = []
    for t in _pick_traces(problem.record, cfg):
        prompt_ids, ids = _trace_ids(problem.record, t)  # type: ignore[misc]
        if prompt_ids != problem.prompt_ids:  # a trace of another prompt variant: its own root
            sub = Problem(problem.id, problem.gold, prompt_ids, problem.record, cost=problem.cost)
            p0, pivots = search_trace(est, sub, ids, 1.0 if t.correct else 0.0, t.injected)
        else:
            p0, pivots = search_trace(est, problem, ids, 1.0 if t.correct else 0.0, t.injected)
        traces.append({"sample": t.sample, "correct": t.correct, "tokens": len(ids), "p0": round(p0, 4),
                       "prompt_ids": prompt_ids, "pivots": [
                           {"position": v.position, "token": v.token, "text": v.text,
                            "p_before": round(v.p_before, 4), "p_after": round(v.p_after, 4),
                            "prefix_ids": prompt_ids + ids[: v.position], "pair": v.pair} for v in pivots]})
    spent = problem.cost
    cost = {k: getattr(spent, k) - getattr(before, k) for k in ("samples", "completion_tokens", "prefilled_tokens",
                                                                "prefixes")}
    return {"id": problem.id, "traces": traces, "pivots": [v for t in traces for v in t["pivots"]], **cost,
            "seconds": round(time.perf_counter() - start, 2)}


def _summarize(roots: dict[str, Any], searched: dict[str, Any], cfg: PivotalConfig, seconds: float) -> dict[str, Any]:
    def total(rows: Iterator[dict[str, Any]] | list[dict[str, Any]], key: str) -> int:
        return sum(r.get(key, 0) for r in rows)

    pivots = [v for r in searched.values() for v in r["pivots"]]
    search_tokens = total(searched.values(), "completion_tokens") + total(searched.values(), "prefilled_tokens")
    root_tokens = total(roots.values(), "completion_tokens") + total(roots.values(), "prefilled_tokens")
    all_tokens = search_tokens + sum(roots[i]["completion_tokens"] + roots[i]["prefilled_tokens"] for i in searched)
    n = len(pivots)
    return {
        "estimator": cfg.estimator, "samples_cap": cfg.samples, "threshold": cfg.threshold,
        "problems_drawn": len(roots), "problems_qualified": sum(1 for r in roots.values() if r["qualified"]),
        "problems_searched": len(searched), "pivots": n,
        "raising": sum(1 for v in pivots if v["p_after"] > v["p_before"]), "pairs": sum(1 for v in pivots if v["pair"]),
        "samples": total(searched.values(), "samples"), "prefixes": total(searched.values(), "prefixes"),
        "samples_per_prefix": round(total(searched.values(), "samples") / max(1, total(searched.values(), "prefixes")),
                                    2),
        "completion_tokens": total(searched.values(), "completion_tokens"),
        "prefilled_tokens": total(searched.values(), "prefilled_tokens"),
        # per pivot: the searched problems' whole cost, their p(0) included (qualifying others is reported apart)
        "model_tokens_per_pivot": round(all_tokens / n, 1) if n else None,
        "qualifying_tokens": root_tokens, "seconds_this_call": round(seconds, 1),
        "search_seconds": round(sum(r["seconds"] for r in searched.values()), 1),
    }


def _write_pairs(out: Path, searched: dict[str, Any], engine: Engine) -> int:
    rows = []
    for r in searched.values():
        for t in r["traces"]:
            for v in t["pivots"]:
                pair = v["pair"]
                if pair is None:
                    continue
                prefix = v["prefix_ids"]
                rows.append({"prompt_ids": prefix, "chosen_ids": [pair["chosen_id"]],
                             "rejected_ids": [pair["rejected_id"]],
                             "prompt": engine.detokenize(prefix, special=True), "chosen": pair["chosen"],
                             "rejected": pair["rejected"], "id": r["id"], "sample": t["sample"],
                             "position": v["position"], "p_before": v["p_before"], "p_after": v["p_after"],
                             "p_chosen": pair["p_chosen"], "p_rejected": pair["p_rejected"]})
    tmp = out / "dpo.jsonl.tmp"
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(out / "dpo.jsonl")
    return len(rows)
