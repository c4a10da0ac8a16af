"""What a training run is: one typed config, a method's options beside the shared ones.

Defaults are CPU-safe (TRL's assume a GPU: bf16 and gradient checkpointing on): bf16 autocast only where the
hardware multiplies bf16 (else full precision), no gradient checkpointing (it costs a second forward pass and saves
little on a small model), LoRA on every linear layer.
YAML recipes (``recipes/train/``) override defaults; CLI flags override YAML.

    >>> cfg = TrainConfig(method="dpo", data="data/star-dpo.jsonl", out="runs/train/dpo")
    >>> cfg.lora.r, cfg.dpo.beta, cfg.learning_rate
    (16, 0.1, 0.0001)
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Method = Literal["sft", "dpo", "kto", "grpo", "reward"]


class LoraOptions(BaseModel):
    """peft LoRA on the base model's linear layers (the base stays frozen)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    r: int = Field(16, ge=1, description="rank")
    alpha: int = Field(32, ge=1, description="scaling numerator: the update is (alpha / r) * B @ A")
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: tuple[str, ...] = Field(
        ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
        description="module names to adapt (Llama/Qwen2 names); the GGUF export maps exactly these")


class SFTOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    completion_only_loss: bool = Field(True, description="loss on the completion only (and, for rows with "
                                                         "completion_mask, only on what the model wrote)")
    packing: bool = Field(False, description="pack short rows into max_length sequences")
    hcot: Literal["off", "stages", "mask"] = Field("off", description="hierarchical-CoT rows (datagen hcot), the "
                                                                      "markers added and seeded; stages: each "
                                                                      "example split into prune-aware stages; "
                                                                      "mask: one row per example with a 4-D "
                                                                      "attention mask hiding pruned bodies "
                                                                      "(train.hcot)")
    hcot_positions: Literal["renumber", "keep"] = Field("renumber", description="stages: positions renumbered "
                                                                                "(hcot prune=continue) or the "
                                                                                "original ones (prune=agnostic)")


class DPOOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    beta: float = Field(0.1, gt=0.0, description="strength of the KL anchor to the reference (the frozen base)")
    loss_type: Literal["sigmoid", "ipo", "hinge"] = Field("sigmoid", description="TRL's DPO loss")


class KTOOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    beta: float = Field(0.1, gt=0.0)
    desirable_weight: float = Field(1.0, gt=0.0, description="loss weight of desirable rows (balance the classes)")
    undesirable_weight: float = Field(1.0, gt=0.0)
    balance: bool = Field(False, description="set desirable_weight to n_undesirable / n_desirable when desirable rows "
                                              "are the rarer class (TRL's advice: weighted desirable : undesirable "
                                              "in [1, 4/3]); the weights used are logged")


class GRPOOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str = Field("gsm8k-train", description="problems to roll out on: a bundled name or file")
    limit: int | None = Field(None, ge=1, description="first N problems of the dataset")
    offset: int = Field(0, ge=0)
    prompt: str = Field("boxed", description="prompt template: the same rendering evaluation uses")
    num_generations: int = Field(4, ge=2, description="rollouts per prompt (the group whose rewards are compared)")
    max_completion_length: int = Field(256, ge=8)
    micro_batch: int = Field(2, ge=1, description="completions per forward/backward pass; gradients accumulate over "
                             "the step's batch_size x num_generations x grad_accum. Memory grows with it: one pass "
                             "holds [micro_batch, prompt + completion, vocab] logits and their gradient (the default "
                             "model at 8 x 612 tokens went past 24 GiB)")
    temperature: float = Field(0.7, gt=0.0)
    beta: float = Field(0.0, ge=0.0, description="KL penalty to the reference (TRL's default 0: no reference pass)")
    rewards: tuple[str, ...] = Field(("correct", "format"), description="correct | format | module.path:function")
    reward_weights: tuple[float, ...] | None = Field(None, description="one per reward; None: all 1")
    rollout: Literal["transformers", "llamacpp"] = Field(
        "transformers", description="who samples the rollouts: TRL's transformers generate, or llama.cpp on the "
        "quantized base with the policy's current LoRA (GGUF models with LoRA only; benchmarks/grpo_rollout.py)")

    @model_validator(mode="after")
    def _weights_match(self) -> GRPOOptions:
        if self.reward_weights is not None and len(self.reward_weights) != len(self.rewards):
            raise ValueError(f"reward_weights has {len(self.reward_weights)} values for {len(self.rewards)} rewards")
        return self


class TrainConfig(BaseModel):
    """One training run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Method = Field("sft", description="sft | dpo | kto | grpo | reward (a scalar-head outcome verifier)")
    model: str = Field("qwen2.5-coder-0.5b", description="registered name, .gguf (dequantized once, cached), HF "
                                                         "directory or hub id")
    data: str | None = Field(None, description="sft/dpo/kto: a JSON-lines dataset (reasonlab datagen writes them)")
    out: str = Field("runs/train/run", description="the training run directory (checkpoints, adapter, curves)")
    lora: LoraOptions | None = Field(LoraOptions(), description="None: full fine-tuning")
    learning_rate: float = Field(1e-4, gt=0.0, description="1e-4 suits LoRA; full fine-tuning wants ~1e-5")
    epochs: float = Field(1.0, gt=0.0)
    max_steps: int = Field(-1, description="optimizer steps; -1: from epochs")
    batch_size: int = Field(4, ge=1, description="rows per device step")
    grad_accum: int = Field(1, ge=1, description="steps per optimizer update")
    max_length: int = Field(1024, ge=16, description="tokens per row (prompt + completion); longer rows are cut")
    warmup_ratio: float = Field(0.0, ge=0.0, lt=1.0)
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="bf16: matmuls under bf16 autocast, weights and optimizer in fp32 (1.8x faster per "
                            "step on a CPU with avx512_bf16 or AMX, less activation memory); auto: bf16 where "
                            "the CPU (or GPU) does bf16 in hardware, else fp32")
    seed: int = 0
    logging_steps: int = Field(5, ge=1)
    save_steps: int = Field(25, ge=1, description="checkpoint every N optimizer steps (a killed run resumes there)")
    save_total_limit: int = Field(2, ge=1, description="checkpoints kept")
    sft: SFTOptions = SFTOptions()
    dpo: DPOOptions = DPOOptions()
    kto: KTOOptions = KTOOptions()
    grpo: GRPOOptions = GRPOOptions()

    @model_validator(mode="after")
    def _needs_data(self) -> TrainConfig:
        if self.method != "grpo" and not self.data:
            raise ValueError(f"{self.method} needs a dataset file (data: ...; `reasonlab datagen {self.method}` "
                             f"writes one)")
        if self.method == "kto" and self.batch_size < 2:
            raise ValueError("kto needs batch_size >= 2 (its KL estimate pairs rows within a batch)")
        return self

    def method_options(self) -> BaseModel | None:
        return getattr(self, self.method)
