"""Post-training for the study: full SFT of the exported model through reasonlab's SFT (TRL) on GSM8K train
rationales (the notes' A1) or multiplication drills (A2) — injected for the mul-token condition, not for the
baseline — then greedy GSM8K test accuracy and mul-tokens per answer. A3, GRPO with the notes' shaped reward, is
``reasonlab train grpo --reward reasonlab.experiments.multokens.reward:shaped`` on the exported model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reasonlab.experiments.multokens.config import MulTokensConfig
from reasonlab.experiments.multokens.corpus import CALC, _bundled
from reasonlab.experiments.multokens.facts import FactFamily, count_tokens, inject
from reasonlab.experiments.multokens.probes import generate_texts
from reasonlab.experiments.multokens.reward import _number


def drill_rows(seed: int, n: int = 5000) -> list[tuple[str, str]]:
    """(question, answer) drills: "What is a times b?" -> " a × b = c. The answer is c." (the notes' A2)."""
    import random

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rng.randint(1, 12), rng.randint(1, 12)
        out.append((f"Question: What is {a} times {b}?\nAnswer:", f" {a} × {b} = {a * b}. #### {a * b}"))
    return out


def sft_rows(cfg: MulTokensConfig, family: FactFamily, context: int) -> list[dict[str, str]]:
    """prompt/completion rows — GSM8K train (question; rationale without calculator annotations, ending in
    ``#### answer``) or drills — short enough for the model's context (about 3 characters per token), injected
    for the mul-token condition."""
    pairs: list[tuple[str, str]] = []
    if cfg.sft_data == "drills":
        pairs = drill_rows(cfg.seed)
    else:
        with _bundled("gsm8k_train.jsonl").open(encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                pairs.append((f"Question: {row['question']}\nAnswer:", " " + CALC.sub("", row["answer"])))
    rows = []
    for prompt, completion in pairs:
        if cfg.condition == "multokens":
            completion = inject(completion, family, cfg.inject_mode)
        if len(prompt) + len(completion) < 3 * context:
            rows.append({"prompt": prompt, "completion": completion})
    return rows


def gsm8k_after_sft(cfg: MulTokensConfig, out: Path, family: FactFamily) -> dict[str, Any]:
    from reasonlab.data import load_problems
    from reasonlab.engines.hf import HFEngine
    from reasonlab.train import TrainConfig, train

    data = out / "sft.jsonl"
    if not data.exists():
        data.write_text("".join(json.dumps(r) + "\n" for r in sft_rows(cfg, family, cfg.block_size)))
    summary = train(TrainConfig(method="sft", model=str(out / "hf"), data=str(data), out=str(out / "sft"),
                                max_steps=cfg.sft_steps, batch_size=8, grad_accum=1, learning_rate=5e-4,
                                max_length=cfg.block_size, lora=None, save_steps=max(1, cfg.sft_steps // 2),
                                seed=cfg.seed))
    right, used, n = 0, 0, 0
    with HFEngine(summary["result"], batch_size=16) as engine:
        problems = [p for p in load_problems("gsm8k", limit=cfg.sft_eval)
                    if len(engine.tokenize(f"Question: {p.question}\nAnswer:")) <= cfg.block_size // 2]
        texts = generate_texts(engine, [f"Question: {p.question}\nAnswer:" for p in problems],
                               cfg.block_size // 2)
        for p, text in zip(problems, texts):
            got = _number(text.split("Question:")[0])
            right += got is not None and got == float(p.answer)
            used += count_tokens(text, family)
            n += 1
    return {"steps": summary["steps"], "rows": summary["rows"], "graded": n, "accuracy": right / n if n else None,
            "usage_per_answer": used / n if n else None}
