"""Is llama.cpp's cut in place (hcot prune=agnostic agnostic_by=cache) the semantics ``sft.hcot: mask`` trains?
(issue 14). The same weights both ways: llama.cpp decodes the GGUF greedily and, at one point, cuts a span of its
generation out of the live sequence's cells (positions kept); transformers reads the dequantized GGUF once over
the whole sequence (teacher-forced on llama.cpp's tokens) with the 4-D mask that hides that span from every later
query. Reported over the tokens after the cut: top-1 agreement and mean |Δ log p| of llama.cpp's tokens against
the masked reference and against the unmasked one (which still sees the span) — beside the same figures for a run
with no cut against the plain causal reference (the quantized kernels' noise floor). The cut is the mask's
semantics when its figures sit at that floor and the unmasked reference's do not.

    python benchmarks/hcot_agnostic_check.py [--model smollm2-135m] [--tokens 60] [--cut-at 30] [--span 5,20]
"""

from __future__ import annotations

import argparse
import sys

import torch

from reasonlab.engines import SamplingParams
from reasonlab.engines.hf import gguf_to_hf
from reasonlab.engines.llamacpp import LlamaCppEngine
from reasonlab.engines.models import ensure

PROMPT = "Explain how to add fractions with different denominators, step by step."


def reference(lm, prompt: list[int], out: list[int], cut: tuple[int, int, int] | None) -> torch.Tensor:
    """[len(out), V] log-probs of each generated position under transformers, the cut span masked or not."""
    ids = torch.tensor([prompt + out])
    n, p = ids.shape[1], len(prompt)
    allowed = torch.ones(n, n).tril().bool()
    if cut is not None:  # queries from the token read right after the cut on lose the span (generated -> positions)
        at, a, b = cut
        allowed[p + at - 1:, p + a: p + b] = False
    mask = torch.zeros(n, n).masked_fill(~allowed, torch.finfo(torch.float32).min)[None, None]
    with torch.no_grad():
        logp = torch.log_softmax(lm(input_ids=ids, attention_mask=mask).logits[0].float(), -1)
    return logp[p - 1: n - 1]  # the row predicting generated token k is position p + k - 1


def agreement(ref: torch.Tensor, out: list[int], lps: list[float], lo: int) -> tuple[float, float]:
    """(top-1 agreement, mean |Δ log p|) over generated positions lo.. (teacher-forced: same contexts)."""
    ks = range(lo, len(out))
    top1 = sum(int(ref[k].argmax()) == out[k] for k in ks) / len(ks)
    delta = sum(abs(float(ref[k, out[k]]) - lps[k]) for k in ks) / len(ks)
    return top1, delta


def main() -> None:
    from transformers import AutoModelForCausalLM

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--tokens", type=int, default=60)
    ap.add_argument("--cut-at", type=int, default=30, help="generated tokens when the cut is made")
    ap.add_argument("--span", default="5,20", help="generated indices [a, b) cut")
    a = ap.parse_args()
    start, end = (int(x) for x in a.span.split(","))
    gguf = ensure(a.model)
    lm = AutoModelForCausalLM.from_pretrained(gguf_to_hf(gguf), dtype=torch.float32).eval()
    with LlamaCppEngine(str(gguf), n_ctx=2048, name=a.model, n_parallel=2) as eng:
        prompt = eng.tokenize(eng.render_chat([{"role": "user", "content": PROMPT}]), prompt=True)
        params = SamplingParams(max_tokens=a.tokens, ignore_eos=True, logprobs=0)
        plain = eng.generate([prompt], params)[0]
        cut = eng.generate_pruning([prompt], params,
                                   lambda _i, _s, out: [(start, end)] if len(out) == a.cut_at else [])[0]
    lo = a.cut_at - 1  # the first token read after the cut
    p_out, p_lp = plain.token_ids or [], plain.token_logprobs or []
    c_out, c_lp = cut.token_ids or [], cut.token_logprobs or []
    rows = [("no cut, causal reference", reference(lm, prompt, p_out, None), p_out, p_lp),
            ("cut, masked reference", reference(lm, prompt, c_out, (a.cut_at, start, end)), c_out, c_lp),
            ("cut, unmasked reference", reference(lm, prompt, c_out, None), c_out, c_lp)]
    for name, ref, out, lps in rows:
        top1, delta = agreement(ref, out, lps, lo)
        print(f"{name:25s} tokens {lo}..{len(out) - 1}: top-1 agreement {top1:.3f}, mean |Δ log p| {delta:.3f}")
    print("command: python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()
