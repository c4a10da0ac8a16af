"""The model, trainable: a transformers model in fp32 and its tokenizer, from whatever the user evaluates.

A GGUF (a registered name such as the default, or a .gguf path) is dequantized by transformers once and
cached as an HF directory (``engines.hf.gguf_to_hf``): without ``GgufConfig(dequantize=True)`` transformers
5.x marks it quantized and refuses to train or save it. Its weights are the dequantized Q4_K_M values, not the
original bf16 model's: training starts from exactly the model llama.cpp evaluates. An HF directory or hub id
loads as it is.

    >>> source, gguf = model_source("qwen2.5-coder-0.5b")           # doctest: +SKIP
    >>> gguf.name                                                    # doctest: +SKIP
    'qwen2.5-coder-0.5b.gguf'
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from reasonlab.errors import ModelError


def model_source(model: str) -> tuple[str, Path | None]:
    """(what ``from_pretrained`` loads, the GGUF it came from or None)."""
    from reasonlab.engines import EngineConfig, gguf_file, resolve

    backend, target = resolve(EngineConfig(model=model))
    if backend == "openai":
        raise ModelError(f"{model} is a server: training needs the weights (a registered name, .gguf, HF dir or "
                         f"hub id)")
    if backend == "llamacpp":
        from reasonlab.engines.hf import gguf_to_hf

        path, _ = gguf_file(model)
        return str(gguf_to_hf(path)), path
    return target, None


def model_identity(model: str) -> dict[str, Any]:
    """What a training run records about its base, so a checkpoint never resumes on other weights."""
    source, gguf = model_source(model)
    ident: dict[str, Any] = {"model": model, "source": source}
    if gguf is not None:
        stat = gguf.stat()
        ident["gguf"] = {"file": gguf.name, "bytes": stat.st_size}
    cfg = Path(source) / "config.json"
    if cfg.exists():
        ident["config_sha256"] = hashlib.sha256(cfg.read_bytes()).hexdigest()[:16]
    return ident


def load_trainable(model: str, head: str = "lm") -> tuple[Any, Any]:
    """(model in fp32 with its KV cache off, tokenizer with a pad token) for training ``model``; ``head="score"``
    puts a one-output scalar head on the same body instead of the LM head (a reward model / verifier)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    source, _ = model_source(model)
    try:
        tok = AutoTokenizer.from_pretrained(source)
        if head == "score":  # the head starts random (seeded by the trainer), the body is the model's
            lm = AutoModelForSequenceClassification.from_pretrained(source, dtype=torch.float32, num_labels=1)
        else:
            lm = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    except (OSError, ValueError) as err:
        raise ModelError(f"transformers could not load '{model}' ({source}): {str(err).splitlines()[0]}") from err
    if tok.pad_token is None:  # this instance is ours: no shared tokenizer is mutated
        tok.pad_token = tok.eos_token
    if head == "score":
        lm.config.pad_token_id = tok.pad_token_id  # the head reads the last non-padding token
    lm.config.use_cache = False  # training recomputes everything; the cache only costs memory
    return lm, tok


def lora_config(options: Any, task: str = "CAUSAL_LM", token_rows: dict[str, list[int]] | None = None) -> Any:
    """peft's LoraConfig for ``TrainConfig.lora`` (None: full fine-tuning). ``SEQ_CLS``: peft also trains and
    saves the new scalar head (``modules_to_save``) beside the adapter. ``token_rows`` (module name -> token
    ids, ``train.tokens.token_rows``): those rows of the embedding (and untied output) matrices are trained and
    saved too — tokens added for the run must be, or they stay unreachable (see ``train.tokens``)."""
    if options is None:
        return None
    from peft import LoraConfig

    return LoraConfig(r=options.r, lora_alpha=options.alpha, lora_dropout=options.dropout,
                      target_modules=list(options.target_modules), task_type=task,
                      trainable_token_indices=token_rows or None)
