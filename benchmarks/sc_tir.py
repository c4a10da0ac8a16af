"""Greedy vs TIR vs SC-TIR on the same problems, from finished run directories (no model runs here).

    reasonlab eval -d gsm8k -n 50 --out runs/gsm8k50-greedy
    reasonlab eval -d gsm8k -n 50 --tools python --out runs/gsm8k50-tir
    reasonlab eval -d gsm8k -n 50 -s vote -k 8 --tools python -t 0.7 --top-p 0.8 --seed 0 --parallel 16 \\
        -O require_code=true -O drop_invented_output=true --out runs/sc-tir-8
    python benchmarks/sc_tir.py runs/gsm8k50-greedy runs/gsm8k50-tir runs/sc-tir-8

For the SC-TIR run it also re-counts the same traces without its filters (every trace with an answer
votes), so what dropping code-less and invented-output traces buys is read off equal samples.
"""

from __future__ import annotations

import argparse
from collections import Counter

from reasonlab.answers.normalize import normalize
from reasonlab.evaluate import summarize
from reasonlab.runs import read_run


def unfiltered_vote_correct(rec: dict) -> bool:
    """Majority over every trace that has an answer (ties: the earliest trace), ignoring SC-TIR's filters."""
    keys = []
    for t in sorted(rec["traces"], key=lambda t: t.get("sample", 0)):
        if t.get("answer") is not None and t.get("finish_reason") not in ("cancelled", "error"):
            keys.append(("<correct>" if t.get("correct") else normalize(t["answer"])))
    if not keys:
        return False
    counts = Counter(keys)
    top = max(counts.values())
    return next(k for k in keys if counts[k] == top) == "<correct>"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("greedy")
    ap.add_argument("tir")
    ap.add_argument("sc_tir")
    args = ap.parse_args()
    sc = read_run(args.sc_tir).record_dicts()
    ids = {r["id"] for r in sc}
    print(f"{len(ids)} problems (those the SC-TIR run finished)")
    for label, path in (("greedy", args.greedy), ("TIR (greedy)", args.tir)):
        recs = read_run(path).record_dicts()
        recs = [r for r in recs if r["id"] in ids]
        s = summarize(recs)
        print(f"{label:28s} {s['accuracy']:.3f} ({s['correct']}/{s['n']})  found {s['answer_found_rate']:.0%}  "
              f"{s['mean_tokens']:.0f} tok/problem")
    s = summarize(sc)
    print(f"{'SC-TIR (8, filtered)':28s} {s['accuracy']:.3f} ({s['correct']}/{s['n']})  found {s['answer_found_rate']:.0%}  "
          f"{s['mean_tokens']:.0f} tok/problem")
    unf = sum(unfiltered_vote_correct(r) for r in sc)
    print(f"{'vote over TIR traces, no filter':28s} {unf / len(sc):.3f} ({unf}/{len(sc)})")
    traces = [t for r in sc for t in r["traces"]]
    dropped = Counter(t.get("dropped") or "votes" for t in traces)
    calls = sum(1 for t in traces for e in t.get("events", []) if e.get("type") == "tool")
    with_code = sum(1 for t in traces if any(e.get("type") == "tool" for e in t.get("events", [])))
    print(f"traces: {len(traces)}; with executed code {with_code}; tool calls {calls}; " +
          ", ".join(f"{k} {v}" for k, v in dropped.most_common()))
    c = s.get("samples") or {}
    if c:
        print("from the same traces (filters applied): " +
              ", ".join(f"maj@{k} {m:.3f}" for k, m in zip(c["k"], c["maj"])) + f", pass@{c['k'][-1]} {c['pass'][-1]:.3f}")


if __name__ == "__main__":
    main()
