"""LoRA SFT throughput on the CPU, against the fp32 GEMM ceiling `reasonlab bench` measures.

Trained tokens/s = non-padding tokens of the rows the optimizer saw / wall time of the steps (the model load and
dataset preparation excluded, by timing from the first step's start with a callback).

FLOPs per trained token, frozen base + LoRA: the forward pass is 2 x (weights of every matmul: attention and MLP
projections and the untied output matrix; the embedding is a gather, not a matmul) and the backward pass computes
activation gradients through the same matrices, another 2 x, but no weight gradients for frozen weights — so
4 x N_matmul, plus LoRA's own A and B (forward, activation and weight gradients: 6 x their size). Attention's
score and value products (forward 4 x layers x context x width per token, backward twice that: gradients of
both operands of both products) are added at the mean causal context, half the row length.

With ``--precision bf16`` (autocast: the matmuls in bf16, weights and optimizer fp32) the yardstick is torch's own
bf16 GEMM rate, measured here the same way; CPUs with avx512_bf16 or AMX multiply bf16 in hardware. Peak resident
memory is the process's (the model load included).

    python benchmarks/train_throughput.py --steps 8 --batch-size 4 --length 256 --precision bf16
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def matmul_params(model) -> tuple[int, int]:
    """(base matmul weights, LoRA weights) of a (peft-wrapped) causal LM."""
    import torch

    base = lora = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            n = module.weight.numel()
            if "lora_" in name:
                lora += n
            else:
                base += n
    return base, lora


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--length", type=int, default=256, help="tokens per row")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "auto"])
    args = ap.parse_args()
    import resource

    from transformers import TrainerCallback

    from reasonlab.bench.hardware import torch_gemm_peak
    from reasonlab.train import TrainConfig
    from reasonlab.train.methods import precision, sft
    from reasonlab.train.model import load_trainable

    model, tok = load_trainable(args.model)
    words = "Natalia sold clips to 48 of her friends in April and then half as many in May . " * 64
    ids = tok(words)["input_ids"][: args.length]
    rows = [{"input_ids": ids, "completion_mask": [0] * 16 + [1] * (len(ids) - 16)}] * (args.steps * args.batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        data_path = Path(tmp) / "rows.jsonl"
        data_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        cfg = TrainConfig(method="sft", model=args.model, data=str(data_path), out=tmp, max_steps=args.steps,
                          batch_size=args.batch_size, max_length=args.length, save_steps=10 ** 6,
                          precision=args.precision)
        from reasonlab.train.data import load_rows

        data = load_rows(data_path, "sft", tok)
        trainer = sft(cfg, model, tok, data, tmp)

        class Clock(TrainerCallback):
            start = end = 0.0

            def on_step_begin(self, a, state, control, **kw):
                if state.global_step == 1 and not Clock.start:  # the first step warms caches: time from the second
                    Clock.start = time.perf_counter()

            def on_step_end(self, a, state, control, **kw):
                Clock.end = time.perf_counter()

        trainer.add_callback(Clock())
        trainer.train()
    steps = args.steps - 1
    seconds = Clock.end - Clock.start
    tokens = steps * args.batch_size * len(ids)
    base, lora = matmul_params(trainer.model)
    cfg_m = trainer.model.config
    attn = 4 * cfg_m.num_hidden_layers * (len(ids) / 2) * cfg_m.hidden_size  # mean causal context: half the row
    flops_per_token = 4 * base + 6 * lora + 3 * attn
    rate = tokens / seconds
    dtype = {"fp32": "float32", "bf16": "bfloat16"}[precision(args.precision)]
    peak = torch_gemm_peak(dtype)
    achieved = rate * flops_per_token / 1e9
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    print(f"model {args.model}: {base / 1e6:.0f}M matmul weights (output matrix included), LoRA {lora / 1e6:.2f}M")
    print(f"LoRA SFT, {precision(args.precision)}: {rate:.0f} trained tokens/s over {steps} steps of "
          f"{args.batch_size} x {len(ids)} tokens ({seconds:.1f} s, {seconds / steps:.1f} s per step); peak RSS "
          f"{rss:.1f} GiB")
    print(f"{flops_per_token / 1e9:.2f} GFLOP per token -> {achieved:.1f} GFLOP/s = {achieved / peak:.2f} of torch's "
          f"{dtype} GEMM ceiling here ({peak} GFLOP/s)")
    print(f"reproduce: python benchmarks/train_throughput.py --steps {args.steps} --batch-size {args.batch_size} "
          f"--length {args.length} --precision {args.precision}")


if __name__ == "__main__":
    main()
