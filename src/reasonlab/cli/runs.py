"""The commands that read finished runs: ``summary``, ``compare``, ``report`` and ``score`` (an outcome verifier
over stored traces), and the ``--scorer`` flags ``eval`` shares with ``score``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from reasonlab.cli.tables import summary_table, verifier_table, verifiers_table

out = Console()

ScorerOpt = typer.Option(None, "--scorer", help="outcome verifier scoring every trace: a model, or 'self' (the run's "
                         "model, zero-shot); votes use it with -O weight=verifier, select=best, stop=verifier, min_score")
ScorerKindOpt = typer.Option(None, "--scorer-kind", help="generative (P(Yes), default) | classifier (a scalar head: "
                             "reasonlab train reward)")
ScorerLoraOpt = typer.Option(None, "--scorer-lora", help="a trained verifier: LoRA on the scorer's model (default: "
                             "the run's); see reasonlab datagen verifier")


def summary(runs: list[Path] = typer.Argument(..., help="run directories")) -> None:
    """Show the results of finished (or interrupted) runs side by side."""
    from reasonlab.evaluate import summarize
    from reasonlab.runs import read_run

    rows = []
    for path in runs:
        run = read_run(path)
        cfg = run.config.get("config", {})
        rows.append({**summarize(run.record_dicts(), cfg.get("strategy"), cfg.get("strategy_options")), "run_dir": str(path), "failed": len(run.errors),
                     "model": cfg.get("engine", {}).get("model", "?"), "strategy": cfg.get("strategy", "?")})
    out.print(summary_table(rows, title="results" if len(rows) > 1 else str(rows[0]["run_dir"])))
    scored = [r for r in rows if r.get("verifier")]
    if scored:  # runs an outcome verifier scored (eval --scorer, reasonlab score): them side by side
        out.print(verifiers_table(scored))


def compare(
    base: Path = typer.Argument(..., help="the run to compare against (e.g. the model before training)"),
    runs: list[Path] = typer.Argument(..., help="runs on the same problems"),
) -> None:
    """Paired comparison on the problems both runs graded: who got which right, the accuracy difference with a
    paired bootstrap 95% interval, and McNemar's exact p-value."""
    from reasonlab.errors import DataError
    from reasonlab.evaluate.metrics import paired
    from reasonlab.runs import read_run

    ref = read_run(base).record_dicts()
    table = Table(title=f"paired against {base} (base: its accuracy)", title_justify="left",
                  caption="lost: right in base only · won: right in run only · 95% CI: paired bootstrap · "
                          "p: McNemar exact", caption_justify="left")
    table.add_column("run", overflow="fold", min_width=10)  # a narrow terminal wraps the path, not the figures
    for col in ("n", "base", "acc", "lost", "won", "diff", "95% CI", "p"):
        table.add_column(col, justify="right", no_wrap=True)
    for path in runs:
        r = paired(ref, read_run(path).record_dicts())
        if not r["n"]:
            raise DataError(f"{path} and {base} share no graded problem: compare runs on the same problems")
        lo, hi = r["diff_ci"]
        table.add_row(escape(str(path)), str(r["n"]), f"{r['base_correct'] / r['n']:.3f}",
                      f"{r['other_correct'] / r['n']:.3f}", str(r["only_base"]), str(r["only_other"]),
                      f"{r['diff']:+.3f}", f"{lo:+.3f}..{hi:+.3f}", f"{r['p_mcnemar']:.3f}")
    out.print(table)


def report(
    runs: list[Path] = typer.Argument(..., help="run directories (a sweep's subdirectories too)"),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="where report.html goes (default: the run, if one)"),
) -> None:
    """report.html with plots and every problem's traces, for one or more runs side by side."""
    from reasonlab.evaluate.report import write_report

    page = write_report(list(runs), out_dir)
    out.print(f"wrote {page}", soft_wrap=True)


def score(
    run: Path = typer.Argument(..., help="a finished run whose traces to score (a vote keeps them all)"),
    out_dir: Path = typer.Option(..., "--out", "-o", help="the scored run's directory"),
    scorer: Optional[str] = ScorerOpt, scorer_lora: Optional[str] = ScorerLoraOpt,
    scorer_kind: str = typer.Option("generative", "--scorer-kind", help="generative | classifier"),
    force_new: bool = typer.Option(False, "--force-new", help="start over when --out holds another scoring"),
    no_progress: bool = typer.Option(False, "--no-progress", help="no live progress bar"),
) -> None:
    """Score a run's traces with an outcome verifier without sampling again: within-problem AUROC, and what a
    verifier-weighted vote, best-of-n and pass would give on the same traces. Resumes like eval."""
    from pydantic import ValidationError

    from reasonlab.errors import ConfigError
    from reasonlab.evaluate.rescore import rescore
    from reasonlab.strategies.scoring import ScorerConfig

    try:
        cfg = ScorerConfig(kind=scorer_kind, model=None if scorer in (None, "self") else scorer,  # type: ignore[arg-type]
                           lora=scorer_lora)
    except ValidationError as e:
        first = e.errors()[0]
        raise ConfigError(f"--scorer-{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    summary = rescore(run, cfg, out_dir, progress=False if no_progress else None, force_new=force_new)
    out.print(verifier_table(summary["verifier"], f"{run} scored by {scorer_lora or scorer or 'self'}"))
    out.print(f"[dim]{summary['run_dir']}[/]")


def register_run_commands(app: typer.Typer) -> None:
    for fn in (summary, compare, report):
        app.command()(fn)
    app.command("score")(score)
