"""What the ``reasonlab`` command prints about runs: the results table, the failed-problems line, and what
selecting by an outcome verifier gives."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

err = Console(stderr=True)


def summary_table(rows: list[dict[str, Any]], title: str = "results") -> Table:
    """One row per run. A single run puts model and strategy in the title so the numbers fit 80 columns."""
    many = len(rows) > 1
    if not many:
        title = f"{title} · {rows[0].get('model', '')} · {rows[0].get('strategy', '')}"
    table = Table(title=title)
    failed = any(s.get("failed") for s in rows)
    cols = (["run", "model", "strategy"] if many else []) + ["n", "correct", "accuracy", "95% CI", "found",
                                                             "tok/prob", "tok/s", "cut"] + (["failed"] if failed else [])
    for col in cols:
        table.add_column(col, justify="left" if col in ("run", "model", "strategy") else "right", no_wrap=not many)
    for s in rows:
        lo, hi = s.get("accuracy_ci95", [0, 0])
        cells = [str(s["n"]), str(s["correct"]), f"{s['accuracy']:.3f}", f"{lo:.2f}-{hi:.2f}",
                 f"{s['answer_found_rate']:.0%}", f"{s['mean_tokens']:.0f}",
                 f"{s.get('tokens_per_s_wall', s['tokens_per_s']):.1f}",
                 str(s.get("truncated", 0))] + ([str(s.get("failed", 0))] if failed else [])
        run = [str(s.get("run_dir", "")), str(s.get("model", "")), str(s.get("strategy", ""))] if many else []
        table.add_row(*run, *cells)
    table.caption = ("found: an answer was extracted · tok/prob: generated tokens per problem · tok/s: over wall time "
                     "this run (problems in flight overlap) · cut: hit max tokens"
                     + (" · failed: engine errors, not graded (accuracy is over the n that finished); run the "
                        "same command again to retry them" if failed else ""))
    return table


def say_failures(summary: dict[str, Any]) -> None:
    """The line a run with failed problems ends with (they are not counted as wrong answers)."""
    errors = summary.get("errors") or []
    retry = [e for e in errors if e.get("retryable", True)]
    if retry:
        first = retry[0]
        err.print(f"[yellow]{len(retry)} problems failed: run the same command again to retry them[/] "
                  f"(first: {escape(first['id'])}: {escape(first['error'])})", soft_wrap=True, highlight=False)
    if len(errors) > len(retry):
        err.print(f"[red]{len(errors) - len(retry)} problems failed for good[/] (retrying cannot help, e.g. a prompt "
                  f"longer than the context): listed in {escape(summary['run_dir'])}/errors.jsonl",
                  soft_wrap=True, highlight=False)


def verifier_table(v: dict[str, Any], title: str) -> Table:
    """An outcome verifier's ``summary["verifier"]`` block: AUROC, and accuracy selecting by each rule."""
    from reasonlab.evaluate.metrics import SELECTIONS

    auroc = "n/a" if v["auroc_within"] is None else f"{v['auroc_within']:.3f}"
    table = Table(title=f"{title} (within-problem AUROC {auroc}, {v['auroc_within_problems']} problems)",
                  title_justify="left", caption=f"{v['traces']} traces of {v.get('problems_answered', v['problems'])} "
                  f"problems with an answer (accuracy over all {v['problems']}); scoring read "
                  f"{v['cost']['tokens']:.0f} prompt tokens in {v['cost']['seconds']:.0f} s", caption_justify="left")
    table.add_column("selecting by")
    for col in ("accuracy", "95% CI"):
        table.add_column(col, justify="right")
    for key, name in SELECTIONS:
        table.add_row(name, f"{v[key]['acc']:.3f}", f"{v[key]['ci95'][0]:.3f}-{v[key]['ci95'][1]:.3f}")
    return table


def verifiers_table(rows: list[dict[str, Any]]) -> Table:
    """Runs scored by outcome verifiers side by side (``reasonlab summary`` of ``reasonlab score`` outputs): how
    each ranks a problem's traces, what selecting by it gives, and what its scores cost."""
    from reasonlab.evaluate.metrics import SELECTIONS

    table = Table(title="outcome verifiers", title_justify="left",
                  caption="AUROC: within a problem, over problems with a right and a wrong trace · accuracy over "
                          "all problems; (%) the share of pass - majority it gains · tok/s: prompt tokens the verifier "
                          "read per second", caption_justify="left")
    table.add_column("run", overflow="fold", min_width=10)
    for col in ("AUROC", "majority", "weighted", "best-of-n", "pass", "tokens", "s", "tok/s"):
        table.add_column(col, justify="right", no_wrap=True)

    def cell(selected: dict[str, Any]) -> str:  # an accuracy, and for a selection by score the gap share it closes
        gap = selected.get("gap_closed")
        return f"{selected['acc']:.3f}" + ("" if gap is None else f" ({gap:+.0%})")

    for row in rows:
        v = row["verifier"]
        cost = v.get("cost", {})
        auroc = "n/a" if v["auroc_within"] is None else f"{v['auroc_within']:.3f}"
        speed = f"{cost['tokens'] / cost['seconds']:.0f}" if cost.get("seconds") else "-"
        table.add_row(escape(str(row["run_dir"])), auroc, *(cell(v[key]) for key, _ in SELECTIONS),
                      f"{cost.get('tokens', 0):.0f}", f"{cost.get('seconds', 0):.0f}", speed)
    return table
