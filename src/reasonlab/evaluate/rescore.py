"""Score a finished run's traces with an outcome verifier, without sampling again: ``reasonlab score``.

    reasonlab score runs/gsm8k200-k8 --scorer-lora runs/train/verifier --out runs/gsm8k200-k8-genrm
    reasonlab score runs/gsm8k200-k8 --scorer self --out runs/gsm8k200-k8-judge     # zero-shot, the run's model

Sampling is the expensive half; scoring is cheap. Scoring stored traces compares every verifier on identical
samples (a paired comparison) and answers, for each, what a vote weighted by it, best-of-n and the filter would
have chosen — the same numbers a live run with ``--scorer`` reports. The new run directory holds the source's
records with a ``score`` on each trace that voted, and a summary with the verifier's metrics and cost
(``evaluate.metrics.verifier_metrics``). Resumable like any run: problems already scored are skipped; another
source or verifier in the same directory is refused.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from reasonlab.data import Problem
from reasonlab.engines import EngineConfig
from reasonlab.errors import DataError
from reasonlab.evaluate.metrics import summarize
from reasonlab.runs import ProblemRecord, RunStore, read_run
from reasonlab.strategies.scoring import Scorer, ScorerConfig, load_scorer


def voters(record: ProblemRecord) -> list[int]:
    """Indices of the traces that voted (valid, with an answer): the ones a live vote scores."""
    return [i for i, t in enumerate(record.traces)
            if t.valid and (t.tags or {}).get("vote_answer", t.answer) is not None]


def score_record(record: ProblemRecord, scorer: Scorer) -> ProblemRecord:
    """The record with each voting trace's score and, in its strategy meta, what scoring it cost."""
    idx = voters(record)
    problem = Problem(id=record.id, question=record.question, answer=record.gold)
    scored = scorer.score(problem, [record.traces[i].text for i in idx])
    traces = [t.model_copy() for t in record.traces]
    for i, p in zip(idx, scored.scores):
        traces[i].score = round(p, 4)
    meta = {**record.strategy_meta, "scorer": {"traces": len(idx), "tokens": scored.tokens,
                                               "seconds": round(scored.seconds, 3)}}
    return record.model_copy(update={"traces": traces, "strategy_meta": meta})


def rescore(source: str | Path, scorer_cfg: ScorerConfig, out: str | Path, progress: bool | None = None,
            force_new: bool = False) -> dict[str, Any]:
    """Score the traces of run ``source`` into the run directory ``out``; returns its summary."""
    from rich.progress import Progress

    run = read_run(source)
    if not run.records:
        raise DataError(f"{source}: no finished problems to score")
    cfg = run.config.get("config") or {}
    engine_cfg = EngineConfig(**(cfg.get("engine") or {}))
    store = RunStore(out)
    scorer = load_scorer(scorer_cfg, None, engine_cfg)
    try:
        identity = {"source": str(Path(source).resolve()), "source_identity": run.config.get("identity"),
                    "scorer": {**scorer_cfg.model_dump(mode="json"), **scorer.identity()}}
        store.open({"config": {**cfg, "scorer": scorer_cfg.model_dump(mode="json")}, "rescored_from": str(source),
                    "scorer_engine": scorer.engine.describe(), "command": " ".join(sys.argv)}, identity,
                   force_new=force_new)
        todo = set(store.todo(r.id for r in run.records))
        show = sys.stderr.isatty() if progress is None else progress
        with Progress(disable=not show, transient=True) as bar:
            task = bar.add_task("scoring traces", total=len(todo))
            for rec in run.records:
                if rec.id in todo:
                    store.append(score_record(rec, scorer))  # each problem stored as it is scored
                    bar.advance(task)
        records = [r.model_dump(mode="json") for r in store.records()]
        summary = summarize(records, cfg.get("strategy"), cfg.get("strategy_options"))
        summary.update(run_dir=str(store.path), source=str(source), scorer_stats=scorer.stats())
        store.write_summary(summary)
        return summary
    finally:
        scorer.close()
