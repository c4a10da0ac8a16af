"""Does llama.cpp run the model training trained? Teacher-forced top-1 agreement on real traces.

1. base: transformers on the dequantized GGUF (what training starts from) vs llama.cpp on the GGUF itself;
2. adapter: transformers + a peft LoRA vs llama.cpp + the same LoRA written as a GGUF LoRA (engines/lora.py);
3. merged (--merge q4_k_m,...): the standalone file ``train export --merge --quant Q`` writes vs llama.cpp with
   the adapter applied at run time, on the same tokens.

The tokens are the prompts and traces of a stored run (default: the newest run under runs/ with token ids),
cut to --tokens. Without --adapter a random LoRA (A and B random, B scaled by --scale) is made, so the test is
of the conversion, not of a training result.

    python benchmarks/lora_agreement.py --run runs/m/sc-tir-50 --tokens 600 --merge q4_k_m,q8_0
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def sequences(run_dir: Path, tokens: int, window: int = 512) -> tuple[list[list[int]], list[int]]:
    """Prompt + trace ids of the run's traces, each cut to ``window``, until ``tokens`` trace positions are
    covered; and each one's prompt length."""
    from reasonlab.runs import read_run

    out, lens, total = [], [], 0
    for rec in read_run(run_dir).records:
        for t in rec.traces:
            prompt = rec.trace_prompt_ids(t)
            if prompt is None or t.token_ids is None:
                continue
            ids = (prompt + t.token_ids)[:window]
            out.append(ids)
            lens.append(len(prompt))
            total += len(ids) - len(prompt)
            if total >= tokens:
                return out, lens
    if not out:
        sys.exit(f"{run_dir} keeps no token ids (runs made before token ids were recorded)")
    return out, lens


def hf_top1(model, seqs: list[list[int]]) -> list[list[int]]:
    import torch

    with torch.no_grad():
        return [model(input_ids=torch.tensor([s])).logits[0].argmax(-1).tolist() for s in seqs]


def cpp_top1(gguf: Path, seqs: list[list[int]], lora: Path | None) -> list[list[int]]:
    import numpy as np
    from llama_cpp import Llama

    llm = Llama(model_path=str(gguf), n_ctx=1024, logits_all=True, verbose=False,
                lora_path=str(lora) if lora else None)
    out = []
    for s in seqs:
        llm.reset()
        llm.eval(s)
        out.append(np.asarray(llm.scores[: len(s)]).argmax(-1).tolist())
    llm.close()
    return out


def agreement(a: list[list[int]], b: list[list[int]], seqs: list[list[int]], skip: list[int]) -> tuple[float, int]:
    """Share of trace positions (after each prompt) where both predict the same next token."""
    same = n = 0
    for x, y, s, k in zip(a, b, seqs, skip):
        for i in range(k, len(s) - 1):
            same += x[i] == y[i]
            n += 1
    return same / max(1, n), n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--run", type=Path, required=True, help="a run directory whose records keep token ids")
    ap.add_argument("--tokens", type=int, default=600, help="trace positions to compare (>= 500)")
    ap.add_argument("--adapter", type=Path, help="a peft adapter (default: a random LoRA made here)")
    ap.add_argument("--scale", type=float, default=0.15, help="random LoRA: B is scaled by this (strong enough to "
                                                             "move predictions, not to wreck the model)")
    ap.add_argument("--merge", default="", help="comma list of export quant types to check against the adapter path")
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM

    from reasonlab.engines import gguf_file
    from reasonlab.engines.hf import gguf_to_hf
    from reasonlab.engines.lora import gguf_adapter

    gguf, _ = gguf_file(args.model)
    t0 = time.perf_counter()
    hf_dir = gguf_to_hf(gguf)
    print(f"dequantized HF copy: {hf_dir} ({time.perf_counter() - t0:.0f} s)")
    seqs, prompt_lens = sequences(args.run, args.tokens)
    skip = [n - 1 for n in prompt_lens]  # the prediction at the prompt's last token is the trace's first token
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
    base_hf, base_cpp = hf_top1(model, seqs), cpp_top1(gguf, seqs, None)
    rate, n = agreement(base_hf, base_cpp, seqs, skip)
    print(f"base: transformers (dequantized, fp32) vs llama.cpp ({gguf.name}): top-1 agreement {rate:.3f} over {n} "
          f"trace tokens")

    from peft import LoraConfig, PeftModel, get_peft_model

    with tempfile.TemporaryDirectory() as tmp:
        if args.adapter is None:
            torch.manual_seed(0)
            peft = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=TARGETS,
                                                    init_lora_weights=False))
            with torch.no_grad():
                for name, p in peft.named_parameters():
                    if "lora_B" in name:
                        p.mul_(args.scale)
            adapter = Path(tmp) / "adapter"
            peft.save_pretrained(adapter)
        else:
            adapter = args.adapter
            peft = PeftModel.from_pretrained(model, str(adapter))
        with_hf = hf_top1(peft, seqs)
        with_cpp = cpp_top1(gguf, seqs, gguf_adapter(adapter, gguf))
        rate, n = agreement(with_hf, with_cpp, seqs, skip)
        moved, _ = agreement(with_hf, base_hf, seqs, skip)
        print(f"adapter: transformers + LoRA vs llama.cpp + GGUF LoRA: top-1 agreement {rate:.3f} over {n} trace "
              f"tokens (the adapter changed {1 - moved:.1%} of transformers' predictions)")
        from reasonlab.train.export import export

        for quant in [q for q in args.merge.split(",") if q]:
            t0 = time.perf_counter()
            merged = export(adapter, Path(tmp) / f"merged-{quant}.gguf", merge=True, quant=quant, base=gguf)
            took = time.perf_counter() - t0
            merged_top1 = cpp_top1(merged, seqs, None)
            rate, n = agreement(merged_top1, with_cpp, seqs, skip)
            hf_rate, _ = agreement(merged_top1, with_hf, seqs, skip)
            kept = sum(m[i] == w[i] for m, w, b, s, k in zip(merged_top1, with_cpp, base_cpp, seqs, skip)
                       for i in range(k, len(s) - 1) if w[i] != b[i])
            changed = sum(w[i] != b[i] for w, b, s, k in zip(with_cpp, base_cpp, seqs, skip) for i in range(k, len(s) - 1))
            print(f"merged {quant} ({merged.stat().st_size / 2**20:.0f} MiB, exported in {took:.0f} s) vs llama.cpp + "
                  f"GGUF LoRA: top-1 agreement {rate:.3f} over {n} trace tokens ({hf_rate:.3f} vs transformers + LoRA);"
                  f" of the {changed} predictions the adapter changed in llama.cpp, the merged file keeps "
                  f"{kept / max(1, changed):.1%}")
    print(f"reproduce: python benchmarks/lora_agreement.py --model {args.model} --run {args.run} --tokens {args.tokens} "
          f"--scale {args.scale}" + (f" --merge {args.merge}" if args.merge else ""))


if __name__ == "__main__":
    main()
