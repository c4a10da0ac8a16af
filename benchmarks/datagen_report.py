"""Issue 13's figures from the run directories benchmarks/datagen_loop.sh writes: pivotal-token search
(sequential vs fixed n), variants (accuracy on originals vs variants, paired by source problem), conversations
(accuracy and tokens per round beside the vote's maj@k at the same tokens) and generated problems. Prints each
figure with the command behind it and draws runs/datagen/pivotal_curves.png (p(success) along searched traces).

    python benchmarks/datagen_report.py [--dir runs/datagen] [--vote runs/verifier/test-k8]

Parts whose runs are not there yet are reported as missing.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

from reasonlab.datagen.pivotal_run import pivot_p_value
from reasonlab.evaluate.metrics import sample_curves
from reasonlab.runs import read_run
from reasonlab.strategies.conversation import verdict


def load(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


def pivot_noise(searched: Path) -> dict[str, int]:
    """How many pivots look like estimation noise: beside a pivot of the opposite direction (p goes 0.5 -> 0 -> 0.5
    over two tokens), with a side estimated from few continuations — and how many differ beyond chance (Fisher exact
    p < 0.05 between the two sides' counts; two estimates of one p = 0.5 from 10 continuations each differ by >= 0.2
    half the time)."""
    out = {"pivots": 0, "beside_opposite": 0, "thin": 0, "significant": 0}
    for line in searched.read_text().splitlines() if searched.exists() else []:
        for t in json.loads(line)["traces"]:
            n = {pos: k for pos, _, k in t["estimates"]}
            at = {v["position"]: v for v in t["pivots"]}
            for v in t["pivots"]:
                up = v["p_after"] > v["p_before"]
                out["pivots"] += 1
                out["beside_opposite"] += any(w is not None and (w["p_after"] > w["p_before"]) != up
                                              for w in (at.get(v["position"] - 1), at.get(v["position"] + 1)))
                # p after the trace's last token is its verdict, not an estimate
                sides = [n.get(v["position"], 99), n.get(v["position"] + 1, 99) if v["position"] + 1 < t["tokens"]
                         else 99]
                out["thin"] += min(sides) <= 4
                out["significant"] += pivot_p_value(t, v) < 0.05
    return out


def pivot_set(searched: Path) -> set[tuple[str, int, int]]:
    """Each pivot as (problem, trace sample, position): the same place in the same trace across two searches."""
    return {(r["id"], t["sample"], v["position"]) for line in (searched.read_text().splitlines()
                                                               if searched.exists() else [])
            for r in [json.loads(line)] for t in r["traces"] for v in t["pivots"]}


def pivotal(d: Path) -> None:
    print("## pivotal tokens")
    runs = {"sequential, unconfirmed": "pivotal-seq-unconfirmed", "sequential, confirmed": "pivotal-seq",
            "fixed n=10": "pivotal-fixed"}
    summaries = {sub: load(d / sub / "summary.json") for sub in runs.values()}
    fixed = summaries["pivotal-fixed"]
    for name, sub in runs.items():
        s = summaries[sub]
        if s is None:
            print(f"  {name}: not run")
            continue
        print(f"  {name}\n  {'':11s} drawn {s['problems_drawn']:3d}  qualified {s['problems_qualified']:3d}  searched "
              f"{s['problems_searched']:3d}  pivots {s['pivots']:3d} ({s['raising']} raise)  pairs {s['pairs']:3d}  "
              f"continuations {s['samples']:5d} ({s['samples_per_prefix']}/prefix)  model tokens/pivot "
              f"{s['model_tokens_per_pivot']}")
        noise = pivot_noise(d / sub / "searched.jsonl")
        print(f"  {'':11s} {noise['beside_opposite']} of {noise['pivots']} pivots sit beside a pivot the other way (a "
              f"noisy middle estimate splits both halves); a side of {noise['thin']} rests on <= 4 continuations; "
              f"{noise['significant']} differ beyond chance (Fisher exact p < 0.05)")
        drawn = s["qualifying_tokens"] + s["completion_tokens"] + s["prefilled_tokens"]
        print(f"  {'':11s} wall {s.get('wall_seconds', 0) / 3600:.2f} h over {s.get('calls', 0)} call(s), which drew "
              f"{s.get('timed_model_tokens', 0)} of the {drawn} model tokens (calls before calls.jsonl are untimed)")
    if fixed and fixed["model_tokens_per_pivot"]:
        pivots_of = {sub: pivot_set(d / sub / "searched.jsonl") for sub in runs.values()}
        for name, sub in list(runs.items())[:2]:
            s = summaries[sub]
            if not (s and s["model_tokens_per_pivot"]):
                continue
            ours, theirs = pivots_of[sub], pivots_of["pivotal-fixed"]
            # the same cost (the searched problems' p(0) and their search) over the pivots beyond chance
            per_sig = [x["model_tokens_per_pivot"] * x["pivots"] / max(1, x.get("beyond_chance", 0)) for x in (s, fixed)]
            print(f"  {name} / fixed n=10: model tokens per pivot "
                  f"{s['model_tokens_per_pivot'] / fixed['model_tokens_per_pivot']:.2f} (target <= 0.5), per pivot "
                  f"beyond chance {per_sig[0] / per_sig[1]:.2f}; continuations "
                  f"{s['samples'] / max(1, fixed['samples']):.2f}; pivots in both (problem, trace position) "
                  f"{len(ours & theirs)} of {len(ours)} / {len(theirs)}")
    print(f"  reasonlab datagen pivotal runs/star/sample -o {d}/pivotal-seq-unconfirmed -n 30 --no-confirm "
          f"--parallel 16\n"
          f"  reasonlab datagen pivotal runs/star/sample -o {d}/pivotal-seq -n 30 --parallel 16   (on a copy of the "
          f"first one's roots, estimates and calls)\n"
          f"  reasonlab datagen pivotal runs/star/sample -o {d}/pivotal-fixed --estimator fixed --samples 10 "
          f"--problems-from {d}/pivotal-seq-unconfirmed --draws-from {d}/pivotal-seq --parallel 16")
    rows = [json.loads(x) for x in (d / "pivotal-seq" / "searched.jsonl").read_text().splitlines()] \
        if (d / "pivotal-seq" / "searched.jsonl").exists() else []  # the confirmed search's
    if rows:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        # one panel per trace (overlaid, twelve curves of p are a tangle): p along the trace, pivots marked
        fig, axes = plt.subplots(3, 4, figsize=(13, 7.5), sharey=True)
        for ax, r in zip(axes.flat, rows[:12]):
            t = r["traces"][0]
            pts = [(pos, s / n) for pos, s, n in t["estimates"] if n] + [(t["tokens"], 1.0 if t["correct"] else 0.0)]
            ax.step(*zip(*sorted(pts)), where="post", color="tab:green" if t["correct"] else "tab:red", lw=1)
            ax.plot(*zip(*sorted(pts)), ".", color="grey", ms=3)
            for v in t["pivots"]:
                sig = pivot_p_value(t, v) < 0.05
                ax.axvline(v["position"], color="black" if sig else "orange", lw=0.8, alpha=0.7)
                ax.annotate(repr(v["text"]), (v["position"], 1.02), fontsize=6, rotation=60)
            ax.set_title(f"{r['id']} ({len(t['pivots'])} pivots)", fontsize=8)
            ax.set_ylim(-0.05, 1.25)
        for ax in axes[-1]:
            ax.set_xlabel("trace position (tokens)")
        for ax in axes[:, 0]:
            ax.set_ylabel("p(success | prefix)")
        fig.suptitle("confirmed pivotal search: p along each trace (green: right trace, red: wrong); pivots black "
                     "if their sides differ beyond chance (Fisher p < 0.05), orange if not", fontsize=9)
        fig.tight_layout()
        fig.savefig(d / "pivotal_curves.png", dpi=120)
        print(f"  curves: {d / 'pivotal_curves.png'}")
    test = load(d / "test-pivotal" / "summary.json")
    if test:
        print(f"  DPO on the pairs, GSM8K test 0-199 greedy: {test['accuracy']:.3f}  "
              f"(reasonlab compare runs/star/test-base {d}/test-pivotal)")


def bootstrap_mean(xs: list[float], seed: int = 0, n: int = 2000) -> tuple[float, float]:
    rng = random.Random(seed)
    means = sorted(sum(rng.choice(xs) for _ in xs) / len(xs) for _ in range(n))
    return means[int(0.025 * n)], means[int(0.975 * n)]


def variants(d: Path, name: str = "variants", model: str | None = None) -> None:
    """One writer's variants (``model`` writes the solve programs; None: the default model)."""
    print(f"## variants (GSM-Symbolic), programs by {model or 'the default model'}")
    stats = load(d / f"{name}.jsonl.stats.json")
    if stats is None and not (d / f"{name}.jsonl").exists():
        print("  not run")
        return
    if stats is None:  # kept in git before its stats file was (the loop keeps both now)
        print(f"  {name}.jsonl.stats.json not kept: acceptance and rejections are not in this record")
    else:
        print(f"  accepted {stats['accepted']}/{stats['problems']} ({stats['acceptance_rate']:.0%}), "
              f"{stats['variants']} variants; rejected: {stats['rejected']}; accepted at attempt "
              f"{stats['accepted_at_attempt']}; {stats['seconds']:.0f} s")
    if not ((d / f"{name}-originals" / "results.jsonl").exists() and (d / f"{name}-eval" / "results.jsonl").exists()):
        print("  evaluations not run")
        return
    # a dataset file's problems are named "<file stem>-<id>" in a run
    orig = {r.id.removeprefix(f"{name}.originals-"): r.correct for r in read_run(d / f"{name}-originals").records}
    src = {json.loads(x)["id"]: json.loads(x)["source_id"] for x in (d / f"{name}.jsonl").read_text().splitlines()}
    per: dict[str, list[bool]] = {}
    for r in read_run(d / f"{name}-eval").records:
        per.setdefault(src[r.id.removeprefix(f"{name}-")], []).append(r.correct)
    common = [s for s in per if s in orig]
    o = [float(orig[s]) for s in common]
    v = [sum(per[s]) / len(per[s]) for s in common]
    diffs = [b - a for a, b in zip(o, v)]
    lo, hi = bootstrap_mean(diffs)
    print(f"  greedy accuracy, {len(common)} source problems: originals {sum(o) / len(o):.3f}, variants "
          f"{sum(v) / len(v):.3f} (mean over each source's variants); difference {sum(diffs) / len(diffs):+.3f} "
          f"(95% bootstrap CI {lo:+.3f}..{hi:+.3f})")
    flag = f" -m {model}" if model else ""
    print(f"  reasonlab datagen variants -d gsm8k -n 50 --per-problem 5{flag} -o {d}/{name}.jsonl; reasonlab eval -d "
          f"{d}/{name}.originals.jsonl / -d {d}/{name}.jsonl --parallel 16")


def conversations(d: Path, vote: Path, base: Path = Path("runs/star/test-base")) -> None:
    print("## conversations, GSM8K test 0-49")
    if (base / "results.jsonl").exists():  # the default model alone, greedy: the same 50 problems of the 200-run
        first = [r for r in read_run(base).records if r.id in {f"gsm8k-{i}" for i in range(50)}]
        if first:
            print(f"  alone (greedy, {base}): accuracy {sum(r.correct for r in first) / len(first):.3f} on "
                  f"{len(first)}, tokens/problem {sum(r.tokens for r in first) / len(first):.0f}")
    for name in ("critic-self", "critic-1.5b", "debate-3x2"):
        s = load(d / name / "summary.json")
        if s is None:
            print(f"  {name}: not run")
            continue
        r = s.get("rounds", {})
        print(f"  {name:12s} accuracy {s['accuracy']:.3f}  tokens/problem {s['mean_tokens']:.0f}  per round: "
              f"accuracy {r.get('accuracy')} at mean tokens {r.get('mean_tokens')}  stops {s['stop_reasons']}")
        if name.startswith("critic"):
            critic_verdicts(d / name)
    # the vote at equal tokens: maj@k over the same problems' samples (a superset run is cut to these ids)
    ids = {f"gsm8k-{i}" for i in range(50)}
    if not (vote / "results.jsonl").exists():
        print(f"  vote: {vote} not there (benchmarks/verifier_loop.sh step 2 makes it)")
        return
    recs = [r for r in read_run(vote).record_dicts() if r["id"] in ids]
    curve = sample_curves(recs, ks=list(range(1, 9)))
    if curve:
        per_trace = sum(r["tokens"] for r in recs) / len(recs) / curve["n_samples"]
        print(f"  vote ({vote}, its {len(recs)} problems of these 50): " + ", ".join(
            f"maj@{k} {m:.3f} at {k * per_trace:.0f} tokens" for k, m in zip(curve["k"], curve["maj"])))


def critic_verdicts(run: Path) -> None:
    """Each review's verdict, re-read with today's parser, against whether the solution it reviewed was right:
    how often the critic agrees with a wrong answer is what decides whether a critic helps."""
    counts: Counter[str] = Counter()
    for rec in read_run(run).record_dicts():
        traces = rec["traces"]
        for i, t in enumerate(traces):
            if t["tags"].get("role") == "critic" and i:
                v = {True: "agreed", False: "named an error", None: "no verdict"}[verdict(t["text"])]
                counts[f"{v} / {'right' if traces[i - 1]['correct'] else 'wrong'}"] += 1
    print(f"    reviews (verdict / the reviewed answer), re-read with today's parser: {dict(sorted(counts.items()))}")


def problems(d: Path) -> None:
    print("## generated problems")
    s = load(d / "problems.jsonl.stats.json")
    if s is None:
        print("  not run")
        return
    print(f"  kept {s['kept']}/{s['proposed']} ({s['kept_rate']:.0%}), mean solver pass rate "
          f"{s['mean_solver_pass_rate']}, {s['tokens']} tokens in {s['seconds']} s; rejected: {s['rejected']}")
    print(f"  reasonlab datagen problems -n 100 --style gsm8k --k 4 --m 3 -o {d}/problems.jsonl")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=Path("runs/datagen"))
    ap.add_argument("--vote", type=Path, default=Path("runs/verifier/test-k8"))
    a = ap.parse_args()
    variants(a.dir)
    variants(a.dir, "variants-1.5b", "qwen2.5-coder-1.5b")
    conversations(a.dir, a.vote)
    problems(a.dir)
    pivotal(a.dir)


if __name__ == "__main__":
    main()
