"""``reasonlab datagen``: runs become training datasets (SFT, DPO, KTO in TRL's formats)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from rich.console import Console


def datagen_cmd(
    kind: str = typer.Argument(..., help="sft (correct traces) | dpo (right vs wrong pairs) | kto (labelled traces) "
                                         "| verifier (Yes/No rows for an outcome verifier) | reward (pairs for a scalar-head verifier)"),
    runs: list[Path] = typer.Argument(..., help="run directories to read traces from"),
    out: Path = typer.Option(..., "--out", "-o", help="the dataset to write (JSON lines; stats beside it)"),
    form: str = typer.Option("text", "--form", help="text (the rendered prompt) | conversational (message lists)"),
    per_problem: Optional[int] = typer.Option(None, "--per-problem",
                                              help="SFT: correct traces per problem (default 1); KTO, verifier: per label"),
    max_pairs: int = typer.Option(4, "--max-pairs", help="DPO, reward: pairs per problem"),
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
    from reasonlab.errors import ConfigError

    try:
        cfg = DatagenConfig(kind=kind, form=form, per_problem=per_problem, max_pairs=max_pairs,
                            max_completion_tokens=max_tokens, require_format=not any_format,
                            allow_contaminated=allow_contaminated, token_ids=not no_token_ids, seed=seed)
    except ValueError as e:
        first = e.errors()[0] if hasattr(e, "errors") else {"loc": ("?",), "msg": str(e)}
        raise ConfigError(f"datagen {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    stats = datagen([str(r) for r in runs], out, cfg)
    dropped = ", ".join(f"{k} {v}" for k, v in stats["dropped"].items() if v) or "none"
    overlap = ", ".join(f"{k} {v}" for k, v in stats["contaminated_problems"].items())
    Console().print(f"{stats['rows']} {kind} rows from {stats['problems']} problems -> {out}\n"
                    f"dropped: {dropped}" + (f"\nproblems overlapping test sets ({'kept' if allow_contaminated else 'dropped'}): "
                                             f"{overlap}" if overlap else ""), highlight=False)

