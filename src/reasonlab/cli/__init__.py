"""The ``reasonlab`` command. Subcommands import their machinery only when they run.

    reasonlab solve "What is 17 * 3?"
    reasonlab eval --dataset gsm8k --limit 50 --out runs/gsm8k-greedy
    reasonlab eval --strategy vote --samples 8 --stop quorum -t 0.7 --limit 50
    reasonlab sweep --strategy forced --max-thinking 128,256,512 --limit 50 --out runs/sweep-forced
    reasonlab report runs/gsm8k-greedy runs/gsm8k-vote --out runs/report
    reasonlab summary runs/gsm8k-greedy
    reasonlab compare runs/gsm8k200-base runs/gsm8k200-star
    reasonlab datagen sft runs/star-sample --out data/star-sft.jsonl
    reasonlab datagen pivotal runs/star-sample --out runs/pivotal -n 30
    reasonlab train sft --data data/star-sft.jsonl --out runs/train/star
    reasonlab train export runs/train/star --merge --quant q8_0 --out star.gguf
    reasonlab models | reasonlab models pull qwen2.5-coder-1.5b
    reasonlab datasets
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from reasonlab.cli.catalog import register_catalog_commands
from reasonlab.cli.datagen import datagen_app
from reasonlab.cli.experiment import experiment_app
from reasonlab.cli.runs import ScorerKindOpt, ScorerLoraOpt, ScorerOpt, register_run_commands
from reasonlab.cli.train import train_app
from reasonlab.cli.tables import say_failures, summary_table, verifier_table
from reasonlab.errors import ConfigError, ReasonlabError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Make small language models reason better at math, and measure it honestly.")
out = Console()
err = Console(stderr=True)

# flags shared by solve and eval: (section, field) each maps to in EvalConfig
ModelOpt = typer.Option(None, "--model", "-m", help="registered name, .gguf path, HF dir, hub id, or server URL")
EngineOpt = typer.Option(None, "--engine", help="llamacpp | hf | openai (default: from --model)")
BaseUrlOpt = typer.Option(None, "--base-url", help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
TokenizerOpt = typer.Option(None, "--tokenizer", help="servers: the served model's tokenizer (hub id, HF dir, "
                            ".gguf or registered name) to render chat templates the server cannot")
LoraOpt = typer.Option(None, "--lora", help="a LoRA adapter on the model: .gguf, peft adapter dir or training run "
                       "dir (reasonlab train)")
TempOpt = typer.Option(None, "--temperature", "-t", help="0 = greedy")
TopPOpt = typer.Option(None, "--top-p")
MinPOpt = typer.Option(None, "--min-p")
MaxTokOpt = typer.Option(None, "--max-tokens", help="most tokens generated per trace")
SeedOpt = typer.Option(None, "--seed", help="sampling seed, and the shuffle seed")
PromptOpt = typer.Option(None, "--prompt", help="template name (boxed, plain, completion) or text with {question}")
SystemOpt = typer.Option(None, "--system", help="system message")
StrategyOpt = typer.Option(None, "--strategy", "-s",
                           help="single | forced | timed | tir | vote | prompts | mixture | branch")
ConfigOpt = typer.Option(None, "--config", "-c", help="YAML recipe; flags override it")
ThreadsOpt = typer.Option(None, "--threads", help="llamacpp: CPU threads")
CtxOpt = typer.Option(None, "--n-ctx", help="llamacpp: context window")
ParallelOpt = typer.Option(None, "--parallel", help="llamacpp: sequences decoded together (batched sampling)")
ToolsOpt = typer.Option(None, "--tools", help="python: tool-integrated reasoning (the model's code runs in a sandbox)")
SamplesOpt = typer.Option(None, "--samples", "-k", help="vote: most traces per problem")
StopOpt = typer.Option(None, "--stop", help="vote early-stop rule: none | window | adaptive | quorum | confidence")
PolicyOpt = typer.Option(None, "--policy", help="vote: trace policy (single, forced, timed, tir)")
MaxThinkOpt = typer.Option(None, "--max-thinking", help="budget forcing: cut at this many tokens and cue the answer")
MinThinkOpt = typer.Option(None, "--min-thinking", help="budget forcing: say 'Wait' when the model ends earlier")
OptionOpt = typer.Option(None, "--option", "-O", help="strategy option key=value (YAML value; dots nest), repeatable")
BudgetTokOpt = typer.Option(None, "--budget-tokens", help="generated tokens per problem, all traces together")
BudgetSecOpt = typer.Option(None, "--budget-seconds", help="wall time per problem")
RunSecOpt = typer.Option(None, "--run-seconds", help="wall time for the whole run, shared out AIMO-style")

SEARCH = ("vote", "prompts", "mixture")  # strategies whose traces come from a policy


def _layer(pairs: dict[tuple[str, ...], Any]) -> dict[str, Any]:
    from reasonlab.recipes import flags_layer

    return flags_layer(pairs)


def _config(recipe: Optional[Path], flags: dict[tuple[str, ...], Any], options: Optional[dict[str, Any]] = None):
    from reasonlab.evaluate import EvalConfig

    return EvalConfig.from_layers(_merged_layers(recipe, flags, options or {}))


def _strategy_flags(strategy: Optional[str], tools: Optional[str], samples: Optional[int], stop: Optional[str],
                    policy: Optional[str], max_thinking: Optional[int], min_thinking: Optional[int],
                    options: Optional[list[str]], recipe: Optional[Path] = None) -> tuple[Optional[str], dict[str, Any]]:
    """The strategy name and the strategy_options layer the shortcut flags and -O key=value give."""
    import yaml

    from reasonlab.errors import ConfigError
    from reasonlab.evaluate import EvalConfig

    opts: dict[str, Any] = {}
    if strategy is None and recipe is not None:
        strategy = EvalConfig.read_yaml(recipe).get("strategy")
    if strategy is None and (samples is not None or stop is not None or policy is not None):
        strategy = "vote"  # --samples 8 alone means self-consistency
    if tools is not None:
        if tools != "python":
            raise ConfigError(f"unknown --tools '{tools}' (known: python)")
        if strategy in SEARCH:
            policy = policy or "tir"  # SC-TIR: the vote's traces run their code
        else:
            strategy = strategy or "tir"  # tool-integrated reasoning: the trace policy that runs the model's code
    if (max_thinking or min_thinking) and strategy in SEARCH:
        policy = policy or "forced"
    elif max_thinking or min_thinking:
        strategy = strategy or "forced"
    forced = {"max_thinking": max_thinking, "min_thinking": min_thinking}
    forced = {k: v for k, v in forced.items() if v is not None}
    if strategy in SEARCH:
        opts.update({k: v for k, v in {"samples": samples, "stop": stop, "policy": policy}.items() if v is not None})
        if forced:
            opts["policy_options"] = forced
    else:
        if samples is not None or stop is not None or policy is not None:
            raise ConfigError("--samples, --stop and --policy belong to a search strategy: add --strategy vote")
        opts.update(forced)
    for item in options or []:
        key, eq, raw = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--option '{item}': expected key=value")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = opts
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return strategy, opts


def _common(model, engine, base_url, temperature, top_p, min_p, max_tokens, seed, prompt, system, strategy,
            threads, n_ctx, parallel=None, tools=None, tokenizer=None, lora=None) -> dict[tuple[str, ...], Any]:
    if tools is not None:
        prompt = prompt or "tir"
    return {
        ("engine", "model"): model, ("engine", "engine"): engine, ("engine", "base_url"): base_url,
        ("engine", "tokenizer"): tokenizer, ("engine", "lora"): lora,
        ("engine", "n_threads"): threads, ("engine", "n_ctx"): n_ctx, ("engine", "n_parallel"): parallel,
        ("sampling", "temperature"): temperature, ("sampling", "top_p"): top_p, ("sampling", "min_p"): min_p,
        ("sampling", "max_tokens"): max_tokens, ("sampling", "seed"): seed,
        ("prompt", "template"): prompt, ("prompt", "system"): system, ("strategy",): strategy,
    }


@app.command()
def solve(
    question: str = typer.Argument(..., help="the problem, in words"),
    model: Optional[str] = ModelOpt, engine: Optional[str] = EngineOpt, base_url: Optional[str] = BaseUrlOpt,
    tokenizer: Optional[str] = TokenizerOpt, lora: Optional[str] = LoraOpt,
    temperature: Optional[float] = TempOpt, top_p: Optional[float] = TopPOpt, min_p: Optional[float] = MinPOpt,
    max_tokens: Optional[int] = MaxTokOpt, seed: Optional[int] = SeedOpt, prompt: Optional[str] = PromptOpt,
    system: Optional[str] = SystemOpt, strategy: Optional[str] = StrategyOpt, config: Optional[Path] = ConfigOpt,
    threads: Optional[int] = ThreadsOpt, n_ctx: Optional[int] = CtxOpt, parallel: Optional[int] = ParallelOpt,
    tools: Optional[str] = ToolsOpt, samples: Optional[int] = SamplesOpt, stop: Optional[str] = StopOpt,
    policy: Optional[str] = PolicyOpt, max_thinking: Optional[int] = MaxThinkOpt,
    min_thinking: Optional[int] = MinThinkOpt, option: Optional[list[str]] = OptionOpt,
    budget_tokens: Optional[int] = BudgetTokOpt, budget_seconds: Optional[float] = BudgetSecOpt,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="print only the answer"),
) -> None:
    """Solve one problem and show the reasoning and the extracted answer."""
    from reasonlab.engines import load_engine
    from reasonlab.evaluate import solve as solve_one

    strategy, opts = _strategy_flags(strategy, tools, samples, stop, policy, max_thinking, min_thinking, option, config)
    flags = _common(model, engine, base_url, temperature, top_p, min_p, max_tokens, seed, prompt, system, strategy,
                    threads, n_ctx, parallel, tools, tokenizer=tokenizer, lora=lora)
    flags.update({("budget", "max_tokens"): budget_tokens, ("budget", "max_seconds"): budget_seconds})
    cfg = _config(config, flags, opts)
    with load_engine(cfg.engine) as eng:
        attempt = solve_one(question, eng, cfg)
    if quiet:
        out.print(attempt.answer if attempt.answer is not None else "")
        return
    for trace in attempt.traces:
        out.print(trace.text, markup=False, highlight=False)
    tokens, secs = attempt.completion_tokens, attempt.seconds
    out.rule()
    out.print(f"[bold]answer:[/] {attempt.answer if attempt.answer is not None else '(none found)'}   "
              f"[dim]{tokens} tokens in {secs:.1f}s ({tokens / secs if secs else 0:.1f} tok/s)[/]")


def _engine_opts(items: list[str] | None) -> dict[tuple[str, ...], Any]:
    """-E KEY=VALUE (YAML value) as engine flags; EngineConfig checks the names."""
    import yaml

    out: dict[tuple[str, ...], Any] = {}
    for item in items or []:
        key, eq, raw = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--engine-opt {item!r}: expected KEY=VALUE (e.g. kv_shift=true)")
        out[("engine", key.strip())] = yaml.safe_load(raw)
    return out


def _where(items: list[str] | None) -> dict[str, list[str]] | None:
    """--where FIELD=V1,V2 (repeatable) as the dataset's ``where``."""
    if not items:
        return None
    out: dict[str, list[str]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key or not values:
            raise ConfigError(f"--where {item!r}: expected FIELD=V1,V2 (e.g. level=1,2)")
        out[key.strip()] = [v.strip() for v in values.split(",")]
    return out


@app.command("eval")
def eval_cmd(
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="bundled name, file path, or HF id"),
    limit: Optional[int] = typer.Option(None, "--limit", "-n", help="at most this many problems"),
    offset: Optional[int] = typer.Option(None, "--offset", help="skip this many problems first"),
    where: Optional[list[str]] = typer.Option(None, "--where", help="FIELD=V1,V2: keep problems whose metadata "
                                              "field has one of the values (e.g. level=1,2), repeatable"),
    engine_opt: Optional[list[str]] = typer.Option(None, "--engine-opt", "-E", help="engine option KEY=VALUE (any "
                                                   "EngineConfig field: kv_shift=true, prefix_cache=false, ...), "
                                                   "repeatable"),
    shuffle: Optional[bool] = typer.Option(None, "--shuffle/--no-shuffle", help="shuffle (with --seed) first"),
    split: Optional[str] = typer.Option(None, "--split", help="HF datasets: split"),
    question_field: Optional[str] = typer.Option(None, "--question-field"),
    answer_field: Optional[str] = typer.Option(None, "--answer-field"),
    id_field: Optional[str] = typer.Option(None, "--id-field"),
    answer_type: Optional[str] = typer.Option(None, "--answer-type", help="auto|number|int|mod1000|latex|text"),
    model: Optional[str] = ModelOpt, engine: Optional[str] = EngineOpt, base_url: Optional[str] = BaseUrlOpt,
    tokenizer: Optional[str] = TokenizerOpt, lora: Optional[str] = LoraOpt,
    temperature: Optional[float] = TempOpt, top_p: Optional[float] = TopPOpt, min_p: Optional[float] = MinPOpt,
    max_tokens: Optional[int] = MaxTokOpt, seed: Optional[int] = SeedOpt, prompt: Optional[str] = PromptOpt,
    system: Optional[str] = SystemOpt, strategy: Optional[str] = StrategyOpt, config: Optional[Path] = ConfigOpt,
    threads: Optional[int] = ThreadsOpt, n_ctx: Optional[int] = CtxOpt, parallel: Optional[int] = ParallelOpt,
    tools: Optional[str] = ToolsOpt, samples: Optional[int] = SamplesOpt, stop: Optional[str] = StopOpt,
    policy: Optional[str] = PolicyOpt, max_thinking: Optional[int] = MaxThinkOpt,
    min_thinking: Optional[int] = MinThinkOpt, option: Optional[list[str]] = OptionOpt,
    budget_tokens: Optional[int] = BudgetTokOpt, budget_seconds: Optional[float] = BudgetSecOpt,
    run_seconds: Optional[float] = RunSecOpt,
    scorer: Optional[str] = ScorerOpt, scorer_lora: Optional[str] = ScorerLoraOpt,
    scorer_kind: Optional[str] = ScorerKindOpt,
    concurrency: Optional[int] = typer.Option(None, "--concurrency", help="problems in flight (servers)"),
    max_errors: Optional[int] = typer.Option(None, "--max-errors",
                                             help="stop after this many problems fail in a row (default 10)"),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="run directory (default runs/<dataset>-<model>-<strategy>)"),
    force_new: bool = typer.Option(False, "--force-new", help="start over when --out holds another config"),
    json_out: bool = typer.Option(False, "--json", help="print the summary as JSON"),
    no_progress: bool = typer.Option(False, "--no-progress", help="no live progress bar"),
) -> None:
    """Evaluate a model and strategy on a dataset; re-running the same command resumes."""
    from reasonlab.evaluate import evaluate

    strategy, opts = _strategy_flags(strategy, tools, samples, stop, policy, max_thinking, min_thinking, option, config)
    flags = _common(model, engine, base_url, temperature, top_p, min_p, max_tokens, seed, prompt, system,
                    strategy, threads, n_ctx, parallel, tools, tokenizer=tokenizer, lora=lora)
    flags.update({
        ("budget", "max_tokens"): budget_tokens, ("budget", "max_seconds"): budget_seconds,
        ("budget", "run_seconds"): run_seconds,
        ("dataset", "name"): dataset, ("dataset", "limit"): limit, ("dataset", "offset"): offset,
        ("dataset", "shuffle"): shuffle, ("dataset", "seed"): seed, ("dataset", "split"): split,
        ("dataset", "question_field"): question_field, ("dataset", "answer_field"): answer_field,
        ("dataset", "id_field"): id_field, ("dataset", "answer_type"): answer_type,
        ("dataset", "where"): _where(where),
        ("concurrency",): concurrency, ("max_errors",): max_errors,
    })
    if concurrency is not None:
        flags[("engine", "concurrency")] = concurrency
    flags.update(_engine_opts(engine_opt))
    if scorer is not None or scorer_lora is not None or scorer_kind is not None:
        flags[("scorer", "kind")] = scorer_kind or "generative"
        flags[("scorer", "model")] = None if scorer in (None, "self") else scorer
        flags[("scorer", "lora")] = scorer_lora
    cfg = _config(config, flags, opts)
    summary = evaluate(cfg, out=out_dir, force_new=force_new, progress=None if not no_progress else False)
    if json_out:
        out.print_json(json.dumps(summary))
        say_failures(summary)
        return
    out.print(summary_table([summary], title=f"{cfg.dataset.name}, {summary['run_dir']}"))
    if summary.get("verifier"):  # traces were scored: what selecting by the verifier gives, on these traces
        out.print(verifier_table(summary["verifier"], "outcome verifier on this run's traces"))
    out.print(f"[dim]{summary['new_this_time']} solved now, {summary['n'] - summary['new_this_time']} reused from "
              f"the run directory; results in {summary['run_dir']}/results.jsonl[/]")
    say_failures(summary)


def _find(tree: dict[str, Any], value: Any, prefix: str = "") -> Optional[str]:
    """The dotted path where ``value`` sits in a nested dict."""
    for key, v in tree.items():
        if v is value or (isinstance(v, str) and v == value):
            return prefix + key
        if isinstance(v, dict):
            hit = _find(v, value, prefix + key + ".")
            if hit:
                return hit
    return None


@app.command()
def sweep(
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="bundled name, file path, or HF id"),
    limit: Optional[int] = typer.Option(None, "--limit", "-n", help="at most this many problems"),
    offset: Optional[int] = typer.Option(None, "--offset", help="skip this many problems first"),
    model: Optional[str] = ModelOpt, engine: Optional[str] = EngineOpt, base_url: Optional[str] = BaseUrlOpt,
    tokenizer: Optional[str] = TokenizerOpt, lora: Optional[str] = LoraOpt,
    temperature: Optional[float] = TempOpt, top_p: Optional[float] = TopPOpt, min_p: Optional[float] = MinPOpt,
    max_tokens: Optional[int] = MaxTokOpt, seed: Optional[int] = SeedOpt, prompt: Optional[str] = PromptOpt,
    system: Optional[str] = SystemOpt, strategy: Optional[str] = StrategyOpt, config: Optional[Path] = ConfigOpt,
    threads: Optional[int] = ThreadsOpt, n_ctx: Optional[int] = CtxOpt, parallel: Optional[int] = ParallelOpt,
    tools: Optional[str] = ToolsOpt, stop: Optional[str] = StopOpt, policy: Optional[str] = PolicyOpt,
    option: Optional[list[str]] = OptionOpt,
    samples: Optional[str] = typer.Option(None, "--samples", "-k", help="vote sample counts, e.g. 1,2,4,8"),
    max_thinking: Optional[str] = typer.Option(None, "--max-thinking", help="budget forcing caps, e.g. 128,256,512"),
    min_thinking: Optional[str] = typer.Option(None, "--min-thinking", help="budget forcing minimums, e.g. 64,128"),
    vary: Optional[str] = typer.Option(None, "--vary", help="any strategy option: KEY=v1,v2,... (dots nest)"),
    out_dir: Path = typer.Option(..., "--out", "-o", help="directory for one run per value, sweep.json, sweep.png"),
) -> None:
    """A scaling curve in one command: one run per value (or shared samples for maj@k), sweep.json and a plot."""
    import yaml

    from reasonlab.errors import ConfigError
    from reasonlab.evaluate.sweep import sweep as run_sweep

    lists = {name: text for name, text in (("samples", samples), ("max_thinking", max_thinking),
                                            ("min_thinking", min_thinking)) if text}
    swept = [n for n, t in lists.items() if "," in t] + (["vary"] if vary else [])
    if len(swept) != 1:
        raise ConfigError("sweep: give exactly one list to sweep (--samples, --max-thinking, --min-thinking or --vary)")
    if vary:
        vkey, eq, vtext = vary.partition("=")
        if not eq:
            raise ConfigError(f"--vary '{vary}': expected KEY=v1,v2")
        values = [yaml.safe_load(x) for x in vtext.split(",")]
    else:
        values = [int(x) for x in lists[swept[0]].split(",")]
    first = {name: int(text.split(",")[0]) for name, text in lists.items()}
    marker = -987654321  # find where the swept flag lands in the config (forced vs a vote's policy options)
    if swept[0] != "vary":
        first[swept[0]] = marker
    strategy, opts = _strategy_flags(strategy, tools, first.get("samples"), stop, policy, first.get("max_thinking"),
                                     first.get("min_thinking"), option, config)
    flags = _common(model, engine, base_url, temperature, top_p, min_p, max_tokens, seed, prompt, system, strategy,
                    threads, n_ctx, parallel, tools, tokenizer=tokenizer, lora=lora)
    flags.update({("dataset", "name"): dataset, ("dataset", "limit"): limit, ("dataset", "offset"): offset,
                  ("dataset", "seed"): seed})
    base = _merged_layers(config, flags, opts)
    key = "strategy_options." + vkey.strip() if vary else "strategy_options." + (_find(opts, marker) or swept[0])
    res = run_sweep(base, key, values, out_dir, say=lambda line: err.print(line, markup=False, highlight=False))
    table = Table(title=f"sweep {key}")
    for col in ("value", "accuracy", "95% CI", "tokens/problem", "s/problem"):
        table.add_column(col, justify="right")
    for pt in res["points"]:
        table.add_row(str(pt["value"]), f"{pt['accuracy']:.3f}", f"{pt['ci95'][0]:.2f}-{pt['ci95'][1]:.2f}",
                      f"{pt['mean_tokens']:.0f}", f"{pt['seconds_per_problem']:.1f}")
    if res["reused_samples"]:
        table.caption = "maj@k estimated from the same samples (random k-subsets), bootstrap 95% CI"
    out.print(table)
    out.print(f"wrote {out_dir}/sweep.json and {res['plot']}", soft_wrap=True)


def _merged_layers(recipe: Optional[Path], flags: dict[tuple[str, ...], Any], options: dict[str, Any]) -> dict[str, Any]:
    """The merged (unvalidated) layers: recipe <- flags <- strategy options, as one dict."""
    from reasonlab.evaluate import EvalConfig
    from reasonlab.recipes import deep_merge as _deep_merge

    merged: dict[str, Any] = {}
    for layer in (EvalConfig.read_yaml(recipe) if recipe else {}, _layer(flags), {"strategy_options": options}):
        _deep_merge(merged, layer)
    return merged


# the commands kept in their own modules, after solve, eval and sweep in --help: what reads runs, what turns them
# into training data and models, the research reproductions, and what this machine has
register_run_commands(app)
app.add_typer(datagen_app, name="datagen")
app.add_typer(train_app, name="train")
app.add_typer(experiment_app, name="experiment")
register_catalog_commands(app)


def _terminate(signum: int, frame: object) -> None:
    # a polite kill gets the same clean stop as Ctrl-C; said with the time, so a log shows what stopped a long run
    err.print(f"{time.strftime('%H:%M:%S')} received {signal.Signals(signum).name}", highlight=False)
    raise KeyboardInterrupt


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    try:
        rc = app(standalone_mode=False)
    except ReasonlabError as e:
        err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        rc = 130
    except Exception as e:
        # click's usage errors and Abort — typer >= 0.20 raises its own vendored copies of click's classes,
        # so they are recognised by shape, not by class
        if type(e).__name__ == "Abort":
            rc = 130
        elif callable(getattr(e, "show", None)) and isinstance(getattr(e, "exit_code", None), int):
            e.show()
            sys.exit(e.exit_code)
        else:
            raise
    if rc == 130:  # typer turns Ctrl-C (and our SIGTERM) into Exit(130)
        err.print("[yellow]interrupted:[/] finished problems are saved; run the same command again to resume",
                  soft_wrap=True)
    sys.exit(rc if isinstance(rc, int) else 0)
