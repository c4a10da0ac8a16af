"""Sweeps for every experiment, shaped like hydra's multirun (``key=a,b seed=7,8,9``): the grid is the product of
the listed values, each cell is a run directory named by its overrides (resumable: a finished cell is skipped, a
killed one resumes), and the table gives each setting's final metric as mean and standard deviation over seeds.

    >>> parse_overrides(["use_reasoner=true,false", "weight_groups=[A,A,A,A],[A,B,C,D]", "lr=3e-3"])
    {'use_reasoner': [True, False], 'weight_groups': [['A', 'A', 'A', 'A'], ['A', 'B', 'C', 'D']], 'lr': [0.003]}
    >>> grid = {"a": [1, 2], "steps": [500], "seed": [7, 8]}
    >>> [cell_name(varying(c, grid)) for c in cells(grid)]
    ['a=1,seed=7', 'a=1,seed=8', 'a=2,seed=7', 'a=2,seed=8']
"""

from __future__ import annotations

import itertools
import json
import statistics
from pathlib import Path
from typing import Any, Callable

import yaml

from reasonlab.errors import ConfigError
from reasonlab.experiments import Experiment
from reasonlab.experiments.loop import write_json
from reasonlab.recipes import from_layers


def _split(values: str) -> list[str]:
    """Split at commas outside brackets: "[A,B],[C,D]" -> ["[A,B]", "[C,D]"]."""
    out, depth, cur = [], 0, ""
    for ch in values:
        depth += ch in "[({"
        depth -= ch in "])}"
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    return out + [cur]


def _value(text: str) -> Any:
    v = yaml.safe_load(text)
    if isinstance(v, str):  # YAML 1.1 reads 3e-3 as text
        try:
            return float(v)
        except ValueError:
            return v
    return text if v is None and text not in ("null", "~") else v


def parse_overrides(items: list[str]) -> dict[str, list[Any]]:
    """["key=v1,v2", ...] -> {key: [v1, v2]} (values read as YAML: true, 3e-3, [A,B] are what they look like)."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key or not values:
            raise ConfigError(f"override {item!r}: expected key=value or key=v1,v2,...")
        if key in grid:
            raise ConfigError(f"override {key!r} given twice")
        grid[key] = [_value(v) for v in _split(values)]
    return grid


def cells(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def varying(cell: dict[str, Any], grid: dict[str, list[Any]]) -> dict[str, Any]:
    """The part of a cell that names it: keys given more than one value (the rest is the same in every cell)."""
    return {k: v for k, v in cell.items() if len(grid[k]) > 1}


def _show(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "".join(str(x) for x in v)
    return str(v).lower() if isinstance(v, bool) else str(v)


def cell_name(cell: dict[str, Any]) -> str:
    return ",".join(f"{k}={_show(v)}" for k, v in cell.items()) or "default"


def _nest(cell: dict[str, Any]) -> dict[str, Any]:
    """Dotted keys to nested dicts (a.b=1 -> {a: {b: 1}})."""
    layer: dict[str, Any] = {}
    for key, value in cell.items():
        node = layer
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return layer


def config_of(exp: Experiment, recipe: dict[str, Any], cell: dict[str, Any]) -> Any:
    return from_layers(exp.config, recipe, _nest(cell))


def _run_cell(name: str, config: dict[str, Any], where: str) -> dict[str, Any]:
    """One cell in a worker process (sweep with jobs > 1): the experiment looked up again by name."""
    from reasonlab.experiments import EXPERIMENTS

    exp = EXPERIMENTS.get(name)
    return exp.run(exp.config.model_validate(config), Path(where), progress=False)


def sweep(exp: Experiment, grid: dict[str, list[Any]], out: Path, recipe: dict[str, Any] | None = None,
          say: Callable[[str], None] = print, progress: bool = True, jobs: int = 1) -> list[dict[str, Any]]:
    """Run every cell not yet finished (each in ``out/<cell name>``), ``jobs`` at a time (each in its own
    process: cells are single-threaded by default, so a machine with N cores runs N); write ``out/sweep.json``;
    return its rows, in cell order. A cell's result does not depend on what ran beside it."""
    recipe = recipe or {}
    todo = cells(grid)
    configs = [config_of(exp, recipe, c) for c in todo]  # every cell validated before the first one runs
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "grid.json", {"experiment": exp.name, "grid": grid, "recipe": recipe})
    results: dict[int, dict[str, Any]] = {}
    pending = []
    for n, cell in enumerate(todo):
        done = out / cell_name(varying(cell, grid)) / "result.json"
        result = json.loads(done.read_text()) if done.exists() else None
        if result is not None and result.get("finished"):
            results[n] = result
        else:
            pending.append(n)

    def record() -> list[dict[str, Any]]:
        rows = [{"cell": todo[n], "dir": cell_name(varying(todo[n], grid)), exp.metric: r.get(exp.metric),
                 "seconds": r.get("seconds"), "parameters": r.get("parameters")} for n, r in sorted(results.items())]
        write_json(out / "sweep.json", rows)
        return rows

    if jobs <= 1:
        for n in pending:
            say(f"[{n + 1}/{len(todo)}] {cell_name(todo[n])}")
            results[n] = exp.run(configs[n], out / cell_name(varying(todo[n], grid)), progress=progress)
            record()
        return record()
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_run_cell, exp.name, configs[n].model_dump(mode="json"),
                               str(out / cell_name(varying(todo[n], grid)))): n for n in pending}
        for n in pending:
            say(f"[{n + 1}/{len(todo)}] {cell_name(todo[n])} (queued, {jobs} at a time)")
        for fut in as_completed(futures):
            n = futures[fut]
            results[n] = fut.result()
            say(f"[{n + 1}/{len(todo)}] done: {exp.metric} {results[n].get(exp.metric)}")
            record()
    return record()


def table(out: Path, metric: str, seed_key: str = "seed",
          columns: Callable[[dict[str, Any]], dict[str, float]] | None = None) -> list[dict[str, Any]]:
    """One row per setting (the cell minus its seed): the metric's mean, standard deviation and values over
    the finished seeds, from each cell's result.json; ``columns`` adds more numbers per run (averaged)."""
    grid = json.loads((out / "grid.json").read_text())["grid"]
    groups: dict[str, dict[str, Any]] = {}
    for cell in cells(grid):
        done = out / cell_name(varying(cell, grid)) / "result.json"
        if not done.exists():
            continue
        result = json.loads(done.read_text())
        if not result.get("finished") or result.get(metric) is None:
            continue
        setting = {k: v for k, v in varying(cell, grid).items() if k != seed_key}
        row = groups.setdefault(cell_name(setting), {"setting": setting, "values": [], "seeds": [], "curves": [],
                                                     "extra": []})
        row["values"].append(result[metric])
        row["extra"].append(columns(result) if columns else {})
        row["seeds"].append(cell.get(seed_key))
        row["curves"].append([(h["step"], h[metric]) for h in result.get("history", []) if metric in h])
    rows = []
    for row in groups.values():
        vals = row["values"]
        names = [k for k in row["extra"][0]] if row["extra"] else []
        means = {k: statistics.fmean(e[k] for e in row["extra"] if e.get(k) is not None)
                 for k in names if any(e.get(k) is not None for e in row["extra"])}
        rows.append({**row, "mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
                     "n": len(vals), "columns": means})
    return rows


def markdown(rows: list[dict[str, Any]], metric: str) -> str:
    keys = list(rows[0]["setting"]) if rows else []
    extra: list[str] = []  # the extra columns any row has, in the order the experiment gives them
    for r in rows:
        extra += [k for k in r.get("columns", {}) if k not in extra]
    head = "| " + " | ".join(keys + [f"{metric} mean ± std", "seeds"] + [f"{k} (mean)" for k in extra]) + " |"
    lines = [head, "|" + "---|" * (len(keys) + 2 + len(extra))]
    def order(r: dict[str, Any]) -> list[tuple[int, Any]]:  # numbers by value (8 before 32), the rest as text
        return [(0, v) if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, _show(v))
                for v in (r["setting"][k] for k in keys)]

    for r in sorted(rows, key=order):
        cols = [f"{r['columns'][k]:.4g}" if k in r.get("columns", {}) else "—" for k in extra]
        lines.append("| " + " | ".join([_show(r["setting"][k]) for k in keys]
                                       + [f"{r['mean']:.4f} ± {r['std']:.4f}", str(r["n"])] + cols) + " |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], metric: str, path: Path) -> None:
    """Each setting's validation curve, the mean over its seeds (steps all seeds reached)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        curves = [dict(c) for c in r["curves"] if c]
        if not curves:
            continue
        steps = sorted(set.intersection(*(set(c) for c in curves)))
        ax.plot(steps, [statistics.fmean(c[s] for c in curves) for s in steps], label=cell_name(r["setting"]))
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
