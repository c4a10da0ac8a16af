"""``reasonlab sweep``: one command for a scaling curve.

    reasonlab sweep --strategy vote --samples 1,2,4,8 --temperature 0.7 --limit 50 --out runs/sweep-vote
    reasonlab sweep --strategy forced --max-thinking 128,256,512 --limit 50 --out runs/sweep-forced
    reasonlab sweep --strategy vote --vary stop=none,quorum,window --samples 8 ...

Sample counts of a plain vote (no early stop, every trace counted once) reuse samples: one run at the
largest k, and maj@k for every smaller k is estimated from the same samples (mean over k-subsets) with
a bootstrap interval — valid because the k samples of a problem are exchangeable. Not for ``prompts``
or ``mixture`` (a real k=1 uses the first variant or model only), early-stopped votes (they did not
run every sample) or weighted votes (maj@k counts equally): those run once per value. Every other swept value is its
own run directory under ``--out`` (each resumable), named ``key=value``. The sweep writes
``sweep.json`` and ``sweep.png`` (accuracy vs generated tokens, one point per value).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Callable

from reasonlab.evaluate.config import EvalConfig
from reasonlab.evaluate.metrics import sample_curves, samples_caveat
from reasonlab.evaluate.runner import evaluate
from reasonlab.runs import read_run


def _set(layer: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(layer)
    node = out
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def sweep(base: dict[str, Any], key: str, values: list[Any], out: str | Path,
          say: Callable[[str], None] = print, engine: Any = None) -> dict[str, Any]:
    """Run ``base`` (a config layer dict) once per value of the dotted config ``key``, into ``out``/key=value.

    ``strategy_options.samples`` on a vote with no stop rule runs once, at the largest value.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    points: list[dict[str, Any]] = []
    cfg0 = EvalConfig.from_layers(base)
    # one big vote stands in for smaller k only where its samples are exchangeable and counted equally:
    # a plain vote that ran every sample (not prompts/mixture: a real k=1 uses the first variant/model only)
    reuse = (key == "strategy_options.samples" and cfg0.strategy == "vote"
             and samples_caveat(cfg0.strategy, cfg0.strategy_options) is None
             and cfg0.strategy_options.get("weight", "count") == "count")
    if reuse:
        k_max = max(int(v) for v in values)
        run_dir = out / f"samples={k_max}"
        say(f"sweep: {k_max} samples once into {run_dir}; maj@k for k in {values} from those samples")
        cfg = EvalConfig.from_layers(_set(base, key, k_max))
        summary = evaluate(cfg, out=run_dir, engine=engine)
        records = read_run(run_dir).record_dicts()
        curve = sample_curves(records, ks=sorted(int(v) for v in values))
        per_trace = summary["mean_tokens"] / max(summary["mean_traces"], 1e-9)
        secs_per_trace = _wall_per_problem(summary) / max(summary["mean_traces"], 1e-9)
        for k, maj, ci, pas in zip(curve["k"], curve["maj"], curve["maj_ci95"], curve["pass"]):
            points.append({"value": k, "accuracy": maj, "ci95": ci, "pass_at_k": pas,
                           "mean_tokens": round(per_trace * k, 1), "seconds_per_problem": round(secs_per_trace * k, 2),
                           "run_dir": str(run_dir), "estimated_from": k_max})
    else:
        for v in values:
            run_dir = out / f"{key.split('.')[-1]}={v}"
            say(f"sweep: {key}={v} into {run_dir}")
            cfg = EvalConfig.from_layers(_set(base, key, v))
            s = evaluate(cfg, out=run_dir, engine=engine)
            points.append({"value": v, "accuracy": s["accuracy"], "ci95": s["accuracy_ci95"],
                           "mean_tokens": round(s["mean_tokens"], 1),
                           "seconds_per_problem": _wall_per_problem(s), "run_dir": str(run_dir)})
    result = {"key": key, "values": values, "reused_samples": reuse, "points": points}
    (out / "sweep.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    result["plot"] = _plot(result, out)
    return result


def _wall_per_problem(s: dict[str, Any]) -> float:
    """Wall seconds per problem: this invocation's wall time over the problems it ran (problems in flight
    overlap, so summed latencies overstate it); a run resumed with nothing to do falls back to latency."""
    if s.get("new_this_time"):
        return round(s["wall_seconds_this_time"] / s["new_this_time"], 2)
    return round(s["seconds"] / max(1, s["n"]), 2)


def _plot(result: dict[str, Any], out: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = result["points"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    x = [p["mean_tokens"] for p in pts]
    y = [p["accuracy"] for p in pts]
    err = [[p["accuracy"] - p["ci95"][0] for p in pts], [p["ci95"][1] - p["accuracy"] for p in pts]]
    ax.errorbar(x, y, yerr=err, fmt="o-", capsize=3)
    for p in pts:
        ax.annotate(f"{result['key'].split('.')[-1]}={p['value']}", (p["mean_tokens"], p["accuracy"]),
                    textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("generated tokens per problem" + (" (expected, from shared samples)" if result["reused_samples"] else ""))
    ax.set_ylabel("accuracy (95% CI)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "sweep.png", dpi=100)
    plt.close(fig)
    return str(out / "sweep.png")
