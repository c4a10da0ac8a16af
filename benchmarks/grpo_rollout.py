"""GRPO rollouts: transformers' generate (TRL's default) vs llama.cpp with the policy's LoRA (``rollout: llamacpp``).

Both sample the same rollouts GRPO asks for — P prompts x G generations of at most T tokens, at GRPO's
temperature — from the default model with a LoRA whose weights are random (so the adapter changes predictions
and the llama.cpp side must apply it). Reported: completion tokens per second of wall time for each (llama.cpp's
includes writing the adapter as a GGUF and opening the engine, as every GRPO step pays them), their ratio, and
whether llama.cpp samples from the policy: the mean |log p| difference between llama.cpp's log-probs of its
sampled tokens and transformers' for the same tokens, with the adapter and without it.

    python benchmarks/grpo_rollout.py --prompts 2 --generations 4 --tokens 128
"""

from __future__ import annotations

import argparse
import time
from types import SimpleNamespace


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--prompts", type=int, default=2)
    ap.add_argument("--generations", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--lora-scale", type=float, default=0.02, help="std of the random LoRA weights")
    args = ap.parse_args()

    import torch
    from peft import LoraConfig, get_peft_model

    from reasonlab.bench.hardware import cpu_info
    from reasonlab.train import TrainConfig
    from reasonlab.train.model import load_trainable, model_source
    from reasonlab.train.rollout import LlamaCppRollout
    from reasonlab.train.run import grpo_dataset

    model, tok = load_trainable(args.model)
    model.config.use_cache = True  # generation, not training
    torch.manual_seed(0)
    policy = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, init_lora_weights=False, task_type="CAUSAL_LM",
                                              target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                              "up_proj", "down_proj"]))
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn_like(p) * args.lora_scale)
    policy.eval()
    cfg = TrainConfig(method="grpo", model=args.model, grpo={"limit": args.prompts})
    prompts = [row["prompt"] for row in grpo_dataset(cfg)]
    repeated = [p for p in prompts for _ in range(args.generations)]  # as TRL's sampler hands them over

    # transformers: TRL's regular path — left-padded prompt ids, one generate over every rollout
    ids = [tok.apply_chat_template(p, add_generation_prompt=True, tokenize=True, return_dict=False) for p in repeated]
    width = max(len(i) for i in ids)
    pad = tok.pad_token_id
    x = torch.tensor([[pad] * (width - len(i)) + i for i in ids])
    mask = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in ids])
    t0 = time.perf_counter()
    with torch.no_grad():
        gen = policy.generate(input_ids=x, attention_mask=mask, do_sample=True, temperature=args.temperature,
                              top_p=1.0, top_k=0, max_new_tokens=args.tokens, pad_token_id=pad)
    hf_s = time.perf_counter() - t0
    new = gen[:, width:]
    hf_tokens = 0
    for row in new.tolist():
        end = next((k + 1 for k, t in enumerate(row) if t == tok.eos_token_id), len(row))
        hf_tokens += end

    # llama.cpp: the rollout function GRPO calls, given a stand-in for the trainer (its model and step)
    _, gguf = model_source(args.model)
    rollout = LlamaCppRollout(gguf, tok, max_tokens=args.tokens, temperature=args.temperature,
                              n_parallel=min(len(repeated), 64))
    out = rollout(repeated, SimpleNamespace(model=policy, state=SimpleNamespace(global_step=0)))
    cpp_s, cpp_tokens = rollout.seconds, rollout.tokens

    diffs, base = [], []
    for p, c, lp in zip(out["prompt_ids"], out["completion_ids"], out["logprobs"]):
        seq = torch.tensor([p + c])
        with torch.no_grad():
            with_lora = torch.log_softmax(policy(input_ids=seq).logits[0, len(p) - 1: -1].float(), -1)
            with policy.disable_adapter():
                without = torch.log_softmax(policy(input_ids=seq).logits[0, len(p) - 1: -1].float(), -1)
        idx = torch.tensor(c)[:, None]
        diffs += [abs(a - b) for a, b in zip(lp, with_lora.gather(-1, idx)[:, 0].tolist())]
        base += [abs(a - b) for a, b in zip(lp, without.gather(-1, idx)[:, 0].tolist())]

    cpu = cpu_info()
    print(f"# {cpu['model']}, {cpu['cores']} cores; {args.prompts} prompts x {args.generations} generations, "
          f"<= {args.tokens} tokens, T={args.temperature}, random LoRA r=16 (std {args.lora_scale})")
    print(f"transformers generate: {hf_tokens} tokens in {hf_s:.1f} s = {hf_tokens / hf_s:.1f} tok/s")
    print(f"llama.cpp + LoRA:      {cpp_tokens} tokens in {cpp_s:.1f} s = {cpp_tokens / cpp_s:.1f} tok/s "
          f"(adapter export and engine start included)")
    print(f"ratio llama.cpp / transformers: {(cpp_tokens / cpp_s) / (hf_tokens / hf_s):.2f}x")
    print(f"llama.cpp log-probs vs transformers' on its sampled tokens: mean |diff| {sum(diffs) / len(diffs):.3f} "
          f"with the adapter, {sum(base) / len(base):.3f} without it ({len(diffs)} tokens)")
    print(f"command: python benchmarks/grpo_rollout.py --model {args.model} --prompts {args.prompts} "
          f"--generations {args.generations} --tokens {args.tokens}")


if __name__ == "__main__":
    main()
