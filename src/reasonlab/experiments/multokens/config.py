"""The mul-tokens study's knobs (research notebook 001; zhengpu-berkeley/domain-token-gpt2), sized by default so
one condition pretrains on a 2-core CPU in well under an hour; the same config scales to a GPU run (bigger model,
``budget_tokens`` in the billions, another corpus by path or HF dataset id)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class CorpusConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    shakespeare: float = Field(0.4, ge=0.0, description="share of tiny Shakespeare (bundled)")
    gsm8k: float = Field(0.4, ge=0.0, description="share of GSM8K train questions + rationales (bundled)")
    drills: float = Field(0.2, ge=0.0, description="share of synthetic arithmetic: tables, drills, word problems")
    extra: str | None = Field(None, description="another corpus: a text file's path or an HF dataset id (its "
                                                "'text' column); its share is extra_share")
    extra_share: float = Field(0.0, ge=0.0)
    val_fraction: float = Field(0.05, gt=0.0, lt=0.5, description="documents held out for validation")


class MulTokensConfig(BaseModel):
    """One pretraining run: a condition, a seed, a budget."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    condition: Literal["baseline", "multokens"] = Field("multokens", description="multokens: facts injected into "
                                                                                "the corpus; baseline: the same "
                                                                                "corpus and vocabulary, no injection")
    family: str = Field("mul", description="fact family (facts.FAMILIES): mul, squares, add, div")
    family_upto: int = Field(9, ge=2, le=99, description="largest operand (9: the 45 facts; 12 extends)")
    inject_mode: Literal["strict", "weak"] = Field("strict", description="strict: needs '= c'; weak: a bare a*b too")
    init: Literal["random", "composed"] = Field("random", description="new tokens' embeddings: random, or the "
                                                                      "notes' D2 — the mean of their operand and "
                                                                      "result tokens' embeddings at step 0")
    corpus: CorpusConfig = Field(default_factory=CorpusConfig)
    vocab_size: int = Field(4096, ge=300, description="BPE vocabulary trained here (both conditions share it)")
    n_layer: int = Field(4, ge=1)
    n_head: int = Field(4, ge=1)
    n_embd: int = Field(128, ge=16)
    block_size: int = Field(256, ge=16, description="context length in tokens")
    budget_tokens: int = Field(4_000_000, ge=1000, description="training tokens, the same for both conditions")
    batch_size: int = Field(16, ge=1, description="sequences per micro-batch")
    grad_accum: int = Field(2, ge=1, description="micro-batches per optimizer step")
    lr: float = Field(1e-3, gt=0.0, description="peak AdamW learning rate (warmup 5 %, cosine to 10 %)")
    weight_decay: float = Field(0.1, ge=0.0)
    grad_clip: float = Field(1.0, gt=0.0)
    eval_every: int = Field(50, ge=1, description="optimizer steps between validation passes")
    eval_batches: int = Field(20, ge=1, description="validation micro-batches per pass (the same ones every time)")
    checkpoint_every: int = Field(50, ge=1)
    hellaswag: str | None = Field(None, description="HellaSwag data: a JSONL path (ctx, endings, label) or an HF "
                                                    "dataset id (Rowan/hellaswag); none: skipped")
    hellaswag_limit: int | None = Field(None, ge=1, description="score at most this many HellaSwag items")
    sft_steps: int = Field(0, ge=0, description="after pretraining, full SFT on GSM8K train rationales for this many "
                                                "steps (the mul-token condition's rationales injected; 0: none)")
    sft_data: Literal["gsm8k", "drills"] = Field("gsm8k", description="SFT rows: GSM8K train rationales (the "
                                                                      "notes' A1) or synthetic drills (A2)")
    sft_eval: int = Field(100, ge=1, description="GSM8K test problems graded after SFT (greedy)")
    threads: int = Field(2, ge=1)
    seed: int = Field(0)

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.grad_accum * self.block_size

    @property
    def steps(self) -> int:
        return max(1, self.budget_tokens // self.tokens_per_step)
