"""The hierarchical-CoT table (research notebook 002's, plus peak live context and accuracy) from the runs
benchmarks/hcot_loop.sh writes: per dataset and generation mode, max tokens, wall time, generated tokens,
retained tokens (what the live context holds at the end), peak live context and accuracy.

    python benchmarks/hcot.py [--dir runs/hcot]

Target (issue 14): peak live context <= 0.5 of generated tokens at accuracy within 2 points of the same model
decoding without pruning.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

MODES = (("base", "untrained, plain"), ("trained-plain", "trained, plain"), ("trained-hcot", "trained, hcot"))
# gsm8k only: the notebook's comparison at one live-context budget (prompt + kept), and its minimum-tokens knob
EXTRA = (("trained-none-live384", "trained, hcot format, nothing pruned"), ("trained-hcot-live384", "trained, hcot"),
         ("trained-hcot-min256", "trained, hcot"))


def row(run: Path) -> dict | None:
    if not (run / "summary.json").exists():
        return None
    s = json.loads((run / "summary.json").read_text())
    cfg = (yaml.safe_load((run / "config.yaml").read_text()) or {}).get("config", {})
    h = s.get("hcot") or {}
    gen = s["mean_tokens"]
    opts = cfg.get("strategy_options") or {}
    return {"n": s["n"], "accuracy": s["accuracy"], "ci": s["accuracy_ci95"], "max_tokens": cfg["sampling"]["max_tokens"],
            "min_tokens": opts.get("min_tokens") or cfg["sampling"].get("min_tokens") or 0,
            "max_live": opts.get("max_live") or "—",
            "seconds": s.get("wall_seconds_this_time") or s["seconds"], "generated": gen,
            "retained": h.get("retained", gen), "peak_live": h.get("peak_generated_live", gen),
            "peak_over_generated": h.get("peak_over_generated", 1.0), "well_formed": h.get("well_formed"),
            "runaway": h.get("runaway"), "prunes": h.get("prunes"), "without_prunes": h.get("without_prunes")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=Path("runs/hcot"))
    a = ap.parse_args()
    print("| set | mode | n | min / max tokens | live cap | wall s | generated | retained | peak live (generated "
          "part) | peak/gen | accuracy (95% CI) | well formed | runaway | prunes | never pruned |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for ds, modes in (("gsm8k", MODES + EXTRA), ("math", MODES)):
        for key, label in modes:
            r = row(a.dir / f"{ds}-{key}")
            if r is None:
                print(f"| {ds} | {label} ({key}) | not run |")
                continue
            print(f"| {ds} | {label} | {r['n']} | {r['min_tokens']} / {r['max_tokens']} | {r['max_live']} | "
                  f"{r['seconds']:.0f} | {r['generated']:.0f} | {r['retained']:.0f} | {r['peak_live']:.0f} | "
                  f"{r['peak_over_generated']} | {r['accuracy']:.3f} ({r['ci'][0]:.2f}-{r['ci'][1]:.2f}) | "
                  f"{r['well_formed']} | {r['runaway']} | {r['prunes']} | {r['without_prunes']} |")
    print(f"\ncommand: bash benchmarks/hcot_loop.sh (runs in {a.dir}); table: python benchmarks/hcot.py --dir {a.dir}")


if __name__ == "__main__":
    main()
