"""``reasonlab experiment``: the research reproductions — run one, sweep a grid over seeds and settings, tabulate."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

experiment_app = typer.Typer(no_args_is_help=True, help="Research reproductions: run, sweep (key=a,b seed=7,8,9), "
                                                        "table.")


def _layers(config: Optional[Path]) -> dict:
    from reasonlab.recipes import read_yaml

    return read_yaml(config) if config else {}


@experiment_app.command("list")
def list_cmd() -> None:
    """The registered experiments."""
    from reasonlab.experiments import EXPERIMENTS

    for name in EXPERIMENTS.names():
        Console().print(f"{name}: {EXPERIMENTS.get(name).about}", highlight=False)


@experiment_app.command("run")
def run_cmd(
    name: str = typer.Argument(..., help="experiment (reasonlab experiment list)"),
    overrides: Optional[List[str]] = typer.Argument(None, help="key=value config overrides (dots nest)"),
    out: Path = typer.Option(..., "--out", "-o", help="run directory (re-run to resume)"),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML recipe; overrides win"),
    until: Optional[int] = typer.Option(None, "--until", help="stop (with a checkpoint) after this many steps"),
) -> None:
    """Train one configuration; re-running the same command resumes it."""
    from reasonlab.errors import ConfigError
    from reasonlab.experiments import EXPERIMENTS
    from reasonlab.experiments.grid import cells, config_of, parse_overrides

    exp = EXPERIMENTS.get(name)
    grid = parse_overrides(overrides or [])
    if any(len(v) > 1 for v in grid.values()):
        raise ConfigError("run takes one value per key: use 'reasonlab experiment sweep' for lists")
    cfg = config_of(exp, _layers(config), cells(grid)[0])
    result = exp.run(cfg, out, until=until)
    Console().print(f"{name}: {result['steps']} steps in {result['seconds']} s, {exp.metric} "
                    f"{result.get(exp.metric)}; {out}/result.json, {out}/curves.png", highlight=False)


@experiment_app.command("sweep")
def sweep_cmd(
    name: str = typer.Argument(..., help="experiment (reasonlab experiment list)"),
    overrides: List[str] = typer.Argument(..., help="key=v1,v2 ... (the grid is their product; seed=7,8,9 too)"),
    out: Path = typer.Option(..., "--out", "-o", help="directory: one run per cell, sweep.json, table.md, curves"),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML recipe under every cell"),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="cells at once, each its own process (cells use "
                                                            "'threads' cores each: jobs x threads <= cores)"),
) -> None:
    """Run a grid of configurations, each resumable (a finished cell is skipped), then print the table."""
    from reasonlab.experiments import EXPERIMENTS
    from reasonlab.experiments.grid import parse_overrides, sweep

    exp = EXPERIMENTS.get(name)
    err = Console(stderr=True)
    sweep(exp, parse_overrides(overrides), out, _layers(config),
          say=lambda line: err.print(line, markup=False, highlight=False), jobs=jobs)
    table_cmd(out)


@experiment_app.command("table")
def table_cmd(out: Path = typer.Argument(..., help="a sweep's directory")) -> None:
    """Each setting's final metric, mean ± standard deviation over seeds (table.md, curves.png)."""
    import json

    from reasonlab.errors import ConfigError
    from reasonlab.experiments import EXPERIMENTS
    from reasonlab.experiments.grid import markdown, plot, table

    meta = out / "grid.json"
    if not meta.exists():
        raise ConfigError(f"{out}: not a sweep directory (no grid.json)")
    exp = EXPERIMENTS.get(json.loads(meta.read_text())["experiment"])
    rows = table(out, exp.metric, columns=exp.columns)
    text = markdown(rows, exp.metric)
    (out / "table.md").write_text(text + "\n")
    plot(rows, exp.metric, out / "curves.png")
    Console().print(text, highlight=False, markup=False, soft_wrap=True)
    Console().print(f"wrote {out}/table.md and {out}/curves.png", highlight=False)
