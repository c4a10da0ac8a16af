"""Harness overhead: reasonlab's end-to-end tokens/s against raw llama-cpp-python, same prompts, one run.

Both paths load the same GGUF with the same threads and decode the same chat-templated GSM8K prompts
greedily. The raw path is a bare ``Llama.create_completion`` loop; the reasonlab path is the whole
``evaluate`` (strategy, answer extraction, grading, results.jsonl with fsync, summary). Rounds
alternate raw / reasonlab so that machine noise hits both; the ratio of medians is printed.

    python benchmarks/overhead.py                      # default model, 10 problems, 128 tokens, 3 rounds
    python benchmarks/overhead.py --model smollm2-135m --problems 20
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

from reasonlab.data import load_problems
from reasonlab.engines import load_engine
from reasonlab.evaluate import EvalConfig, evaluate
from reasonlab.strategies import get_template


def raw_llama(path: str, prompts: list[str], max_tokens: int, threads: int) -> tuple[int, float]:
    from llama_cpp import Llama

    start = time.perf_counter()  # end to end on both sides: model load included
    llm = Llama(model_path=path, n_ctx=4096, n_threads=threads, n_threads_batch=threads, verbose=False)
    tokens = 0
    for p in prompts:
        out = llm.create_completion(p, max_tokens=max_tokens, temperature=0.0, top_k=0, top_p=1.0, min_p=0.0,
                                    repeat_penalty=1.0)
        tokens += out["usage"]["completion_tokens"]
    seconds = time.perf_counter() - start
    llm.close()
    return tokens, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--problems", type=int, default=10)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = ap.parse_args()

    cfg = EvalConfig.from_layers({
        "engine": {"model": args.model, "n_threads": args.threads},
        "dataset": {"name": "gsm8k", "limit": args.problems},
        "sampling": {"temperature": 0.0, "max_tokens": args.max_tokens},
    })
    probe = load_engine(cfg.engine)  # resolves and checks the model; renders the exact prompts
    path = str(probe.path)
    template = get_template(cfg.prompt.template)
    prompts = [template.render(probe, p.question) for p in load_problems(cfg.dataset)]
    probe.close()

    raw_tps, rl_tps = [], []
    for r in range(args.rounds):
        tokens, secs = raw_llama(path, prompts, args.max_tokens, args.threads)
        raw_tps.append(tokens / secs)
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            summary = evaluate(cfg, out=f"{tmp}/run", progress=False)  # loads its own engine: the whole path
            wall = time.perf_counter() - start
        rl_tps.append(summary["tokens"] / wall)
        print(f"round {r + 1}: raw {raw_tps[-1]:.2f} tok/s ({tokens} tokens)   "
              f"reasonlab {rl_tps[-1]:.2f} tok/s ({summary['tokens']} tokens)", flush=True)

    raw, rl = statistics.median(raw_tps), statistics.median(rl_tps)
    print(f"\nmodel {args.model}, {args.problems} GSM8K prompts, {args.max_tokens} max tokens, greedy, "
          f"{args.threads} threads, {args.rounds} rounds")
    print(f"raw llama-cpp-python: {raw:.2f} tok/s (median)")
    print(f"reasonlab evaluate:   {rl:.2f} tok/s (median, model load and grading included)")
    print(f"ratio: {rl / raw:.3f}  (target >= 0.97)")
    print("command: " + " ".join([os.path.basename(sys.executable), *sys.argv]))


if __name__ == "__main__":
    main()
