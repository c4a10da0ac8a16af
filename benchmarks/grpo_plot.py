"""The GRPO reward curve of a training run, split by reward, with a running mean (each step sees only
batch_size new prompts, so one step's reward says more about its prompts than about the policy), and the share of
groups whose rollouts all scored alike (no advantage, so no gradient from them).

    python benchmarks/grpo_plot.py runs/star/train-grpo --out docs/grpo-reward.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def running_mean(xs: list[float], k: int) -> list[float]:
    return [sum(xs[max(0, i - k + 1):i + 1]) / len(xs[max(0, i - k + 1):i + 1]) for i in range(len(xs))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a `reasonlab train grpo` output directory")
    ap.add_argument("--out", type=Path, default=None, help="PNG (default RUN/reward.png)")
    ap.add_argument("--window", type=int, default=5, help="steps in the running mean")
    args = ap.parse_args()

    rows = [json.loads(x) for x in (args.run / "log_history.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "reward" in r]
    steps = [r["step"] for r in rows]
    names = sorted(k.removeprefix("rewards/").removesuffix("/mean") for k in rows[0]
                   if k.startswith("rewards/") and k.endswith("/mean"))

    fig, (ax, az) = plt.subplots(1, 2, figsize=(10, 3.4), gridspec_kw={"width_ratios": [2, 1]})
    for name, color in zip(["reward"] + names, ["black", "tab:blue", "tab:orange", "tab:green"]):
        ys = [r["reward"] if name == "reward" else r[f"rewards/{name}/mean"] for r in rows]
        label = "weighted total" if name == "reward" else name
        ax.plot(steps, ys, ".", color=color, alpha=0.4)
        ax.plot(steps, running_mean(ys, args.window), "-", color=color, label=f"{label} ({args.window}-step mean)")
        half = len(ys) // 2
        print(f"{label:>16}: first {half} steps {sum(ys[:half]) / half:.3f}, "
              f"last {len(ys) - half} {sum(ys[half:]) / (len(ys) - half):.3f}")
    ax.set(xlabel="step", ylabel="mean reward of the step's rollouts", title=f"GRPO rewards: {args.run}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    zero = [r.get("frac_reward_zero_std", 0.0) for r in rows]
    az.bar(steps, zero, color="tab:gray")
    az.set(xlabel="step", ylabel="share", ylim=(0, 1.05), title="groups with no reward spread")
    az.grid(alpha=0.3)
    print(f"groups with no reward spread: {sum(zero) / len(zero):.2f} of all (their rollouts give no gradient)")
    fig.tight_layout()
    out = args.out or args.run / "reward.png"
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")
    print(f"reproduce: python benchmarks/grpo_plot.py {args.run} --out {out}")


if __name__ == "__main__":
    main()
