"""Issue 15's figure and table from the sweep benchmarks/multokens.sh writes: loss curves in bits per character.

The sweep logs loss per token, which cannot compare the two conditions: a fact token stands for the ~7 tokens of
``6 * 9 = 54``, so the mul-token stream is shorter and each of its tokens carries more text. Here each run's logged
losses are put on a per-character scale and averaged over seeds. Training loss: times the training stream's
tokens per character (its windows are fresh random positions every step). Validation loss: its 320 windows are
the same positions at every evaluation, and with sources as different as Shakespeare (~2.6 bits/char) and drills
(~0.7) the share of drills they happen to hold biases the whole curve (by ~0.05 bits/char here), so each run's
curve is scaled to end at its exact figure — result.json's ``val_bpc``, the whole held-out stream, drawn as dots.
Prints the per-seed table and the paired differences (same seed, same documents).

    python benchmarks/multokens_plot.py [--dir runs/multokens/study] [--out docs/multokens.png]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from reasonlab.experiments.multokens import corpus
from reasonlab.experiments.multokens.config import MulTokensConfig


def chars(cfg: MulTokensConfig) -> tuple[int, int]:
    """(train, validation) characters of the un-injected documents, each document's end-of-text counted as one."""
    train, val = corpus.build(cfg.corpus, total_chars=4 * cfg.budget_tokens, seed=cfg.seed)
    return sum(len(d) + 1 for d in train), sum(len(d) + 1 for docs in val.values() for d in docs)


def load_runs(study: Path) -> list[dict[str, Any]]:
    runs = []
    for cell in sorted(study.glob("*/result.json")):
        result = json.loads(cell.read_text())
        if not result.get("finished"):
            continue
        cfg = MulTokensConfig(**json.loads((cell.parent / "config.json").read_text()))
        train_chars, _ = chars(cfg)
        to_bpc_train = result["data"]["train_tokens"] / train_chars / math.log(2)  # nats/token -> bits/char
        to_bpc_val = result["val_bpc"]["all"] / result["history"][-1]["val_loss"]  # calibrated on the exact end
        runs.append({"condition": cfg.condition, "seed": cfg.seed, "result": result,
                     "steps": [h["step"] for h in result["history"]],
                     "train": [h["train_loss"] * to_bpc_train for h in result["history"]],
                     "val": [h["val_loss"] * to_bpc_val for h in result["history"]],
                     "val_per_token": [h["val_loss"] for h in result["history"]]})  # as logged
    return runs


def seed_mean(rs: list[dict[str, Any]], key: str) -> list[float]:
    """The seeds' mean of a curve at each logged step."""
    return [statistics.mean(vals) for vals in zip(*(r[key] for r in rs))]


def plot(runs: list[dict[str, Any]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        by[r["condition"]].append(r)
    for (name, rs), color in zip(sorted(by.items()), ("tab:blue", "tab:orange")):
        steps = rs[0]["steps"]
        axes[0].plot(steps, seed_mean(rs, "val_per_token"), color=color, label=f"{name} val (mean of {len(rs)} seeds)")
        axes[1].plot(steps, seed_mean(rs, "val"), color=color, label=f"{name} val (mean of {len(rs)} seeds)")
        axes[1].plot(steps, seed_mean(rs, "train"), color=color, linestyle=":", label=f"{name} train")
        axes[1].scatter([steps[-1]] * len(rs), [r["result"]["val_bpc"]["all"] for r in rs], color=color,
                        marker="o", s=18, zorder=3)
    axes[0].set(title="as logged: loss per token (not comparable)", xlabel="step", ylabel="nats / token")
    axes[1].set(title="bits per character (dots: exact, whole held-out stream)", xlabel="step",
                ylabel="bits / character")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def table(runs: list[dict[str, Any]]) -> None:
    keys = ("shakespeare", "gsm8k", "drills", "all")
    print("| condition | seed | val loss/token | " + " | ".join(f"bpc {k}" for k in keys) + " | forced top-1 | "
          "emb operand−all | GSM8K after SFT |")
    print("|---|---|---|" + "---|" * (len(keys) + 3))
    for r in sorted(runs, key=lambda r: (r["condition"], r["seed"])):
        res, p = r["result"], r["result"]["probes"]
        emb = p["embedding"]["shared_operand"] - p["embedding"]["all_pairs"]
        print(f"| {r['condition']} | {r['seed']} | {res['val_loss']:.3f} | "
              + " | ".join(f"{res['val_bpc'][k]:.3f}" for k in keys)
              + f" | {p['forced']['top1']:.3f} | {emb:+.3f} | {res['sft']['accuracy']:.3f} |")
    seeds = sorted({r["seed"] for r in runs})
    pick = {(r["condition"], r["seed"]): r["result"]["val_bpc"] for r in runs}
    print("\npaired by seed, multokens − baseline, bits per character (mean ± std over seeds):")
    for k in keys:
        d = [pick[("multokens", s)][k] - pick[("baseline", s)][k] for s in seeds
             if ("multokens", s) in pick and ("baseline", s) in pick]
        if d:
            sd = statistics.stdev(d) if len(d) > 1 else float("nan")
            print(f"  {k:12s} {statistics.mean(d):+.4f} ± {sd:.4f}  (n={len(d)}: {', '.join(f'{x:+.4f}' for x in d)})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=Path("runs/multokens/study"))
    ap.add_argument("--out", type=Path, default=Path("docs/multokens.png"))
    args = ap.parse_args()
    runs = load_runs(args.dir)
    if not runs:
        raise SystemExit(f"{args.dir}: no finished runs (benchmarks/multokens.sh writes them)")
    table(runs)
    plot(runs, args.out)
    print(f"\n{args.out}  (python benchmarks/multokens_plot.py --dir {args.dir} --out {args.out})")


if __name__ == "__main__":
    main()
