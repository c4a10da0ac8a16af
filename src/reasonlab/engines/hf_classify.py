"""A scalar-head model on transformers: scores whole conversations (a reward model, a discriminative verifier).

Not a generator, so not an ``Engine``: the one thing it does is read a conversation and give one number, the
head's output at the last token — what TRL's ``RewardTrainer`` trains (``reasonlab train reward``). The
conversation is tokenized exactly as the trainer tokenized it (``apply_chat_template`` without a generation
prompt), so training and scoring read the same ids.

    >>> clf = HFClassifier("qwen2.5-coder-0.5b", lora="runs/train/reward")          # doctest: +SKIP
    >>> clf.score([[{"role": "user", "content": "1+1?"}, {"role": "assistant", "content": "2"}]])  # doctest: +SKIP
    ([1.73], 19)
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Literal

from reasonlab.engines.base import Message
from reasonlab.errors import EngineError, ModelError


def hf_source(model: str) -> str:
    """What ``from_pretrained`` loads for ``model``: a registered name or .gguf becomes its dequantized HF
    directory (cached, ``hf.gguf_to_hf``); an HF directory or hub id is itself."""
    from reasonlab.engines import EngineConfig, gguf_file, resolve

    backend, target = resolve(EngineConfig(model=model))
    if backend == "llamacpp":
        from reasonlab.engines.hf import gguf_to_hf

        return str(gguf_to_hf(gguf_file(model)[0]))
    if backend == "openai":
        raise ModelError(f"{model} is a server: a scalar-head verifier needs the weights")
    return target


class HFClassifier:
    """One output per conversation from ``AutoModelForSequenceClassification`` (``num_labels=1``).

    Args:
        model: the base (registered name, .gguf, HF directory or hub id).
        lora: a peft adapter trained with the head (a ``reasonlab train reward`` run or its adapter/): peft
            saved the head beside the LoRA, so the base's own (random) head is replaced.
        batch_size: conversations per forward pass.
        precision: bf16 reads under bf16 autocast (fp32 weights), as ``reasonlab train`` trains; auto: bf16 where
            the hardware multiplies bf16 (a CPU with avx512_bf16 or AMX, a GPU that supports it), else fp32.
    """

    def __init__(self, model: str, lora: str | None = None, batch_size: int = 4, device: str = "cpu",
                 precision: Literal["auto", "fp32", "bf16"] = "auto") -> None:
        try:
            import torch
            from transformers import AutoModelForSequenceClassification, AutoTokenizer
        except ImportError as err:
            raise EngineError("a scalar-head verifier needs transformers and torch: pip install 'reasonlab[hf]'") \
                from err
        self._torch = torch
        self.model, self.device, self.batch_size = model, device, batch_size
        source = hf_source(model)
        adapter = None
        if lora is not None:
            adapter = Path(lora) / "adapter" if (Path(lora) / "adapter" / "adapter_config.json").exists() else Path(lora)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(adapter) if adapter and (adapter / "tokenizer_config.json")
                                                           .exists() else source)
            net, info = AutoModelForSequenceClassification.from_pretrained(source, num_labels=1, dtype=torch.float32,
                                                                           output_loading_info=True)
        except (OSError, ValueError) as err:
            raise ModelError(f"transformers could not load '{model}' ({source}): {str(err).splitlines()[0]}") from err
        if self.tokenizer.pad_token_id is None:  # this instance's tokenizer: nothing shared is mutated
            self.tokenizer.pad_token = self.tokenizer.eos_token
        net.config.pad_token_id = self.tokenizer.pad_token_id  # the head reads the last non-padding token
        if adapter is not None:
            from peft import PeftModel

            try:
                net = PeftModel.from_pretrained(net, str(adapter))
            except (OSError, ValueError, RuntimeError) as err:
                raise ModelError(f"LoRA {lora} does not load on {model}: {str(err).splitlines()[0]}") from err
        # a causal LM loads with a freshly drawn head (transformers says so); the adapter of `reasonlab train
        # reward` carries the trained one (peft's modules_to_save). Without either the scores are a random projection
        saved = getattr(getattr(net, "peft_config", {}).get("default"), "modules_to_save", None) or []
        self.head_trained = not any(k.startswith("score.") for k in info.get("missing_keys", [])) or "score" in saved
        if not self.head_trained:
            import logging

            logging.getLogger("reasonlab.engines").warning(
                "%s%s has no trained scalar head: its scores are a random projection (train one with `reasonlab "
                "train reward` and pass its run as the LoRA)", model, f" + {lora}" if lora else "")
        self.net = net.to(device).eval()
        self.lora = str(adapter) if adapter is not None else None
        from reasonlab.runs.machine import bf16_precision  # a sibling capability: what this hardware does

        self.precision = bf16_precision(precision, device)
        self._lock = threading.Lock()

    def tokenize(self, conversation: list[Message]) -> list[int]:
        """The ids the trainer read for this conversation (TRL: ``apply_chat_template``, no generation prompt)."""
        return list(self.tokenizer.apply_chat_template(conversation, tokenize=True, return_dict=True)["input_ids"])

    def score(self, conversations: list[list[Message]]) -> tuple[list[float], int]:
        """(the head's output for each conversation, tokens read)."""
        torch = self._torch
        ids = [self.tokenize(c) for c in conversations]
        out: list[float] = []
        pad = self.tokenizer.pad_token_id
        bf16 = torch.autocast(self.device.split(":")[0], dtype=torch.bfloat16, enabled=self.precision == "bf16")
        with self._lock, torch.no_grad(), bf16:
            for lo in range(0, len(ids), self.batch_size):
                chunk = ids[lo: lo + self.batch_size]
                width = max(len(x) for x in chunk)
                x = torch.tensor([row + [pad] * (width - len(row)) for row in chunk], device=self.device)  # [B, T]
                mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in chunk], device=self.device)
                logits = self.net(input_ids=x, attention_mask=mask).logits  # [B, 1]
                out += [float(v) for v in logits[:, 0].float()]
        return out, sum(len(x) for x in ids)

    def identity(self) -> dict[str, Any]:
        from reasonlab.engines.hf import _weights_stamp

        return {"backend": "hf-classifier", "model": self.model, "lora": self.lora and _weights_stamp(self.lora),
                "precision": self.precision}

    def describe(self) -> dict[str, Any]:
        return {"backend": "hf-classifier", "model": self.model, "lora": self.lora}

    def close(self) -> None:
        self.net = None
