"""One thin builder per method: reasonlab's config in, TRL's config and trainer out. The loops are TRL's.

Every builder gets the shared CPU-safe arguments (``common_args``) and adds its method's own. New methods
register here (``TRAINERS``), not in an if-chain.
"""

from __future__ import annotations

from typing import Any, Callable

from reasonlab.train.config import TrainConfig
from reasonlab.train.model import lora_config


def precision(choice: str) -> str:
    """``auto`` resolved on this machine: bf16 where it multiplies bf16 in hardware, else fp32."""
    import torch

    from reasonlab.runs.machine import bf16_precision

    return bf16_precision(choice, "cuda" if torch.cuda.is_available() else "cpu")


def common_args(cfg: TrainConfig, out: str) -> dict[str, Any]:
    """TrainingArguments every method shares. TRL's defaults assume a GPU (bf16, gradient checkpointing);
    these run on a CPU, and accelerate's launcher still scales them out (it overrides the device). bf16 here is
    autocast: the weights, LoRA's included, and the optimizer state stay fp32."""
    import torch

    cuda = torch.cuda.is_available()
    return dict(
        output_dir=out, use_cpu=not cuda, bf16=precision(cfg.precision) == "bf16", fp16=False,
        gradient_checkpointing=False,
        learning_rate=cfg.learning_rate, num_train_epochs=cfg.epochs, max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size, gradient_accumulation_steps=cfg.grad_accum,
        warmup_steps=cfg.warmup_ratio, logging_steps=cfg.logging_steps, save_strategy="steps",  # < 1: a ratio
        save_steps=cfg.save_steps, save_total_limit=cfg.save_total_limit, seed=cfg.seed, report_to="none",
        dataloader_num_workers=0, logging_first_step=True,
    )


def sft(cfg: TrainConfig, model: Any, tok: Any, data: Any, out: str, collator: Any = None,
        token_rows: dict[str, list[int]] | None = None, **_: Any) -> Any:
    from trl import SFTConfig, SFTTrainer

    own_rows = "labels" in data.column_names or "position_ids" in data.column_names
    extra: dict[str, Any] = {}
    if own_rows:  # hcot rows (train.hcot) are made whole, with their own collator: TRL must not re-prepare them
        extra = dict(dataset_kwargs={"skip_prepare_dataset": True}, remove_unused_columns=False)
    args = SFTConfig(**common_args(cfg, out), max_length=cfg.max_length,
                     completion_only_loss=cfg.sft.completion_only_loss, packing=cfg.sft.packing, **extra)
    cls = _hcot_sft_trainer(full_logits=bool(token_rows)) if own_rows or token_rows else SFTTrainer
    return cls(model=model, args=args, train_dataset=data, processing_class=tok,
               peft_config=lora_config(cfg.lora, token_rows=token_rows), data_collator=collator)


def _hcot_sft_trainer(full_logits: bool) -> Any:
    from trl import SFTTrainer

    class HcotSFTTrainer(SFTTrainer):  # type: ignore[misc]
        """SFT on hcot rows. With a 4-D additive attention mask TRL would count trained tokens as the mask's sum,
        which a float mask is not: the collator's ``real_tokens`` (B, L) is counted instead. With trained rows for
        new tokens (``full_logits``) the loss comes from the model's own forward: TRL's fused LM head multiplies the
        hidden states by ``lm_head.weight`` directly, which would skip peft's trained rows of an untied output
        matrix (and fails on their wrapper) — the new tokens' output rows would never learn."""

        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            real = inputs.pop("real_tokens", None)
            before = self._total_train_tokens
            if full_logits:
                out = self._full_logits_loss(model, inputs, return_outputs, num_items_in_batch)
            else:
                out = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            if model.training and (real is not None or full_logits):  # else TRL counted them
                tokens = real.sum() if real is not None else inputs["attention_mask"].sum()
                self._total_train_tokens = before + int(tokens)
                self._metrics["train"]["num_tokens"] = [self._total_train_tokens]
            return out

        def _full_logits_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool,
                              num_items_in_batch: Any) -> Any:
            import torch
            import torch.nn.functional as F

            mode = "train" if model.training else "eval"
            labels = inputs["labels"][:, 1:]  # (B, L-1): token t+1 is predicted at t
            outputs = model(**{k: v for k, v in inputs.items() if k != "labels"}, use_cache=False)
            logits = outputs.logits[:, :-1].float()  # (B, L-1, V)
            mask = labels != -100
            nll = F.cross_entropy(logits.transpose(1, 2), labels.clamp(min=0), reduction="none")  # (B, L-1)
            count = mask.sum() if num_items_in_batch is None else num_items_in_batch
            loss = (nll * mask).sum() / torch.as_tensor(count).clamp(min=1)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes  # as TRL: DDP averages the gradients across ranks
            with torch.no_grad():  # TRL's metrics: entropy and top-1 accuracy over the trained positions
                logp = logits.log_softmax(-1)
                entropy = -(logp.exp() * logp).sum(-1)
                valid = max(int(mask.sum()), 1)
                self._metrics[mode]["entropy"].append(float((entropy * mask).sum()) / valid)
                self._metrics[mode]["mean_token_accuracy"].append(
                    float(((logits.argmax(-1) == labels) & mask).sum()) / valid)
            return (loss, outputs) if return_outputs else loss

    return HcotSFTTrainer


def dpo(cfg: TrainConfig, model: Any, tok: Any, data: Any, out: str, **_: Any) -> Any:
    from trl import DPOConfig, DPOTrainer

    # with LoRA the reference is the base with the adapter switched off: no second copy of the model
    args = DPOConfig(**common_args(cfg, out), max_length=cfg.max_length, beta=cfg.dpo.beta,
                     loss_type=[cfg.dpo.loss_type])
    cls = _ids_dpo_trainer() if "prompt_ids" in data.column_names else DPOTrainer
    return cls(model=model, args=args, train_dataset=data, processing_class=tok, peft_config=lora_config(cfg.lora))


def _ids_dpo_trainer() -> Any:
    """TRL's DPOTrainer for rows that are token ids already (pivotal-token pairs): TRL 1.16 always re-tokenises
    prompt + completion text and appends EOS, which for a one-token completion adds a second trained token and
    can merge the token into the prompt's last one. Rows with ``prompt_ids`` / ``chosen_ids`` / ``rejected_ids``
    go to its collator as they are (rows whose prompt fills max_length dropped, as TRL does)."""
    from trl import DPOTrainer

    class IdsDPOTrainer(DPOTrainer):
        def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, dataset_name: str) -> Any:
            if "prompt_ids" not in dataset.column_names:
                return super()._prepare_dataset(dataset, processing_class, args, dataset_name)
            if args.max_length is not None:
                dataset = dataset.filter(lambda r: len(r["prompt_ids"]) < args.max_length)
            return dataset

    return IdsDPOTrainer


def kto_weights(n_desirable: int, n_undesirable: int, desirable: float, undesirable: float,
                balance: bool) -> tuple[float, float, str | None]:
    """(desirable_weight, undesirable_weight, a warning or None). TRL's KTO advises the weighted class ratio
    desirable_weight * n_desirable / (undesirable_weight * n_undesirable) in [1, 4/3]; ``balance`` raises the
    desirable weight to n_undesirable / n_desirable when desirable rows are rarer.

        >>> kto_weights(131, 281, 1.0, 1.0, balance=True)[:2]
        (2.145, 1.0)
    """
    if balance and n_desirable < n_undesirable:
        desirable = round(n_undesirable / n_desirable * undesirable, 3)
    ratio = desirable * n_desirable / (undesirable * n_undesirable)
    warning = None
    if not 1.0 - 1e-3 <= ratio <= 4 / 3 + 1e-3:  # the rounded balance weight may land a hair under 1
        warning = (f"kto: {n_desirable} desirable and {n_undesirable} undesirable rows at weights {desirable} / "
                   f"{undesirable} give a weighted ratio of {ratio:.2f}, outside TRL's advised [1, 1.33] "
                   f"(set kto.balance: true, or the weights)")
    return desirable, undesirable, warning


def kto(cfg: TrainConfig, model: Any, tok: Any, data: Any, out: str, **_: Any) -> Any:
    import logging

    from trl import KTOConfig, KTOTrainer

    n_desirable = sum(bool(x) for x in data["label"])
    dw, uw, warning = kto_weights(n_desirable, len(data) - n_desirable, cfg.kto.desirable_weight,
                                  cfg.kto.undesirable_weight, cfg.kto.balance)
    if warning:
        logging.getLogger("reasonlab.train").warning(warning)
    args = KTOConfig(**common_args(cfg, out), max_length=cfg.max_length, beta=cfg.kto.beta,
                     desirable_weight=dw, undesirable_weight=uw)
    return KTOTrainer(model=model, args=args, train_dataset=data, processing_class=tok,
                      peft_config=lora_config(cfg.lora))


def grpo(cfg: TrainConfig, model: Any, tok: Any, data: Any, out: str, rewards: list[Any] | None = None,
         **_: Any) -> Any:
    from trl import GRPOConfig, GRPOTrainer

    from reasonlab.errors import ConfigError

    g = cfg.grpo
    # One optimizer step = one generation batch: batch_size x grad_accum prompts, num_generations completions each
    # (whole groups, so the advantages compare a prompt's own rollouts). Its loss is computed micro_batch
    # completions at a time and the gradients accumulate (TRL splits the generation batch into
    # steps_per_generation = gradient_accumulation_steps passes).
    rollouts = cfg.batch_size * g.num_generations * cfg.grad_accum
    micro = min(g.micro_batch, rollouts)
    if rollouts % micro:
        raise ConfigError(f"grpo.micro_batch {g.micro_batch} does not divide the step's {rollouts} rollouts "
                          f"(batch_size {cfg.batch_size} x num_generations {g.num_generations} x grad_accum "
                          f"{cfg.grad_accum})")
    args = GRPOConfig(**{**common_args(cfg, out), "per_device_train_batch_size": micro,
                         "gradient_accumulation_steps": rollouts // micro},
                      num_generations=g.num_generations, max_completion_length=g.max_completion_length,
                      temperature=g.temperature, beta=g.beta, reward_weights=list(g.reward_weights)
                      if g.reward_weights else None, log_completions=False)
    return GRPOTrainer(model=model, args=args, train_dataset=data, processing_class=tok, reward_funcs=rewards,
                       peft_config=lora_config(cfg.lora), rollout_func=rollout_func(cfg, tok))


def rollout_func(cfg: TrainConfig, tok: Any) -> Any:
    """TRL's ``rollout_func`` for ``cfg.grpo.rollout`` (None: TRL's own generate)."""
    import os

    from reasonlab.errors import ConfigError

    g = cfg.grpo
    if g.rollout == "transformers":
        return None
    if cfg.lora is None:
        raise ConfigError("grpo.rollout: llamacpp samples with the policy's LoRA: full fine-tuning needs "
                          "rollout: transformers")
    from reasonlab.train.model import model_source
    from reasonlab.train.rollout import LlamaCppRollout

    _, gguf = model_source(cfg.model)
    if gguf is None:
        raise ConfigError(f"grpo.rollout: llamacpp needs a GGUF model; {cfg.model} is not one")
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is marked experimental in TRL 1.16
    return LlamaCppRollout(gguf, tok, max_tokens=g.max_completion_length, temperature=g.temperature,
                           n_parallel=min(cfg.batch_size * g.num_generations * cfg.grad_accum, 64), seed=cfg.seed)


def reward(cfg: TrainConfig, model: Any, tok: Any, data: Any, out: str, **_: Any) -> Any:
    """A scalar-head outcome verifier (Bradley-Terry on right/wrong pairs of one problem: TRL's RewardTrainer)."""
    from trl import RewardConfig, RewardTrainer

    args = RewardConfig(**common_args(cfg, out), max_length=cfg.max_length)
    return RewardTrainer(model=model, args=args, train_dataset=data, processing_class=tok,
                         peft_config=lora_config(cfg.lora, task="SEQ_CLS"))


TRAINERS: dict[str, Callable[..., Any]] = {"sft": sft, "dpo": dpo, "kto": kto, "grpo": grpo, "reward": reward}
