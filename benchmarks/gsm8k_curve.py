"""The README figure: accuracy vs generated tokens per problem on GSM8K's first 50, every strategy measured.

    python benchmarks/gsm8k_curve.py --out docs/gsm8k50-curve.png

Reads finished run directories (see the README's results for the command behind each); draws nothing it
cannot read, and prints the points it drew.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from reasonlab.evaluate import summarize
from reasonlab.runs import read_run
from reasonlab.evaluate.metrics import sample_curves

RUNS = {
    "greedy": "runs/gsm8k50-greedy",
    "TIR (greedy)": "runs/gsm8k50-tir",
    "SC-TIR, 8 samples": "runs/sc-tir-8",
    "forced, min 400 (Wait)": "runs/forced-min400",
}
REPLAYS = {  # early-stop rules replayed over the vote's samples
    "quorum >=2": "runs/early-stop/replay/quorum---2---50",
    "window w=2": "runs/early-stop/replay/window-w-2--esc",
    "confidence keep 90%": "runs/early-stop/replay/confidence-keep-90---deepconf-high",
    "confidence keep 10%": "runs/early-stop/replay/confidence-keep-10---deepconf-low",
}


def point(path: str) -> tuple[float, float, float, float] | None:
    if not (Path(path) / "results.jsonl").exists():
        return None
    recs = read_run(path).record_dicts()
    s = summarize(recs)
    lo, hi = s["accuracy_ci95"]
    return s["mean_tokens"], s["accuracy"], lo, hi


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/gsm8k50-curve.png")
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    if Path("runs/early-stop/full/results.jsonl").exists():
        recs = read_run("runs/early-stop/full").record_dicts()
        c = sample_curves(recs, ks=list(range(1, 9)))
        per_trace = summarize(recs)["mean_tokens"] / 8
        x = [k * per_trace for k in c["k"]]
        ax.plot(x, c["maj"], "o-", color="tab:blue", label="vote, maj@k, k=1..8 (T 0.7)")
        ax.fill_between(x, [b[0] for b in c["maj_ci95"]], [b[1] for b in c["maj_ci95"]], color="tab:blue", alpha=0.1)
        print("maj@k:", [(k, round(xx), m) for k, xx, m in zip(c["k"], x, c["maj"])])
    forced = []
    for d in sorted(Path("runs/sweep-forced").glob("max_thinking=*"), key=lambda p: int(p.name.split("=")[1])):
        pt = point(str(d))
        if pt:
            forced.append((int(d.name.split("=")[1]), *pt))
    if forced:
        ax.plot([f[1] for f in forced], [f[2] for f in forced], "s--", color="tab:orange",
                label="forced, max thinking " + "/".join(str(f[0]) for f in forced))
        print("forced:", [(f[0], round(f[1]), f[2]) for f in forced])
    for (label, path), marker in zip(list(RUNS.items()) + list(REPLAYS.items()), "D^*vPXhp<>"):
        pt = point(path)
        if pt:
            ax.errorbar([pt[0]], [pt[1]], yerr=[[pt[1] - pt[2]], [pt[3] - pt[1]]], fmt=marker, capsize=2, alpha=0.85,
                        label=label if path in RUNS.values() else f"early stop: {label}")
            print(f"{label}: {pt[0]:.0f} tokens, {pt[1]:.3f}")
    ax.set_xscale("log")
    ax.set_xlabel("generated tokens per problem (log)")
    ax.set_ylabel("accuracy, GSM8K first 50 (95% CI)")
    ax.set_title("qwen2.5-coder-0.5b (Q4_K_M) on 2 vCPUs")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}\nreproduce: python benchmarks/gsm8k_curve.py --out {args.out}")


if __name__ == "__main__":
    main()
