"""What the study asks of a pretrained model beyond its loss (the notes' options F1-F3), through reasonlab's hf
engine on the exported model:

- ``table``: "What is a times b?" for the family's facts, greedy — right when the first number written is c or
  the first fact token written is the right one; ``multi_digit`` (two-digit factors) and ``addition`` the same way
- ``forced``: after "What is a times b? ", the right fact token's rank among all the family's tokens (1 = first),
  its probability, and the share ranked first — for the baseline these tokens were never seen: chance is rank ~23
- ``embedding``: mean cosine similarity of fact-token embeddings sharing an operand, sharing a result, against all
  pairs (the random baseline): do they cluster beyond chance?
- ``usage``: fact tokens per generated answer on GSM8K test questions
"""

from __future__ import annotations

import random
import re
import statistics
from pathlib import Path
from typing import Any

from reasonlab.experiments.multokens.facts import FactFamily

NUMBER = re.compile(r"\d+")


def first_answer(text: str, family: FactFamily) -> int | None:
    """The first number written, or the result of the first fact token (whichever comes first)."""
    best: tuple[int, int] | None = None
    for f in family.facts:
        at = text.find(f.token)
        if at >= 0 and (best is None or at < best[0]):
            best = (at, f.c)
    m = NUMBER.search(text)
    if m and (best is None or m.start() < best[0]):
        return int(m.group())
    return best[1] if best else None


def generate_texts(engine: Any, prompts: list[str], max_tokens: int) -> list[str]:
    """Greedy completions as text with special tokens kept (a fact token must stay visible to be counted)."""
    from reasonlab.engines import SamplingParams

    gens = engine.generate(prompts, SamplingParams(max_tokens=max_tokens))
    return [engine.detokenize(g.token_ids or [], special=True) for g in gens]  # fact tokens kept


def run_probes(hf_dir: str | Path, family: FactFamily, seed: int = 0, n_usage: int = 20) -> dict[str, Any]:
    import torch

    from reasonlab.data import load_problems
    from reasonlab.engines.hf import HFEngine

    rng = random.Random(seed)
    out: dict[str, Any] = {}
    with HFEngine(str(hf_dir), batch_size=16) as engine:
        facts = list(family.facts)
        texts = generate_texts(engine, [f"What is {f.a} times {f.b}?" for f in facts], 8)
        out["table"] = sum(first_answer(t, family) == f.c for t, f in zip(texts, facts)) / len(facts)
        pairs = [(rng.randint(10, 99), rng.randint(10, 99)) for _ in range(20)]
        texts = generate_texts(engine, [f"What is {a} times {b}?" for a, b in pairs], 8)
        out["multi_digit"] = sum(first_answer(t, family) == a * b for t, (a, b) in zip(texts, pairs)) / len(pairs)
        sums = [(rng.randint(1, 50), rng.randint(1, 50)) for _ in range(20)]
        texts = generate_texts(engine, [f"{a} + {b} =" for a, b in sums], 6)
        out["addition"] = sum(first_answer(t, family) == a + b for t, (a, b) in zip(texts, sums)) / len(sums)

        ranks, probs = [], []
        tokens = family.tokens
        for f in facts:  # forced prefix: every fact token scored after the question
            scored = engine.loglikelihood([(f"What is {f.a} times {f.b}? ", t) for t in tokens])
            lps = [lp for lp, _ in scored]
            right = lps[tokens.index(f.token)]
            ranks.append(1 + sum(lp > right for lp in lps))
            probs.append(float(torch.tensor(right).exp()))
        out["forced"] = {"mean_rank": statistics.fmean(ranks), "top1": sum(r == 1 for r in ranks) / len(ranks),
                         "mean_prob": statistics.fmean(probs), "of": len(tokens)}

        wte = engine.lm.get_input_embeddings().weight.detach()
        ids = [engine.tokenizer.convert_tokens_to_ids(t) for t in tokens]
        emb = torch.nn.functional.normalize(wte[ids].float(), dim=-1)
        sim = emb @ emb.T  # [F, F] cosine
        operand, result, every = [], [], []
        for i in range(len(facts)):
            for j in range(i + 1, len(facts)):
                s = float(sim[i, j])
                every.append(s)
                if {facts[i].a, facts[i].b} & {facts[j].a, facts[j].b}:
                    operand.append(s)
                if facts[i].c == facts[j].c:
                    result.append(s)
        out["embedding"] = {"shared_operand": statistics.fmean(operand), "all_pairs": statistics.fmean(every),
                            "shared_result": statistics.fmean(result) if result else None}

        context = engine.lm.config.n_positions
        prompts = [f"Question: {p.question}\nAnswer:" for p in load_problems("gsm8k", limit=n_usage)]
        prompts = [q for q in prompts if len(engine.tokenize(q)) <= context // 2]  # room to answer
        texts = generate_texts(engine, prompts, context // 2) if prompts else []
        out["usage_per_answer"] = (statistics.fmean(sum(t.count(tok) for tok in tokens) for t in texts)
                                   if texts else None)
        out["usage_answers"] = len(texts)
    return out
