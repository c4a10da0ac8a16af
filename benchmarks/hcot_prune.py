"""Pruning a live context by continuation vs in place (issue 14): the same prune cycles on llama.cpp, with the
prefix cache re-reading the kept tail (continuation), with the cells after the cut shifted down (kv_shift,
positions renumbered), or cut out of the live sequence as it decodes (generate_pruning, positions kept: one
generation per trace, nothing read twice).

Each of `--traces` concurrent traces repeats `--cycles` times: write `--body` tokens, cut all but the last
`--keep` of them out of the live ids (a finished block: its body goes, its result stays), continue from the cut
ids. The model is real (the default one); the cuts are placed by the script, not by a trained model, so the two
modes do exactly the same work apart from how the cut is made. Prints wall time, tokens prefilled, prefills,
and cuts made in place, per mode, and the command.

    python benchmarks/hcot_prune.py [--model qwen2.5-coder-0.5b] [--traces 8] [--cycles 6] [--body 96] [--keep 16]
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from reasonlab.engines import EngineConfig, SamplingParams, load_engine

PROMPTS = ["Explain how to add fractions with different denominators, step by step.",
           "Describe how a bicycle works, part by part.", "Walk through long division of 7452 by 12.",
           "Explain the water cycle in detail.", "How does compound interest work? Give examples.",
           "Describe how to solve a system of two linear equations.", "Explain photosynthesis step by step.",
           "How do you find the area of an irregular polygon?"]


def one_trace(engine, i: int, a) -> dict[str, int]:
    live = engine.tokenize(engine.render_chat([{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}]), prompt=True)
    prefilled = generated = 0
    for _ in range(a.cycles):
        g = engine.generate([live], SamplingParams(max_tokens=a.body, ignore_eos=True, temperature=0.7, seed=i))[0]
        prefilled += g.prefilled_tokens
        generated += g.completion_tokens
        body = g.token_ids or []
        live = live + body[len(body) - a.keep:] if len(body) > a.keep else live + body  # the body cut, result kept
    return {"prefilled": prefilled, "generated": generated}


def one_trace_in_place(engine, i: int, a) -> dict[str, int]:
    live = engine.tokenize(engine.render_chat([{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}]), prompt=True)

    def cut(_i: int, _s: int, out: list[int]) -> list[tuple[int, int]]:  # each finished body, its last keep stay
        n = len(out)
        return [(n - a.body, n - a.keep)] if n % a.body == 0 else []

    g = engine.generate_pruning([live], SamplingParams(max_tokens=a.body * a.cycles, ignore_eos=True, temperature=0.7,
                                                       seed=i), cut)[0]
    return {"prefilled": g.prefilled_tokens, "generated": g.completion_tokens}


def run(mode: str, a) -> dict[str, float]:
    # room for every trace's whole generation at once: admission never serializes one mode more than another
    engine = load_engine(EngineConfig(model=a.model, n_parallel=a.traces, kv_shift=mode == "shift in place",
                                      n_ctx=a.traces * (a.body * a.cycles + 128)))
    trace = one_trace_in_place if mode == "cut in place" else one_trace
    try:
        trace(engine, 0, argparse.Namespace(**{**vars(a), "cycles": 1}))  # warm-up
        start = time.perf_counter()
        with ThreadPoolExecutor(a.traces) as pool:
            rows = list(pool.map(lambda i: trace(engine, i, a), range(a.traces)))
        seconds = time.perf_counter() - start
        stats = engine._decoder.stats  # type: ignore[attr-defined]
        return {"seconds": seconds, "prefilled": sum(r["prefilled"] for r in rows),
                "generated": sum(r["generated"] for r in rows),
                "in_place": stats["shifted_cuts"] + stats["cut_cells"] / max(1, a.body - a.keep),
                "prefill_s": stats["prefill_s"]}
    finally:
        engine.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--traces", type=int, default=8)
    ap.add_argument("--cycles", type=int, default=6)
    ap.add_argument("--body", type=int, default=96)
    ap.add_argument("--keep", type=int, default=16)
    a = ap.parse_args()
    results = {mode: run(mode, a) for mode in ("continuation", "shift in place", "cut in place")}
    for mode, r in results.items():
        print(f"{mode:14s} {r['seconds']:7.1f} s  {r['generated'] / r['seconds']:6.1f} tok/s  prefilled "
              f"{r['prefilled']:6d} tokens ({r['prefill_s']:.1f} s of prefill)  cuts in place {r['in_place']:.0f}")
    c = results["continuation"]
    for mode in ("shift in place", "cut in place"):
        print(f"{mode} / continuation wall time: {results[mode]['seconds'] / c['seconds']:.3f}")
    print("command: python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()
