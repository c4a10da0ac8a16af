"""Early-stopping votes against full maj@k: accuracy of each rule and the share of generated tokens it spends.

    python benchmarks/early_stop.py                      # default model, GSM8K first 50, k=8, T 0.7, top-p 0.8
    python benchmarks/early_stop.py --limit 20 --parallel 8
    python benchmarks/early_stop.py --offset 50 --out runs/early-stop-heldout   # problems 50-99

Step 1 samples k traces per problem with token log-probs into a run directory (resumable: the same
command picks up where a kill left it) — that run *is* the full maj@k baseline. Step 2 replays those very
samples through the vote strategy once per stopping rule (``reasonlab.evaluate.replay``): the strategy
code is the one a live run uses, each rule sees the same traces in the same order, and a trace a rule
cuts mid-generation is charged the tokens up to its cut. So the rules are compared paired, on equal
samples, and the comparison costs one sampling run instead of one per rule.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from reasonlab import EvalConfig, evaluate
from reasonlab.runs import read_run
from reasonlab.evaluate.replay import ReplayEngine
from reasonlab.strategies import get_template

RULES: dict[str, dict] = {
    "maj@k (no stop)": {"stop": "none"},
    "window w=2 (ESC)": {"stop": "window", "window": 2},
    "window w=4 (ESC)": {"stop": "window", "window": 4},
    "adaptive p>=0.95": {"stop": "adaptive", "threshold": 0.95, "wave": 1},
    "adaptive p>=0.90": {"stop": "adaptive", "threshold": 0.90, "wave": 1},
    "quorum >=2, >50%": {"stop": "quorum", "quorum_votes": 2, "quorum_fraction": 0.5, "wave": 1},
    "quorum >=3, >50%": {"stop": "quorum", "quorum_votes": 3, "quorum_fraction": 0.5, "wave": 1},
    "unbeatable (exact)": {"stop": "unbeatable", "wave": 1},
    "confidence keep 90% (DeepConf-high)": {"stop": "confidence", "conf_keep": 0.9, "weight": "confidence"},
    "confidence keep 50%": {"stop": "confidence", "conf_keep": 0.5, "weight": "confidence"},
    "confidence keep 10% (DeepConf-low)": {"stop": "confidence", "conf_keep": 0.1, "weight": "confidence"},
    "confidence keep 90%, tau 0.75": {"stop": "confidence", "conf_keep": 0.9, "consensus": 0.75,
                                      "weight": "confidence"},
    "confidence keep 50%, tau 0.75": {"stop": "confidence", "conf_keep": 0.5, "consensus": 0.75,
                                      "weight": "confidence"},
    # the best of a 48-setting grid on GSM8K problems 0-49: only a held-out run (--offset 50) can judge it
    "confidence keep 50%, tau 0.6, count (grid pick)": {"stop": "confidence", "conf_keep": 0.5, "consensus": 0.6,
                                                        "weight": "count"},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--dataset", default="gsm8k")
    ap.add_argument("--limit", type=int, default=50)
    ap.add_argument("--offset", type=int, default=0, help="skip this many problems (held-out checks)")
    ap.add_argument("--samples", "-k", type=int, default=8)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--top-p", type=float, default=0.8)
    ap.add_argument("--max-tokens", type=int, default=512)
    ap.add_argument("--parallel", type=int, default=16, help="sequences decoded together while sampling")
    ap.add_argument("--out", default="runs/early-stop")
    args = ap.parse_args()

    out = Path(args.out)
    base = {
        "engine": {"model": args.model, "n_parallel": args.parallel},
        "dataset": {"name": args.dataset, "limit": args.limit, "offset": args.offset},
        "sampling": {"temperature": args.temperature, "top_p": args.top_p, "max_tokens": args.max_tokens, "seed": 0},
        "strategy": "vote",
        "strategy_options": {"samples": args.samples, "keep_logprobs": True},
    }
    cfg = EvalConfig.from_layers(base)
    print(f"step 1: {args.samples} samples x {args.limit} problems into {out / 'full'} (resumes)", file=sys.stderr)
    full = evaluate(cfg, out=out / "full")
    records = read_run(out / "full").record_dicts()
    replay = ReplayEngine(records, get_template(cfg.prompt.template, cfg.prompt.system), base_seed=0)

    rows = []
    for label, opts in RULES.items():
        rcfg = EvalConfig.from_layers(base, {"strategy_options": {**opts, "keep_logprobs": False}})
        s = evaluate(rcfg, out=out / "replay" / _slug(label), engine=replay, force_new=True, progress=False)
        rows.append({"rule": label, "options": opts, "accuracy": s["accuracy"], "correct": s["correct"],
                     "n": s["n"], "tokens": s["tokens"], "mean_traces": s["mean_traces"],
                     "stop_reasons": s["stop_reasons"]})
    ref = rows[0]["tokens"] or 1
    for r in rows:
        r["token_ratio"] = round(r["tokens"] / ref, 3)

    samples = full.get("samples", {})
    print(f"\n{args.model} on {args.dataset} problems {args.offset}-{args.offset + full['n'] - 1}, k={args.samples}, T={args.temperature}, "
          f"top-p={args.top_p}, max {args.max_tokens} tokens")
    if samples:
        print("from the same samples: " + ", ".join(f"maj@{k} {m:.3f}" for k, m in zip(samples["k"], samples["maj"]))
              + f"; pass@{samples['k'][-1]} {samples['pass'][-1]:.3f}; avg@{samples['n_samples']} {samples['avg']:.3f}")
    print(f"{'rule':40s} {'acc':>6s} {'tokens':>8s} {'ratio':>6s} {'traces':>6s}  stop reasons")
    for r in rows:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(r["stop_reasons"].items()))
        print(f"{r['rule']:40s} {r['accuracy']:6.3f} {r['tokens']:8d} {r['token_ratio']:6.3f} "
              f"{r['mean_traces']:6.2f}  {reasons}")
    print("\nreproduce: python benchmarks/early_stop.py " + " ".join(sys.argv[1:]))
    (out / "early_stop.json").write_text(json.dumps({"args": vars(args), "rows": rows, "samples": samples}, indent=2))


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in label).strip("-").lower()


if __name__ == "__main__":
    main()
