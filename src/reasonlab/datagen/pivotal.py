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
time and stops once drawing on to ``samples`` would flip none of the comparisons the estimate is used in — p(a) +-
threshold and p(b) +- threshold for a middle, the range ends for p(0), p(after) -+ threshold for an alternative —
with chance ``risk`` or more (stochastic curtailment: ``flip_chance``), so a prefix whose side is clear after four
samples costs four, not ten. Estimates are cached by (problem, prefix ids).

Confirmation (``confirm``, sequential only): each comparison is settled against the other side's *estimate*, which
may rest on two continuations itself, so a middle that happens to draw 0 of 2 splits both its halves and leaves a pair
of opposite "pivots" beside each other (on GSM8K, 61 of 117 pivots sat beside one the other way, 54 had a side of
<= 4 continuations). So the bisection's pivots are confirmed: both sides are drawn to ``samples``, the bisection
runs again on the cache (drawing where the new estimates unsettle a middle), until every pivot it ends with has both
sides at ``samples`` — the evidence fixed n gives each pivot, at sequential's price for the rest of the trace. A
pair's alternative is drawn to ``samples`` too.

Pairs (what TRL's DPO trains, one token on each side): for a pivot that raises p, chosen = the pivotal token and
rejected = the most likely alternative (top-k log-probs at that position) whose p is lower by >= threshold than
p(after); for one that lowers p, rejected = the pivotal token and chosen = the most likely alternative higher by >=
threshold. Rows carry ``prompt_ids`` / ``chosen_ids`` / ``rejected_ids`` (the prefix exactly as the model read it, one
id each side) beside the text for reading: ``reasonlab train dpo`` trains on the ids as they are, so no end-of-
sequence token is appended and no one-token completion merges with the prompt's last token.

The search over a whole run and its output directory: ``datagen.pivotal_run``.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from reasonlab.answers import Verifier
from reasonlab.engines import Engine, Generation, SamplingParams
from reasonlab.errors import DataError, Interrupted
from reasonlab.runs import ProblemRecord


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
    confirm: bool = Field(True, description="sequential: keep a pivot only if it holds with both sides (and its "
                                            "pair's alternative) drawn to `samples`; fixed n draws that anyway")
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


def fisher_exact(a: int, n: int, b: int, m: int) -> float:
    """Two-sided Fisher exact test of a successes of n against b of m: the chance, were both drawn at one rate, of
    counts at most as likely as these. A pivot's sides at n = m = 10 need a gap near 0.5 to pass 0.05 — two
    estimates of one p = 0.5 from 10 continuations each differ by >= 0.2 half the time."""
    k, total = a + b, n + m

    def prob(x: int) -> float:
        return math.comb(n, x) * math.comb(m, k - x) / math.comb(total, k)

    here = prob(a)
    return min(1.0, sum(q for x in range(max(0, k - m), min(n, k) + 1) if (q := prob(x)) <= here * (1 + 1e-9)))


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


def read_rows(path: Path) -> list[dict[str, Any]]:
    """A JSON-lines file's rows (none when it is missing), past a line torn by a hard kill."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


class Journal:
    """Every sampling round of every prefix, appended to a JSONL file as it finishes, so an interrupted search
    takes its problems up where they stopped instead of sampling their prefixes again (one problem's search takes
    ~30 min here, and 16 run at once). Rows are keyed by (problem id, a hash of the prefix ids); what a restored
    prefix cost before counts again in its problem's cost, so tokens per pivot stay the search's whole cost.
    ``path`` None: nothing kept (a search in memory)."""

    FIELDS = ("successes", "n", "samples", "completion_tokens", "prefilled_tokens", "calls")

    def __init__(self, path: Path | None) -> None:
        self.path, self.lock = path, threading.Lock()
        self.rows: dict[tuple[str, str], dict[str, int]] = {}
        if path is not None and path.exists():
            for r in read_rows(path):  # a line torn by a hard kill is skipped: that round is drawn again
                acc = self.rows.setdefault((r["id"], r["prefix"]), dict.fromkeys(self.FIELDS, 0))
                for k in self.FIELDS:
                    acc[k] += r.get(k, 0)
            text = path.read_bytes()[-1:]
            if text and text != b"\n":  # end the torn line, so the next row starts a line of its own
                with path.open("a", encoding="utf-8") as fh:
                    fh.write("\n")

    def adopt(self, rows: list[dict[str, Any]]) -> int:
        """Append another journal's rows for the prefixes this one lacks (``pivotal_run.reuse_draws``); how many."""
        new = [r for r in rows if (r["id"], r["prefix"]) not in self.rows]
        if new and self.path is not None:
            with self.lock, self.path.open("a", encoding="utf-8") as fh:
                fh.writelines(json.dumps(r) + "\n" for r in new)
        return len(new)

    @staticmethod
    def key(ids: tuple[int, ...] | list[int]) -> str:
        return hashlib.sha1(",".join(map(str, ids)).encode()).hexdigest()[:20]

    def restore(self, problem_id: str, ids: tuple[int, ...]) -> dict[str, int] | None:
        return self.rows.get((problem_id, self.key(ids)))

    def record(self, problem_id: str, ids: tuple[int, ...], row: dict[str, int]) -> None:
        if self.path is None:
            return
        with self.lock, self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"id": problem_id, "prefix": self.key(ids), "length": len(ids), **row}) + "\n")


class Estimator:
    """p(success | prompt + trace prefix) by sampling continuations on ``engine`` and grading them; ``journal``
    keeps every round so a resumed search does not draw again what it drew before."""

    def __init__(self, engine: Engine, verifier: Verifier, cfg: PivotalConfig, answer_type: Any = None,
                 on_progress: Callable[[str, int], None] | None = None, journal: Journal | None = None) -> None:
        self.engine, self.verifier, self.cfg, self.answer_type = engine, verifier, cfg, answer_type
        self.on_progress = on_progress or (lambda what, k: None)
        self.journal = journal or Journal(None)
        # set on Ctrl-C / SIGTERM: every problem in flight ends at its next token, without grading or journaling
        # that call's cut samples (a search thread otherwise runs on for its whole problem, tens of minutes)
        self.stop = threading.Event()
        self.drawn, self._lock = Cost(), threading.Lock()  # what this process drew (restored rounds excluded)

    def _generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Generation]:
        if self.stop.is_set():
            raise Interrupted("pivotal search stopped")
        gens = self.engine.generate(prompts, params, cancel=lambda *_: self.stop.is_set())
        if self.stop.is_set():
            raise Interrupted("pivotal search stopped")
        return gens

    def estimate(self, problem: Problem, prefixes: list[tuple[list[int], tuple[float, ...]]],
                 full: bool = False) -> list[Estimate]:
        """Estimate p for each (trace prefix ids, decision points) of one problem, all in one batch per round;
        ``full``: draw each to ``samples`` whatever the decision points (a confirmation)."""
        cfg = self.cfg
        ests = []
        for ids, _ in prefixes:
            key = tuple(ids)
            if key not in problem.cache:
                problem.cache[key] = Estimate()
                problem.cost.prefixes += 1
                self.on_progress("prefixes", 1)
                if (kept := self.journal.restore(problem.id, key)) is not None:  # drawn before an interruption
                    problem.cache[key] = Estimate(kept["successes"], kept["n"])
                    for k in ("samples", "completion_tokens", "prefilled_tokens", "calls"):
                        setattr(problem.cost, k, getattr(problem.cost, k) + kept[k])
            ests.append(problem.cache[key])

        def wanted(i: int) -> int:  # continuations still to draw for prefix i this round
            e, points = ests[i], prefixes[i][1]
            if cfg.estimator == "fixed" or full:
                return max(0, cfg.samples - e.n)
            if e.n and flip_chance(e.successes, e.n, cfg.samples, points) < cfg.risk:
                return 0
            return min(cfg.round, cfg.samples - e.n)

        keys = [Journal.key(ids) for ids, _ in prefixes]
        while todo := [(i, k) for i in range(len(prefixes)) if (k := wanted(i)) > 0]:
            # one generate call per round and sample count: the batched engine decodes all of them together
            for k in sorted({k for _, k in todo}):
                group = [i for i, kk in todo if kk == k]
                # sample s of every prompt in a call is seeded seed + s, so the seed must differ for every call a
                # prefix is in, or a prefix drawn again (a later depth, a confirmation) repeats its first draws on
                # an engine that is deterministic by seed: seed the call by what it draws — each prefix and its
                # count so far — which also gives a resumed search the seeds an uninterrupted one would have had
                state = ",".join(f"{keys[i]}:{ests[i].n}" for i in group)
                seed = zlib.crc32(f"{cfg.seed}:{problem.id}:{state}".encode()) & 0x3FFFFFFF
                params = SamplingParams(n=k, temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=cfg.max_tokens,
                                        seed=seed)
                gens = self._generate([prefixes[i][0] for i in group], params)
                problem.cost.calls += 1
                heads = [self.engine.detokenize(prefixes[i][0][len(problem.prompt_ids):]) for i in group]
                drawn = {i: dict.fromkeys(Journal.FIELDS, 0) for i in group}
                drawn[group[0]]["calls"] = 1
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
                    d = drawn[group[g.index]]
                    d["successes"], d["n"], d["samples"] = d["successes"] + int(ok), d["n"] + 1, d["samples"] + 1
                    d["completion_tokens"] += g.completion_tokens
                    d["prefilled_tokens"] += g.prefilled_tokens
                for i in group:
                    self.journal.record(problem.id, tuple(prefixes[i][0]), drawn[i])
                with self._lock:
                    self.drawn.add(Cost(len(gens), sum(g.completion_tokens for g in gens),
                                        sum(g.prefilled_tokens for g in gens), 0, 1))
                self.on_progress("samples", len(gens))
        return ests

    def alternatives(self, problem: Problem, ids: list[int], exclude: int) -> list[tuple[int, str, float]]:
        """The most likely next tokens after ``ids`` (id, text, log p), best first, without ``exclude`` and
        without tokens that spell nothing (end of sequence, template markers)."""
        g = self._generate([ids], SamplingParams(max_tokens=1, temperature=0.0,
                                                        logprobs=self.cfg.alternatives + 2))[0]
        problem.cost.calls += 1
        problem.cost.prefilled_tokens += g.prefilled_tokens
        with self._lock:
            self.drawn.add(Cost(0, 0, g.prefilled_tokens, 0, 1))
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
    Tokens inside ``injected`` spans (text a policy added, not sampled) are not pivots. With ``confirm``, bisect
    again until every pivot's sides are drawn to ``samples`` (the module doc)."""
    cfg, base = est.cfg, problem.prompt_ids
    while True:
        p0, pivots = _bisect(est, problem, trace_ids, p_end, injected)
        if not cfg.confirm or cfg.estimator == "fixed":
            break
        # the prefixes a pivot's sides rest on (position i: prompt + trace[:i]; the trace's end is its verdict)
        thin = sorted({i for v in pivots for i in (v.position, v.position + 1) if i < len(trace_ids)
                       and problem.cache[tuple(base + trace_ids[:i])].n < cfg.samples})
        if not thin:
            break
        est.estimate(problem, [(base + trace_ids[:i], ()) for i in thin], full=True)
    for v in pivots:
        v.pair = pair_for(est, problem, base + trace_ids[: v.position], v)
    return p0, pivots


def _bisect(est: Estimator, problem: Problem, trace_ids: list[int], p_end: float,
            injected: list[tuple[int, int]]) -> tuple[float, list[Pivot]]:
    """One bisection of the trace on the problem's cached estimates, estimating the middles it lacks."""
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
    return p[0], pivots


def pair_for(est: Estimator, problem: Problem, prefix: list[int], pivot: Pivot) -> dict[str, Any] | None:
    """The DPO pair at a pivot: the pivotal token against the most likely alternative on the other side of
    p(after) by at least the threshold; None when no alternative among the top k is."""
    thr = est.cfg.threshold
    raises = pivot.p_after > pivot.p_before
    bound = pivot.p_after - thr if raises else pivot.p_after + thr
    for tid, text, lp in est.alternatives(problem, prefix, exclude=pivot.token):
        e = est.estimate(problem, [(prefix + [tid], (bound,) if 0.0 < bound <= 1.0 else ())],
                         full=est.cfg.confirm)[0]
        if (e.p <= bound + EPS) if raises else (e.p >= bound - EPS):
            good, bad = ((pivot.token, pivot.text, pivot.p_after), (tid, text, e.p)) if raises else \
                ((tid, text, e.p), (pivot.token, pivot.text, pivot.p_after))
            return {"chosen_id": good[0], "chosen": good[1], "p_chosen": round(good[2], 4),
                    "rejected_id": bad[0], "rejected": bad[1], "p_rejected": round(bad[2], 4),
                    "alternative_logprob": round(lp, 4)}
    return None
