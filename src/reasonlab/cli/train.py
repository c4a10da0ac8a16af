"""``reasonlab train``: fine-tune with TRL (one command per method: sft, dpo, kto, grpo, reward; recipe < flags,
resumable) and ``train export`` a result for llama.cpp."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, get_args

import typer
from rich.console import Console

from reasonlab.cli.commands import with_fixed

train_app = typer.Typer(no_args_is_help=True, help="Fine-tune with TRL (sft, dpo, kto, grpo); export the result.")


def train_cmd(
    method: str,
    model: Optional[str] = typer.Option(None, "--model", "-m", help="registered name, .gguf, HF dir or hub id"),
    data: Optional[Path] = typer.Option(None, "--data", help="sft/dpo/kto/reward: the dataset (reasonlab datagen)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="training run directory"),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML recipe (recipes/train/); flags win"),
    lr: Optional[float] = typer.Option(None, "--lr", help="learning rate"),
    epochs: Optional[float] = typer.Option(None, "--epochs"),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="optimizer steps (-1: from epochs)"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="rows per step (grpo: prompts per step)"),
    grad_accum: Optional[int] = typer.Option(None, "--grad-accum"),
    max_length: Optional[int] = typer.Option(None, "--max-length", help="tokens per row"),
    full: bool = typer.Option(False, "--full", help="full fine-tuning instead of LoRA"),
    rank: Optional[int] = typer.Option(None, "--lora-r", help="LoRA rank"),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="grpo: problems to roll out on"),
    limit: Optional[int] = typer.Option(None, "--limit", "-n", help="grpo: first N problems"),
    reward: Optional[str] = typer.Option(None, "--reward", help="grpo: comma list of correct, format, mod.path:fn"),
    weights: Optional[str] = typer.Option(None, "--reward-weights", help="grpo: comma list, one per reward"),
    generations: Optional[int] = typer.Option(None, "--generations", help="grpo: rollouts per prompt"),
    seed: Optional[int] = typer.Option(None, "--seed"),
    precision: Optional[str] = typer.Option(None, "--precision", help="auto (bf16 autocast where the hardware "
                                            "multiplies bf16) | fp32 | bf16"),
    force_new: bool = typer.Option(False, "--force-new", help="start over in --out instead of resuming"),
) -> None:
    """Fine-tune a model on a dataset (or, GRPO, on problems with verifier rewards). Re-running the same command
    resumes from the last checkpoint."""
    from reasonlab.recipes import flags_layer, from_layers, read_yaml
    from reasonlab.train import TrainConfig, train

    flags = flags_layer({
        ("method",): method, ("model",): model, ("data",): str(data) if data else None,
        ("out",): str(out) if out else None, ("learning_rate",): lr, ("epochs",): epochs, ("max_steps",): max_steps,
        ("batch_size",): batch_size, ("grad_accum",): grad_accum, ("max_length",): max_length, ("seed",): seed,
        ("precision",): precision,
        ("lora", "r"): rank, ("grpo", "dataset"): dataset, ("grpo", "limit"): limit,
        ("grpo", "rewards"): reward.split(",") if reward else None,
        ("grpo", "reward_weights"): [float(w) for w in weights.split(",")] if weights else None,
        ("grpo", "num_generations"): generations,
    })
    layers = [read_yaml(config) if config else {}, flags]
    if full:
        layers.append({"lora": None})
    cfg = from_layers(TrainConfig, *layers)
    if cfg.out == TrainConfig.model_fields["out"].default and out is None:
        cfg = cfg.model_copy(update={"out": f"runs/train/{cfg.method}-{Path(cfg.model).name}"})
    summary = train(cfg, force_new=force_new)
    Console().print(f"{summary['method']}: {summary['steps']} steps in {summary['seconds']} s"
                    + (" (resumed)" if summary["resumed"] else "")
                    + f", loss {summary['first_loss']} -> {summary['last_loss']}; result: {summary['result']}",
                    highlight=False)


_HELP = {"sft": "Supervised fine-tuning on prompt/completion rows (reasonlab datagen sft).",
         "dpo": "DPO on chosen/rejected pairs of one prompt (reasonlab datagen dpo).",
         "kto": "KTO on rows labelled desirable or not (reasonlab datagen kto).",
         "grpo": "GRPO on a dataset's problems, rolled out and rewarded by the verifier.",
         "reward": "A scalar-head outcome verifier on right/wrong pairs of one problem (reasonlab datagen reward)."}


def _register() -> None:
    from reasonlab.train.config import Method

    for method in get_args(Method):
        train_app.command(method, help=f"{_HELP[method]} Re-running the same command resumes from the last "
                          f"checkpoint.")(with_fixed(train_cmd, "method", method))


_register()


@train_app.command("export")
def export_cmd(
    result: Path = typer.Argument(..., help="a training run directory (or its adapter/ or model/)"),
    out: Path = typer.Option(..., "--out", "-o", help="the .gguf to write"),
    merge: bool = typer.Option(False, "--merge", help="one standalone model file instead of the LoRA adapter"),
    quant: str = typer.Option("q8_0", "--quant", help="with --merge: f16 | q8_0 | q6_k | q5_k_m | q4_k_m | q4_0 "
                              "(below q8_0 re-quantizing rounds part of a LoRA's update away)"),
    base: Optional[str] = typer.Option(None, "--base", help="the base GGUF (default: the model the run trained)"),
    scale: float = typer.Option(1.0, "--scale", help="with --merge: the adapter's weight"),
) -> None:
    """Write a training result for llama.cpp: its LoRA as a GGUF adapter (eval --lora), or with --merge a
    standalone GGUF (base + update, re-quantized by llama.cpp)."""
    from reasonlab.train.export import export

    path = export(result, out, merge=merge, quant=quant, base=base, scale=scale)  # type: ignore[arg-type]
    size = path.stat().st_size / 2**20
    Console().print(f"wrote {path} ({size:.0f} MiB)" + (f", {quant}" if merge else ", a LoRA for --lora"),
                    highlight=False)


@train_app.command("add-tokens")
def add_tokens_cmd(
    out: Path = typer.Option(..., "--out", "-o", help="the .gguf to write"),
    base: str = typer.Option("qwen2.5-coder-0.5b", "--base", help="registered name or .gguf"),
    slots: Optional[str] = typer.Option(None, "--slots", help="comma list of token ids to use (default: the "
                                                              "vocabulary's spare entries, e.g. Qwen's [PADn])"),
    rows: Optional[Path] = typer.Option(None, "--rows", help="a training run (or its adapter) whose trained rows for "
                                                             "the markers to write, instead of the seeds"),
) -> None:
    """Write the hierarchical-CoT markers ([THOUGHT] [SOLUTION] [RETURN]) into a GGUF's spare vocabulary slots, with
    the rows a run trained for them (--rows RUN) or rows seeded from phrases, so a model trained with them runs on
    llama.cpp (eval -m OUT --lora RUN)."""
    from reasonlab.engines import gguf_file
    from reasonlab.errors import ConfigError
    from reasonlab.train.gguf_vocab import add_gguf_tokens
    from reasonlab.train.tokens import HCOT_SEEDS

    try:
        ids = [int(x) for x in slots.split(",")] if slots else None
    except ValueError:
        raise ConfigError(f"--slots: expected comma-separated token ids, got {slots!r}") from None
    path, _ = gguf_file(base)
    trained = None
    if rows is not None:
        from reasonlab.engines.lora import adapter_token_rows

        adapter = rows / "adapter" if (rows / "adapter" / "adapter_config.json").exists() else rows
        if not (adapter / "adapter_config.json").exists():
            raise ConfigError(f"--rows {rows}: not a training run or a peft adapter (no adapter_config.json)")
        trained = adapter_token_rows(adapter)
        if not trained:
            raise ConfigError(f"--rows {rows}: the adapter trained no token rows (a run from before they were trained, "
                              f"or not an hcot run)")
    got = add_gguf_tokens(path, out, HCOT_SEEDS, ids, rows=trained)
    Console().print(f"wrote {out}: " + ", ".join(f"{t} = {i}" for t, i in got.items()), highlight=False)
