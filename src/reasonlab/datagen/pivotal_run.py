"""Pivotal-token search over a run's traces, into a resumable output directory (the search itself, the estimator
and the pairs: ``datagen.pivotal``).

    config.json     the config, the source run and the engine
    roots.jsonl     per drawn problem: p(0) with its samples, qualified or not
    searched.jsonl  per searched problem: the trace, the pivots (prefix ids, token, p before/after, the pair), cost
    estimates.jsonl every sampling round of every prefix (``Journal``): an interrupted problem resumes its search
    calls.jsonl     per call of the search (finished or stopped): wall time and what it drew, so a search spread
                    over several calls still has its wall time
    dpo.jsonl       the pairs, for ``reasonlab train dpo --data``
    summary.json    problems drawn / qualified, pivots, pairs, samples and model tokens (per pivot), wall time

Finished problems are skipped on a rerun, unfinished ones draw only what the journal lacks; another config or
source in the same directory is refused.
"""

from __future__ import annotations

import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

from reasonlab.answers import Verifier
from reasonlab.datagen.pivotal import (Cost, Estimate, Estimator, Journal, PivotalConfig, Problem, fisher_exact,
                                       read_rows, search_trace)
from reasonlab.engines import Engine
from reasonlab.errors import ConfigError, DataError
from reasonlab.runs import ProblemRecord, TraceRecord, read_run


def _same(identity: dict[str, Any] | None) -> Any:
    """An identity as compared: the problems asked for by id are a set (--problems-from reads them in the order
    another search finished them)."""
    if identity is None or not (identity.get("config") or {}).get("ids"):
        return identity
    return {**identity, "config": {**identity["config"], "ids": sorted(identity["config"]["ids"])}}


class _Out:
    """The output directory: append-only JSON lines, config checked on resume."""

    def __init__(self, path: Path, config: dict[str, Any], force_new: bool) -> None:
        self.path, self.lock = path, threading.Lock()
        path.mkdir(parents=True, exist_ok=True)
        cfg_file = path / "config.json"
        if force_new:
            for name in ("roots.jsonl", "searched.jsonl", "estimates.jsonl", "calls.jsonl", "dpo.jsonl",
                         "summary.json"):
                (path / name).unlink(missing_ok=True)
        elif cfg_file.exists():
            old = json.loads(cfg_file.read_text(encoding="utf-8"))
            if _same(old.get("identity")) != _same(config["identity"]):
                raise ConfigError(f"{path} holds a pivotal search with another config or source: use another "
                                  f"--out, or --force-new to start over there")
        cfg_file.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")

    def read(self, name: str) -> dict[str, dict[str, Any]]:
        return {r["id"]: r for r in read_rows(self.path / name)}

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
                   limit: int | None = None, progress: bool | None = None, force_new: bool = False,
                   draws_from: str | Path | None = None) -> dict[str, Any]:
    """Search the traces of run ``run_dir`` for pivotal tokens on ``engine`` (the model the run sampled, or the
    searched model); write ``out`` (see the module doc); returns the summary. ``limit``: draw at most that many
    problems. ``draws_from``: another search's output directory whose continuations this one takes as its own
    (``reuse_draws``)."""
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
    # what decides the output (fixed n draws every prefix to `samples`: confirming changes nothing there)
    same = {"parallel", "problems"} | ({"confirm"} if cfg.estimator == "fixed" else set())
    ident = {"config": cfg.model_dump(mode="json", exclude=same),
             "source": str(Path(run_dir).resolve()), "engine": engine.identity()}
    store = _Out(Path(out), {"identity": ident, "engine": engine.describe(), "command": " ".join(sys.argv)},
                 force_new)
    if draws_from is not None:
        reuse_draws(Path(draws_from), Path(out), ident)
    roots, searched = store.read("roots.jsonl"), store.read("searched.jsonl")
    had = len(roots) + len(searched)  # a finished search run again has nothing to do: no call is logged for it
    verifier = Verifier()
    counts = {"samples": 0, "prefixes": 0, "pivots": 0}
    show = sys.stderr.isatty() if progress is None else progress
    start, started, finished = time.perf_counter(), time.strftime("%Y-%m-%dT%H:%M:%S"), False
    est: Estimator | None = None
    try:
        with Progress(disable=not show, transient=True) as bar:
            task = bar.add_task("pivotal search", total=None)

            def tick(what: str, k: int) -> None:
                counts[what] += k
                bar.update(task, description=f"problems {len(roots)} drawn / {len(searched)} searched · "
                                             f"prefixes {counts['prefixes']} · samples {counts['samples']} · "
                                             f"pivots {counts['pivots']}")

            est = Estimator(engine, verifier, cfg, answer_type, tick, Journal(Path(out) / "estimates.jsonl"))
            reuse = cfg.reuse_samples and _plain_samples(run_cfg, cfg)
            problems = {r.id: _problem(r, reuse) for r in records}
            # 1. draw problems in order, p(0) in batches of `parallel`, until enough qualify (deterministic by order)
            qualified = [i for i, r in roots.items() if r["qualified"]]
            pending = iter([r for r in records if r.id not in roots])
            with ThreadPoolExecutor(cfg.parallel) as pool:
                try:
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
                except BaseException:  # Ctrl-C / SIGTERM: the threads stop at their next token, not their problem's end
                    est.stop.set()
                    raise
        finished = True
    finally:
        verifier.close()
        d = est.drawn if est is not None else None
        if d is not None and (d.calls or len(roots) + len(searched) > had):  # wall time and draws, stopped or not
            store.append("calls.jsonl", {"started": started, "seconds": round(time.perf_counter() - start, 1),
                                         "finished": finished, "samples": d.samples,
                                         "completion_tokens": d.completion_tokens,
                                         "prefilled_tokens": d.prefilled_tokens, "calls": d.calls})
    summary = _summarize(roots, searched, cfg, time.perf_counter() - start, read_rows(Path(out) / "calls.jsonl"))
    _write_pairs(Path(out), searched, engine)
    (Path(out) / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def reuse_draws(source: Path, out: Path, ident: dict[str, Any]) -> int:
    """Take another search's continuations as this one's: a continuation of a prefix is a draw from that prefix's
    distribution whatever search asked for it, so two searches of one run at the same sampling settings (a fixed-n
    comparison beside a sequential search) need not draw it twice. A prefix whose count stopped early tops up
    from there, and 10 of n drawn in order are 10 draws however the first ones stopped. Restored draws count in the
    cost in full (``Journal``), so tokens per pivot stay what drawing them costs; wall time does not. Prefixes this
    journal has already are left alone, and a prefix's rounds are taken in order only while they fit in this
    search's ``samples`` (a source that drew 20 must not give a fixed n = 10 search 20): the count decides where to
    stop, not the outcomes, so what is taken stays plain draws. Returns the rows added."""
    cfg_file = source / "config.json"
    if not (source / "estimates.jsonl").is_file() or not cfg_file.is_file():
        raise DataError(f"--draws-from {source}: no estimates.jsonl and config.json there (not a pivotal search output)")
    other = json.loads(cfg_file.read_text(encoding="utf-8")).get("identity") or {}
    keys = ("temperature", "top_p", "max_tokens")
    for k in keys:
        if (other.get("config") or {}).get(k) != ident["config"][k]:
            raise ConfigError(f"--draws-from {source}: it sampled with {k} = {(other.get('config') or {}).get(k)}, "
                              f"this search with {ident['config'][k]}: its draws are not this search's")
    for k in ("source", "engine"):
        if other.get(k) != ident[k]:
            raise ConfigError(f"--draws-from {source}: another {k} ({other.get(k)}): its draws are not this search's")
    cap, taken, rows = ident["config"]["samples"], {}, []
    for r in read_rows(source / "estimates.jsonl"):  # rounds in the order they were drawn
        key = (r["id"], r["prefix"])
        if taken.get(key, 0) + r["n"] <= cap:
            taken[key] = taken.get(key, 0) + r["n"]
            rows.append(r)
        else:
            taken[key] = cap + 1  # a round that does not fit ends what is taken of this prefix
    return Journal(out / "estimates.jsonl").adopt(rows)


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
    # the root row is p(0)'s whole estimate (the run's own samples and those drawn to qualify): on a resume the
    # problem is rebuilt holding only the run's samples, which must not stand in for it
    problem.cache[tuple(problem.prompt_ids)] = Estimate(root["successes"], root["n"])
    traces = []
    for t in _pick_traces(problem.record, cfg):
        prompt_ids, ids = _trace_ids(problem.record, t)  # type: ignore[misc]
        # a trace of another prompt variant has its own root
        owner = problem if prompt_ids == problem.prompt_ids else Problem(problem.id, problem.gold, prompt_ids,
                                                                          problem.record, cost=problem.cost)
        p0, pivots = search_trace(est, owner, ids, 1.0 if t.correct else 0.0, t.injected)
        # every prefix estimated along the trace: [position, successes, samples] (the curve of p over the trace)
        curve = sorted([len(k) - len(prompt_ids), e.successes, e.n] for k, e in owner.cache.items()
                       if len(k) <= len(prompt_ids) + len(ids) and list(k[: len(prompt_ids)]) == prompt_ids
                       and list(k[len(prompt_ids):]) == ids[: len(k) - len(prompt_ids)])
        traces.append({"sample": t.sample, "correct": t.correct, "tokens": len(ids), "p0": round(p0, 4),
                       "prompt_ids": prompt_ids, "estimates": curve, "pivots": [
                           {"position": v.position, "token": v.token, "text": v.text,
                            "p_before": round(v.p_before, 4), "p_after": round(v.p_after, 4),
                            "prefix_ids": prompt_ids + ids[: v.position], "pair": v.pair} for v in pivots]})
    spent = problem.cost
    cost = {k: getattr(spent, k) - getattr(before, k) for k in ("samples", "completion_tokens", "prefilled_tokens",
                                                                "prefixes")}
    return {"id": problem.id, "traces": traces, "pivots": [v for t in traces for v in t["pivots"]], **cost,
            "seconds": round(time.perf_counter() - start, 2)}


def pivot_p_value(trace: dict[str, Any], pivot: dict[str, Any]) -> float:
    """How likely a pivot's two sides differ this much by chance (Fisher exact on their continuation counts, from
    the trace's curve in searched.jsonl). After the last token p is the trace's verdict, exact: a pivot there has a
    continuation against it, so no one rate is behind both sides (0)."""
    counts = {pos: (s, n) for pos, s, n in trace["estimates"]}
    i = pivot["position"]
    if i + 1 >= trace["tokens"]:
        return 0.0
    return fisher_exact(*counts[i], *counts[i + 1])


def _summarize(roots: dict[str, Any], searched: dict[str, Any], cfg: PivotalConfig, seconds: float,
               calls: list[dict[str, Any]]) -> dict[str, Any]:
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
        # pivots whose sides differ beyond chance (Fisher exact p < 0.05): at n = 10 a side, most 0.2 gaps do not
        "beyond_chance": sum(1 for r in searched.values() for t in r["traces"] for v in t["pivots"]
                             if pivot_p_value(t, v) < 0.05),
        "samples": total(searched.values(), "samples"), "prefixes": total(searched.values(), "prefixes"),
        "samples_per_prefix": round(total(searched.values(), "samples") / max(1, total(searched.values(), "prefixes")),
                                    2),
        "completion_tokens": total(searched.values(), "completion_tokens"),
        "prefilled_tokens": total(searched.values(), "prefilled_tokens"),
        # per pivot: the searched problems' whole cost, their p(0) included (qualifying others is reported apart)
        "model_tokens_per_pivot": round(all_tokens / n, 1) if n else None,
        "qualifying_tokens": root_tokens, "seconds_this_call": round(seconds, 1),
        # wall time over every call of the search, qualifying included (problems overlap, so their own seconds
        # do not add up to it); a call made before calls were logged is missing, and then what the timed calls
        # drew says how fast drawing went
        "wall_seconds": round(sum(c["seconds"] for c in calls), 1), "calls": len(calls),
        "timed_model_tokens": sum(c["completion_tokens"] + c["prefilled_tokens"] for c in calls),
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
                             "p_chosen": pair["p_chosen"], "p_rejected": pair["p_rejected"],
                             "p_value": round(pivot_p_value(t, v), 4)})
    tmp = out / "dpo.jsonl.tmp"
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(out / "dpo.jsonl")
    return len(rows)
