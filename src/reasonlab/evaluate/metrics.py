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


def samples_caveat(strategy: str | None, options: dict[str, Any] | None) -> str | None:
    """Why pass@k / maj@k / avg@n would not mean what they say for this strategy, or None when its traces
    are k exchangeable samples of one distribution (a vote that ran every sample).

    >>> samples_caveat("vote", {"samples": 8}) is None, samples_caveat("vote", {"stop": "quorum"})[:22]
    (True, 'an early-stopped vote ')
    """
    options = options or {}
    if strategy is None:
        return None  # unknown (records alone): the caller vouches for them
    if strategy == "branch":
        return "branch leaves share their stems: they are not independent samples"
    if strategy == "conversation":
        return "conversation: each turn reads the ones before it, so turns are not independent samples"
    if strategy in ("prompts", "mixture"):
        return f"{strategy}: samples come from different {'prompts' if strategy == 'prompts' else 'models'}, " \
               f"so they are not identically distributed and the first k are not a sample of k"
    if options.get("stop", "none") != "none":
        return "an early-stopped vote has fewer traces on decided problems: k would be cut to the fewest"
    return None


def summarize(records: list[Any], strategy: str | None = None, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Accuracy, tokens, sample curves of finished problems: ``ProblemRecord``s or their JSON form.
    ``strategy`` and its ``options`` (as in the run's config) decide whether sample curves are valid."""
    records = [r.model_dump(mode="json") if hasattr(r, "model_dump") else r for r in records]
    n = len(records)
    correct = sum(1 for r in records if r.get("correct"))
    found = sum(1 for r in records if r.get("answer") is not None)
    tokens = sum(int(r.get("tokens", 0)) for r in records)
    prompt_tokens = sum(int(r.get("prompt_tokens", 0)) for r in records)
    seconds = sum(float(r.get("seconds", 0.0)) for r in records)
    lo, hi = wilson_interval(correct, n)
    out = {
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
        "stop_reasons": _count(r.get("stop_reason", "done") for r in records),
        "mean_traces": round(sum(len(r.get("traces", [])) for r in records) / n, 3) if n else 0.0,
    }
    # what the prefix cache saved: prompt tokens (over every engine call of every trace) read from it
    cached = sum(int(t.get("cached_tokens", 0)) for r in records for t in r.get("traces", []))
    prefilled = sum(int(t.get("prefilled_tokens", 0)) for r in records for t in r.get("traces", []))
    out["prompt_tokens_prefilled"], out["prompt_tokens_cached"] = prefilled, cached
    out["prefix_cache_hit_rate"] = round(cached / (cached + prefilled), 4) if cached + prefilled else 0.0
    if any(len(r.get("traces", [])) > 1 for r in records):
        caveat = samples_caveat(strategy, options)
        if caveat is None:
            out["samples"] = sample_curves(records)
            if (options or {}).get("weight", "count") != "count":
                out["samples"]["note"] = f"maj@k counts each trace once; this run's vote weighs by {options['weight']}"
        else:
            out["samples_omitted"] = caveat
        out["length_vs_correctness"] = length_vs_correctness(records)
    scored = verifier_metrics(records)
    if scored is not None:  # the run scored traces with an outcome verifier
        scored["cost"] = {k: round(sum(float(r.get("strategy_meta", {}).get("scorer", {}).get(k, 0)) for r in records), 3)
                          for k in ("traces", "tokens", "seconds")}
        scored["curves"] = selection_curves(records)  # each rule's accuracy at k samples of the same traces
        out["verifier"] = scored
    for tag in ("model", "variant"):
        per = by_tag(records, tag)
        if per:
            out[f"by_{tag}"] = per
    rounds = by_round(records)
    if rounds is not None:
        out["rounds"] = rounds
    hcot = hcot_stats(records)
    if hcot is not None:
        out["hcot"] = hcot
    return out


def hcot_stats(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Pruning during generation, over the traces of ``hcot`` runs: means per trace of prunes, generated, retained
    and peak live tokens, and peak live over generated (the share of its writing a trace had to hold at once).

    >>> hcot_stats([{"traces": [{"events": [{"type": "hcot", "prunes": 2, "generated": 100, "retained": 30,
    ...                                       "peak_live": 70, "prompt_tokens": 20, "open_thoughts": 0}]}]}])
    {'traces': 1, 'prunes': 2.0, 'generated': 100.0, 'retained': 30.0, 'peak_live': 70.0, 'peak_generated_live': 50.0, 'peak_over_generated': 0.5, 'well_formed': 1.0, 'runaway': 0, 'without_prunes': 0}
    """
    rows = [e for r in records for t in r.get("traces", []) for e in t.get("events", []) if e.get("type") == "hcot"]
    if not rows:
        return None

    def mean(key: str) -> float:
        return round(sum(float(e[key]) for e in rows) / len(rows), 1)

    # the generated part of the peak (the prompt is there in any case)
    peak_gen = [e["peak_live"] - e["prompt_tokens"] for e in rows]
    gen = sum(e["generated"] for e in rows)
    return {"traces": len(rows), "prunes": mean("prunes"), "generated": mean("generated"),
            "retained": mean("retained"), "peak_live": mean("peak_live"),
            "peak_generated_live": round(sum(peak_gen) / len(rows), 1),
            "peak_over_generated": round(sum(peak_gen) / gen, 4) if gen else None,
            # failure modes the research notes report: malformed thought/solution pairs, runaway generation
            "well_formed": round(sum(1 for e in rows if e.get("well_formed", True)) / len(rows), 4),
            "runaway": sum(1 for e in rows if e.get("runaway")),
            "without_prunes": sum(1 for e in rows if not e["prunes"])}


def _count(items: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for x in items:
        out[x] = out.get(x, 0) + 1
    return out


# --- sample-level metrics: pass@k, maj@k, avg@n, from the traces each record keeps ------------------------

def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021): 1 - C(n-c, k) / C(n, k), for c correct of n samples.

    >>> pass_at_k(8, 0, 1), pass_at_k(8, 2, 1), round(pass_at_k(8, 2, 4), 4), pass_at_k(8, 7, 2)
    (0.0, 0.25, 0.7857, 1.0)
    """
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, have {n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def _voters(record: dict[str, Any]) -> list[tuple[str | None, bool]]:
    """(vote key, correct) per trace in sample order. Correct answers all share one key (they are all
    equivalent to the gold answer, hence to each other); wrong ones are keyed by their normalised text."""
    from reasonlab.answers.normalize import normalize

    out = []
    for t in sorted(record.get("traces", []), key=lambda t: t.get("sample", 0)):
        if not t.get("valid", True):
            out.append((None, False))
            continue
        ans = t.get("tags", {}).get("vote_answer", t.get("answer"))
        if ans is None:
            out.append((None, False))
        elif t.get("correct"):
            out.append(("<correct>", True))
        else:
            out.append((normalize(ans), False))
    return out


def majority_correct(keys: list[tuple[str | None, bool]], weights: list[float] | None = None) -> float:
    """Expected correctness of a (``weights``-weighted) majority vote over these traces; a tie is broken
    uniformly at random.

    >>> majority_correct([("<correct>", True), ("5", False), ("5", False)])
    0.0
    >>> majority_correct([("<correct>", True), ("5", False)])
    0.5
    >>> majority_correct([("<correct>", True), ("5", False), ("5", False)], weights=[0.9, 0.2, 0.3])
    1.0
    """
    counts: dict[str, float] = {}
    for i, (key, _) in enumerate(keys):
        if key is not None:
            counts[key] = counts.get(key, 0) + (weights[i] if weights is not None else 1)
    if not counts:
        return 0.0
    top = max(counts.values())
    leaders = [k for k, v in counts.items() if v == top]
    return ("<correct>" in leaders) / len(leaders)


def maj_at_k(voters: list[tuple[str | None, bool]], k: int, rng: Any, draws: int = 256) -> float:
    """maj@k of one problem from n >= k samples: the mean over its k-subsets — all of them (exact)
    when there are at most ``draws``, else ``draws`` random ones — so every sample is used, not just the first k."""
    import itertools

    n = len(voters)
    if k >= n:
        return majority_correct(voters)
    if math.comb(n, k) <= draws:
        subsets = list(itertools.combinations(voters, k))
        return sum(majority_correct(list(c)) for c in subsets) / len(subsets)
    return sum(majority_correct(rng.sample(voters, k)) for _ in range(draws)) / draws


def bootstrap_ci(values: list[float], rng: Any, resamples: int = 1000) -> tuple[float, float]:
    """95% percentile bootstrap interval of the mean of per-problem values."""
    n = len(values)
    if n == 0:
        return (0.0, 0.0)
    means = sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    return (means[int(0.025 * resamples)], means[min(resamples - 1, int(0.975 * resamples))])


def paired(base: list[dict[str, Any]], other: list[dict[str, Any]], seed: int = 0) -> dict[str, Any]:
    """Two runs on the same problems, compared problem by problem (only ids both graded count): how many each
    got right alone, the accuracy difference ``other - base`` with a paired bootstrap 95% interval, and the
    exact McNemar test's two-sided p-value (a binomial test on the problems only one run got right).

    >>> r = paired([{"id": i, "correct": i < 5} for i in range(10)], [{"id": i, "correct": i < 7} for i in range(10)])
    >>> r["n"], r["only_base"], r["only_other"], round(r["diff"], 2), round(r["p_mcnemar"], 2)
    (10, 0, 2, 0.2, 0.5)
    """
    import random

    a = {r["id"]: bool(r.get("correct")) for r in base if r.get("correct") is not None}
    b = {r["id"]: bool(r.get("correct")) for r in other if r.get("correct") is not None}
    ids = sorted(set(a) & set(b), key=str)
    n = len(ids)
    only_a = sum(a[i] and not b[i] for i in ids)
    only_b = sum(b[i] and not a[i] for i in ids)
    deltas = [float(b[i]) - float(a[i]) for i in ids]
    lo, hi = bootstrap_ci(deltas, random.Random(seed), resamples=2000)
    m = only_a + only_b  # discordant pairs: under "no difference" each goes either way with p = 1/2
    tail = sum(math.comb(m, k) for k in range(min(only_a, only_b) + 1)) / 2**m if m else 1.0
    return {"n": n, "base_correct": sum(a[i] for i in ids), "other_correct": sum(b[i] for i in ids),
            "only_base": only_a, "only_other": only_b, "diff": sum(deltas) / n if n else 0.0, "diff_ci": (lo, hi),
            "p_mcnemar": min(1.0, 2 * tail)}


def sample_curves(records: list[dict[str, Any]], ks: list[int] | None = None, seed: int = 0) -> dict[str, Any]:
    """pass@k, maj@k and avg@n over the problems, with bootstrap 95% intervals, for k up to the
    smallest sample count any problem has."""
    import random

    rng = random.Random(seed)
    per = [_voters(r) for r in records]
    per = [v for v in per if v]
    if not per:
        return {}
    n_min = min(len(v) for v in per)
    ks = [k for k in (ks or [1, 2, 4, 8, 16, 32, 64]) if k <= n_min] or [n_min]
    out: dict[str, Any] = {"n_samples": n_min, "k": ks, "pass": [], "pass_ci95": [], "maj": [], "maj_ci95": []}
    for k in ks:
        p = [pass_at_k(len(v), sum(c for _, c in v), k) for v in per]
        m = [maj_at_k(v, k, rng) for v in per]
        for name, vals in (("pass", p), ("maj", m)):
            out[name].append(round(sum(vals) / len(vals), 4))
            out[f"{name}_ci95"].append([round(x, 4) for x in bootstrap_ci(vals, rng)])
    avg = [sum(c for _, c in v) / len(v) for v in per]
    out["avg"] = round(sum(avg) / len(avg), 4)
    out["avg_ci95"] = [round(x, 4) for x in bootstrap_ci(avg, rng)]
    return out


def length_vs_correctness(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Do wrong answers run longer? Mean generated tokens of correct vs wrong finished traces."""
    right = [t.get("completion_tokens", 0) for r in records for t in r.get("traces", [])
             if t.get("answer") is not None and t.get("correct")]
    wrong = [t.get("completion_tokens", 0) for r in records for t in r.get("traces", [])
             if t.get("answer") is not None and not t.get("correct")]
    none = [t.get("completion_tokens", 0) for r in records for t in r.get("traces", []) if t.get("answer") is None]

    def mean(xs: list[int]) -> float | None:
        return round(sum(xs) / len(xs), 1) if xs else None

    return {"correct_traces": len(right), "mean_tokens_correct": mean(right), "wrong_traces": len(wrong),
            "mean_tokens_wrong": mean(wrong), "no_answer_traces": len(none), "mean_tokens_no_answer": mean(none)}


def by_tag(records: list[dict[str, Any]], tag: str) -> dict[str, dict[str, float]]:
    """Trace accuracy per value of a trace tag (``model`` in a mixture, ``variant`` in prompts); a critic's
    turns (which answer nothing) are left out."""
    acc: dict[str, list[int]] = {}
    for r in records:
        for t in r.get("traces", []):
            if t.get("tags", {}).get("role") == "critic":
                continue
            value = t.get("tags", {}).get(tag)
            if value is not None:
                acc.setdefault(str(value), []).append(bool(t.get("correct")))
    return {k: {"traces": len(v), "accuracy": round(sum(v) / len(v), 4)} for k, v in acc.items()}


def by_round(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A conversation's accuracy after each round, and the mean tokens generated up to it (the answer standing
    after round r is the trace ``strategy_meta.round_traces[r]``; a conversation that ended earlier keeps its
    last). None when no record holds rounds.

    >>> rec = {"strategy_meta": {"round_traces": [0, 2]}, "traces": [
    ...     {"correct": False, "completion_tokens": 10, "tags": {"round": 0}},
    ...     {"correct": False, "completion_tokens": 5, "tags": {"round": 1, "role": "critic"}},
    ...     {"correct": True, "completion_tokens": 10, "tags": {"round": 1}}]}
    >>> by_round([rec])
    {'accuracy': [0.0, 1.0], 'mean_tokens': [10.0, 25.0], 'problems': 1}
    """
    rows = [r for r in records if (r.get("strategy_meta") or {}).get("round_traces") is not None]
    if not rows:
        return None
    n_rounds = max(len(r["strategy_meta"]["round_traces"]) for r in rows)
    acc, tokens = [], []
    for k in range(n_rounds):
        right = spent = 0
        for r in rows:
            held = r["strategy_meta"]["round_traces"]
            i = held[min(k, len(held) - 1)] if held else None
            right += i is not None and bool(r["traces"][i].get("correct"))
            spent += sum(int(t.get("completion_tokens", 0)) for t in r["traces"]
                         if int((t.get("tags") or {}).get("round", 0)) <= k)
        acc.append(round(right / len(rows), 4))
        tokens.append(round(spent / len(rows), 1))
    return {"accuracy": acc, "mean_tokens": tokens, "problems": len(rows)}


# --- outcome verifier: how well its scores separate right from wrong, and what selecting by them gives ------

# verifier_metrics' selection rules, as reports name them
SELECTIONS = (("maj", "majority"), ("weighted", "verifier-weighted vote"), ("best", "best-of-n"),
              ("pass", "pass (some trace right)"))

def auroc(positives: list[float], negatives: list[float]) -> float | None:
    """P(a random positive scores above a random negative), ties counting half; None without both.

    >>> auroc([0.9, 0.8], [0.1, 0.8])
    0.875
    """
    if not positives or not negatives:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def _scored(record: dict[str, Any], unanswered: bool = False) -> list[tuple[Any, bool, float]]:
    """(vote key, correct, score) of every trace the verifier scored (correct answers share one key); with
    ``unanswered`` also (None, False, -1.0) for each trace without an answer (no vote, never picked)."""
    from reasonlab.answers.normalize import normalize

    out: list[tuple[Any, bool, float]] = []
    for t in sorted(record.get("traces", []), key=lambda t: t.get("sample", 0)):
        ans = t.get("tags", {}).get("vote_answer", t.get("answer"))
        if ans is None:
            if unanswered:
                out.append((None, False, -1.0))
        elif t.get("score") is not None:
            out.append(("<correct>" if t.get("correct") else normalize(ans), bool(t.get("correct")), float(t["score"])))
    return out


def _select(p: list[tuple[Any, bool, float]]) -> dict[str, float]:
    """Expected correctness of each selection rule among these traces (0 for all when none has an answer)."""
    voters = [(k, ok) for k, ok, _ in p]
    answered = [(ok, sc) for k, ok, sc in p if k is not None]
    if not answered:
        return {key: 0.0 for key, _ in SELECTIONS}
    top = max(sc for _, sc in answered)
    at_top = [ok for ok, sc in answered if sc == top]  # a tie at the top: a random pick among them
    return {"maj": majority_correct(voters), "weighted": majority_correct(voters, [max(0.0, sc) for _, _, sc in p]),
            "best": sum(at_top) / len(at_top), "pass": float(any(ok for ok, _ in answered))}


def selection_curves(records: list[dict[str, Any]], draws: int = 128, seed: int = 0) -> dict[str, Any] | None:
    """Each selection rule's accuracy over k of a problem's samples, k = 1..n (n: the most any problem has): the
    mean over the k-subsets of its traces, answered or not — all of them when at most ``draws``, else ``draws``
    random ones (as ``maj_at_k``). How a verifier's gain over the vote grows with samples. None when nothing
    was scored.

    >>> recs = [{"traces": [{"answer": "1", "correct": True, "score": 0.9, "sample": 0},
    ...                     {"answer": "2", "score": 0.2, "sample": 1}, {"answer": "2", "score": 0.3, "sample": 2}]}]
    >>> c = selection_curves(recs)
    >>> c["k"], c["best"], c["pass"]
    ([1, 2, 3], [0.3333, 0.6667, 1.0], [0.3333, 0.6667, 1.0])
    """
    import itertools
    import random

    every = [_scored(r, unanswered=True) for r in records]
    if not any(sc >= 0 for p in every for _, _, sc in p):
        return None
    rng = random.Random(seed)
    n_max = max(len(p) for p in every)
    out: dict[str, Any] = {"k": list(range(1, n_max + 1)), **{key: [] for key, _ in SELECTIONS}}
    for k in out["k"]:
        sums = {key: 0.0 for key, _ in SELECTIONS}
        for p in every:
            if len(p) <= k:
                subsets: list[Any] = [p]
            elif math.comb(len(p), k) <= draws:
                subsets = list(itertools.combinations(p, k))
            else:
                subsets = [rng.sample(p, k) for _ in range(draws)]
            for sub in subsets:
                for key, value in _select(list(sub)).items():
                    sums[key] += value / len(subsets)
        for key in sums:
            out[key].append(round(sums[key] / len(every), 4))
    return out


def verifier_metrics(records: list[dict[str, Any]], seed: int = 0) -> dict[str, Any] | None:
    """From runs whose traces carry verifier scores: within-problem AUROC (mean over problems with a right and a
    wrong scored trace — the question a vote asks: which of *these* is right), pooled AUROC, and accuracy of
    selecting among the scored traces by majority (maj@n), verifier-weighted vote, best-of-n, and pass@n (some
    scored trace is right: the ceiling), each with a bootstrap 95% interval; for the weighted vote and best-of-n
    also the paired difference from majority (``vs_maj``, with its interval) and ``gap_closed``, the share of
    pass - maj it gains. Accuracies are over every problem: one
    without a scored answer is wrong under every rule (``problems_answered`` counts the others). None when nothing
    was scored.

    >>> recs = [{"traces": [{"answer": "1", "correct": True, "score": 0.9}, {"answer": "2", "score": 0.2},
    ...                     {"answer": "2", "score": 0.3}]}]
    >>> m = verifier_metrics(recs)
    >>> m["auroc_within"], m["maj"]["acc"], m["weighted"]["acc"], m["best"]["acc"], m["pass"]["acc"]
    (1.0, 0.0, 1.0, 1.0, 1.0)
    >>> verifier_metrics(recs + [{"traces": [{"answer": None, "score": None}]}])["pass"]["acc"]  # one unanswered
    0.5
    >>> m["best"]["vs_maj"], m["best"]["gap_closed"]  # best-of-n gains all of pass - maj on this problem
    (1.0, 1.0)
    """
    import random

    every = [_scored(r) for r in records]
    per = [p for p in every if p]
    if not per:
        return None
    within = [a for p in per if (a := auroc([s for _, ok, s in p if ok], [s for _, ok, s in p if not ok])) is not None]
    pooled = auroc([s for p in per for _, ok, s in p if ok], [s for p in per for _, ok, s in p if not ok])

    rng = random.Random(seed)
    out: dict[str, Any] = {"problems": len(every), "problems_answered": len(per), "traces": sum(len(p) for p in per),
                           "auroc_within": round(sum(within) / len(within), 4) if within else None,
                           "auroc_within_problems": len(within), "auroc_pooled": round(pooled, 4) if pooled else None}
    picked = [_select(p) for p in every]
    values: dict[str, list[float]] = {}
    for name, _ in SELECTIONS:
        values[name] = [sel[name] for sel in picked]
        lo, hi = bootstrap_ci(values[name], rng)
        out[name] = {"acc": round(sum(values[name]) / len(every), 4), "ci95": [round(lo, 4), round(hi, 4)]}
    # what a verifier is for: how much of the gap between the vote and the ceiling it closes, and the difference
    # from the vote problem by problem (a paired interval: both pick among the same traces)
    gap = out["pass"]["acc"] - out["maj"]["acc"]
    for name in ("weighted", "best"):
        diffs = [a - b for a, b in zip(values[name], values["maj"])]
        lo, hi = bootstrap_ci(diffs, rng)
        out[name]["vs_maj"] = round(sum(diffs) / len(diffs), 4)
        out[name]["vs_maj_ci95"] = [round(lo, 4), round(hi, 4)]
        out[name]["gap_closed"] = round(out[name]["vs_maj"] / gap, 4) if gap > 0 else None
    return out
