"""``reasonlab datagen``: runs become training datasets — traces (sft, dpo, kto, verifier, reward, in TRL's formats)
and pivotal-token pairs (``datagen pivotal``, which samples on the run's model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, get_args

import typer
from rich.console import Console

from reasonlab.cli.commands import with_fixed

def counts(by_reason: dict[str, int]) -> str:
    """'reason n, reason n' for the non-zero counts, or 'none'."""
    return ", ".join(f"{k} {v}" for k, v in by_reason.items() if v) or "none"


datagen_app = typer.Typer(no_args_is_help=True, help="Turn runs into training data: traces (sft, dpo, kto, "
                          "verifier, reward) or pivotal-token pairs (pivotal).")


def traces_cmd(
    kind: str,
    runs: list[Path] = typer.Argument(..., help="run directories to read traces from"),
    out: Path = typer.Option(..., "--out", "-o", help="the dataset to write (JSON lines; stats beside it)"),
    form: str = typer.Option("text", "--form", help="text (the rendered prompt) | conversational (message lists)"),
    per_problem: Optional[int] = typer.Option(None, "--per-problem",
                                              help="SFT: correct traces per problem (default 1); KTO, verifier: per label"),
    max_pairs: int = typer.Option(4, "--max-pairs", help="DPO, reward: pairs per problem"),
    balance: bool = typer.Option(False, "--balance", help="KTO: as many desirable as undesirable rows (the larger "
                                                          "class sampled down)"),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", help="drop traces longer than this"),
    any_format: bool = typer.Option(False, "--any-format", help="keep correct traces without a boxed answer, cut "
                                                                "or truncated, or with invented code output"),
    allow_contaminated: bool = typer.Option(False, "--allow-contaminated",
                                            help="keep problems that overlap a bundled test set"),
    no_token_ids: bool = typer.Option(False, "--no-token-ids", help="SFT: text only, without the recorded ids "
                                                                   "(for training a model with another vocabulary)"),
    seed: int = typer.Option(0, "--seed", help="which traces a cap keeps"),
) -> None:
    """Turn runs into a training dataset: the prompt exactly as the run rendered it, the trace as completion."""
    from reasonlab.datagen import DatagenConfig, datagen
    from reasonlab.recipes import from_layers

    cfg = from_layers(DatagenConfig, dict(kind=kind, form=form, per_problem=per_problem, max_pairs=max_pairs,
                                          balance=balance,
                                          max_completion_tokens=max_tokens, require_format=not any_format,
                                          allow_contaminated=allow_contaminated, token_ids=not no_token_ids,
                                          seed=seed))
    stats = datagen([str(r) for r in runs], out, cfg)
    dropped = counts(stats["dropped"])
    overlap = ", ".join(f"{k} {v}" for k, v in stats["contaminated_problems"].items())
    Console().print(f"{stats['rows']} {kind} rows from {stats['problems']} problems -> {out}\n"
                    f"dropped: {dropped}" + (f"\nproblems overlapping test sets ({'kept' if allow_contaminated else 'dropped'}): "
                                             f"{overlap}" if overlap else ""), highlight=False)


_HELP = {"sft": "Verified-correct traces as prompt/completion rows (STaR, rejection sampling).",
         "dpo": "A right and a wrong trace of one problem as chosen/rejected.",
         "kto": "Traces labelled desirable (correct, well formed) or not.",
         "verifier": "Yes/No rows for a generative outcome verifier.",
         "reward": "Right/wrong pairs for a scalar-head verifier (train reward)."}


def _register() -> None:
    from reasonlab.datagen.traces import Kind

    for kind in get_args(Kind):
        datagen_app.command(kind, help=_HELP[kind])(with_fixed(traces_cmd, "kind", kind))


_register()


@datagen_app.command("pivotal")
def pivotal_cmd(
    run: Path = typer.Argument(..., help="a run whose traces kept token ids (sampled on llamacpp or hf)"),
    out: Path = typer.Option(..., "--out", "-o", help="output directory (resumable): pivots, dpo.jsonl, summary"),
    problems: Optional[int] = typer.Option(None, "--problems", "-n", help="stop once this many problems qualified"),
    limit: Optional[int] = typer.Option(None, "--limit", help="draw at most this many problems"),
    problems_from: Optional[Path] = typer.Option(None, "--problems-from", help="search exactly the problems another "
                                                 "pivotal search searched (a fixed-n comparison on the same ones)"),
    estimator: str = typer.Option("sequential", "--estimator", help="sequential | fixed"),
    samples: int = typer.Option(10, "--samples", help="continuations per prefix (sequential: at most)"),
    threshold: float = typer.Option(0.2, "--threshold", help="|p(after) - p(before)| that makes a token pivotal"),
    p_range: str = typer.Option("0.2,0.8", "--p-range", help="search problems whose own p lies in LOW,HIGH"),
    max_tokens: int = typer.Option(512, "--max-tokens", help="longest continuation"),
    temperature: float = typer.Option(0.7, "--temperature", "-t"),
    top_p: float = typer.Option(0.8, "--top-p"),
    alternatives: int = typer.Option(4, "--alternatives", help="top-k alternatives tried for a pivot's pair"),
    traces: int = typer.Option(1, "--traces-per-problem"),
    confirm: bool = typer.Option(True, "--confirm/--no-confirm", help="sequential: keep a pivot only if it holds with "
                                 "both sides drawn to --samples"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="default: the model the run sampled"),
    lora: Optional[str] = typer.Option(None, "--lora", help="default: the run's adapter, if any"),
    parallel: int = typer.Option(16, "--parallel", help="sequences decoded together, and problems searched at once"),
    seed: int = typer.Option(0, "--seed"),
    force_new: bool = typer.Option(False, "--force-new", help="start over in --out instead of resuming"),
    draws_from: Optional[Path] = typer.Option(None, "--draws-from", help="take another search's continuations (same "
                                              "run and sampling) as this one's, up to --samples a prefix: none "
                                              "drawn twice; cost counted"),
    no_progress: bool = typer.Option(False, "--no-progress"),
) -> None:
    """Pivotal-token search (Phi-4): where a trace's chance of ending right jumps, and one-token DPO pairs there
    (dpo.jsonl, for `reasonlab train dpo --data`)."""
    import json

    from reasonlab.datagen.pivotal import PivotalConfig
    from reasonlab.datagen.pivotal_run import pivotal_search
    from reasonlab.engines import EngineConfig, load_engine
    from reasonlab.errors import ConfigError, DataError
    from reasonlab.recipes import from_layers
    from reasonlab.runs import read_run

    try:
        lo, hi = (float(x) for x in p_range.split(","))
    except ValueError:
        raise ConfigError(f"--p-range: expected LOW,HIGH such as 0.2,0.8, got {p_range!r}") from None
    ids = None
    if problems_from is not None:
        f = problems_from / "searched.jsonl"
        if not f.is_file():
            raise DataError(f"--problems-from {problems_from}: no searched.jsonl there (not a pivotal search output)")
        ids = tuple(json.loads(line)["id"] for line in f.read_text(encoding="utf-8").splitlines() if line.strip())
    cfg = from_layers(PivotalConfig, dict(estimator=estimator, samples=samples, threshold=threshold, p_range=(lo, hi),
                                          max_tokens=max_tokens, temperature=temperature, top_p=top_p,
                                          alternatives=alternatives, traces_per_problem=traces, problems=problems,
                                          ids=ids, parallel=parallel, seed=seed, confirm=confirm))
    source = read_run(run)
    engine_cfg = EngineConfig(**((source.config.get("config") or {}).get("engine") or {}))
    updates: dict[str, Any] = {"n_parallel": max(2, parallel)}  # top-k log-probs need the batched path
    if model is not None:
        updates.update(model=model, engine="auto")
    if lora is not None:
        updates["lora"] = lora
    engine = load_engine(engine_cfg.model_copy(update=updates))
    try:
        s = pivotal_search(run, out, engine, cfg, limit=limit, progress=False if no_progress else None,
                           force_new=force_new, draws_from=draws_from)
    finally:
        engine.close()
    Console().print(
        f"{s['problems_searched']} problems searched ({s['problems_qualified']} qualified of {s['problems_drawn']} "
        f"drawn): {s['pivots']} pivots ({s['raising']} raise p, {s['beyond_chance']} beyond chance), {s['pairs']} pairs "
        f"-> {out / 'dpo.jsonl'}\n"
        f"{s['samples']} continuations over {s['prefixes']} prefixes ({s['samples_per_prefix']} each), "
        f"{s['model_tokens_per_pivot']} model tokens per pivot, {s['wall_seconds']} s over {s['calls']} call(s)",
        highlight=False)


@datagen_app.command("variants")
def variants_cmd(
    dataset: str = typer.Option("gsm8k", "--dataset", "-d", help="problems with gold answers: bundled name or file"),
    limit: Optional[int] = typer.Option(None, "--limit", "-n", help="first N problems"),
    offset: int = typer.Option(0, "--offset"),
    out: Path = typer.Option(..., "--out", "-o", help="the variants (JSON lines); .originals.jsonl and .stats.json "
                                                     "beside it"),
    per_problem: int = typer.Option(5, "--per-problem", help="variants per accepted problem"),
    attempts: int = typer.Option(3, "--attempts", help="programs sampled per problem (the first greedy)"),
    max_tokens: int = typer.Option(512, "--max-tokens", help="longest program reply"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="the model writing the programs (default: the "
                                                                    "default model)"),
    parallel: int = typer.Option(8, "--parallel", help="problems at once (and sequences decoded together)"),
    seed: int = typer.Option(0, "--seed"),
    no_progress: bool = typer.Option(False, "--no-progress"),
) -> None:
    """GSM-Symbolic variants: the model writes solve(numbers) once per problem (checked against the gold answer in
    the sandbox); new numbers give new problems with computed answers. Evaluate them with `reasonlab eval -d OUT`."""
    from reasonlab.data import DatasetConfig, load_problems
    from reasonlab.datagen.variants import VariantsConfig, variants
    from reasonlab.engines import EngineConfig, load_engine
    from reasonlab.recipes import from_layers

    cfg = from_layers(VariantsConfig, dict(per_problem=per_problem, attempts=attempts, max_tokens=max_tokens,
                                           parallel=parallel, seed=seed))
    problems = load_problems(DatasetConfig(name=dataset, limit=limit, offset=offset))
    engine_cfg = EngineConfig(n_parallel=max(1, parallel), **({"model": model} if model else {}))
    engine = load_engine(engine_cfg)
    try:
        s = variants(problems, engine, out, cfg, progress=False if no_progress else None)
    finally:
        engine.close()
    rejected = counts(s["rejected"])
    Console().print(f"{s['accepted']} of {s['problems']} problems accepted ({s['acceptance_rate']:.0%}), "
                    f"{s['variants']} variants -> {out}\nrejected: {rejected}", highlight=False)


@datagen_app.command("problems")
def problems_cmd(
    out: Path = typer.Option(..., "--out", "-o", help="the kept problems (JSON lines, a --dataset); stats beside it"),
    proposals: int = typer.Option(100, "--proposals", "-n", help="problems proposed"),
    style: str = typer.Option("gsm8k", "--style", help="gsm8k (whole-number word problems) | aime (integers 0-999)"),
    proposer: Optional[str] = typer.Option(None, "--proposer", help="the model writing problems (default model)"),
    solver: Optional[str] = typer.Option(None, "--solver", help="the model solving them back (default: proposer)"),
    k: int = typer.Option(4, "--k", help="solver samples per problem"),
    m: int = typer.Option(3, "--m", help="samples that must reach the proposer's answer"),
    max_tokens: int = typer.Option(768, "--max-tokens", help="longest proposal and solve-back sample"),
    parallel: int = typer.Option(8, "--parallel", help="proposals at once (and sequences decoded together)"),
    seed: int = typer.Option(0, "--seed"),
    no_progress: bool = typer.Option(False, "--no-progress"),
) -> None:
    """New problems with checked answers: a model proposes, format checks and a solver that must agree decide,
    near duplicates and test-set overlaps are removed."""
    from reasonlab.datagen.problems import ProblemsConfig, generate_problems
    from reasonlab.engines import EngineConfig, load_engine
    from reasonlab.recipes import from_layers

    cfg = from_layers(ProblemsConfig, dict(proposals=proposals, style=style, k=k, m=m, max_tokens=max_tokens,
                                           solver_max_tokens=max_tokens, parallel=parallel, seed=seed))
    n_parallel = max(cfg.parallel, cfg.k)
    prop = load_engine(EngineConfig(n_parallel=n_parallel, **({"model": proposer} if proposer else {})))
    solv = None
    try:
        if solver is not None and solver != proposer:
            solv = load_engine(EngineConfig(model=solver, n_parallel=n_parallel))
        s = generate_problems(prop, out, cfg, solver=solv, progress=False if no_progress else None)
    finally:
        prop.close()
        if solv is not None:
            solv.close()
    rejected = counts(s["rejected"])
    Console().print(f"{s['kept']} of {s['proposed']} proposed problems kept ({s['kept_rate']:.0%}; solver pass rate "
                    f"{s['mean_solver_pass_rate']}) -> {out}\nrejected: {rejected}", highlight=False)


@datagen_app.command("hcot")
def hcot_cmd(
    runs: Optional[list[Path]] = typer.Argument(None, help="runs whose correct traces to segment"),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="or GSM8K-style rationales: gsm8k-train"),
    limit: Optional[int] = typer.Option(None, "--limit", "-n"),
    offset: int = typer.Option(0, "--offset"),
    out: Path = typer.Option(..., "--out", "-o", help="the rows (JSON lines); stats beside them"),
    segmenter: str = typer.Option("rules", "--segmenter", help="rules | model"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="the model segmenter's model"),
    min_chars: int = typer.Option(40, "--min-chars", help="shorter steps stay outside any thought"),
) -> None:
    """Hierarchical-CoT SFT rows: chains of thought segmented into [THOUGHT] ... [SOLUTION] ... [RETURN] without
    rewording (checked: the text with markers and results removed is the original)."""
    from reasonlab.datagen.hcot import HcotDataConfig, items_from_dataset, items_from_runs, write_hcot
    from reasonlab.engines import EngineConfig, load_engine
    from reasonlab.errors import ConfigError
    from reasonlab.recipes import from_layers

    if bool(runs) == bool(dataset):
        raise ConfigError("datagen hcot: give run directories or --dataset (one of them)")
    cfg = from_layers(HcotDataConfig, dict(segmenter=segmenter, min_chars=min_chars))
    items = items_from_runs([str(r) for r in runs]) if runs else items_from_dataset(dataset, limit, offset)
    engine = load_engine(EngineConfig(n_parallel=8, **({"model": model} if model else {}))) \
        if cfg.segmenter == "model" else None
    try:
        s = write_hcot(items, out, cfg, engine)
    finally:
        if engine is not None:
            engine.close()
    dropped = counts(s["dropped"])
    Console().print(f"{s['rows']} hcot rows from {s['items']} chains ({s['mean_thoughts']} thoughts each, results "
                    f"{s['mean_solution_ratio']} of the bodies' length) -> {out}\ndropped: {dropped}", highlight=False)
