"""Training: what runs produce, turned back into a better model with TRL (SFT, DPO, KTO, GRPO), LoRA by default.

    reasonlab train sft --model qwen2.5-coder-0.5b --data data/star-sft.jsonl --out runs/train/star

torch, transformers, TRL and peft are imported only when a run starts (``pip install 'reasonlab[train]'``).
"""

from reasonlab.train.config import DPOOptions, GRPOOptions, KTOOptions, LoraOptions, SFTOptions, TrainConfig

__all__ = ["DPOOptions", "GRPOOptions", "KTOOptions", "LoraOptions", "SFTOptions", "TrainConfig", "train"]


def train(*args, **kwargs):  # noqa: ANN002, ANN003 - the heavy imports wait until a run starts
    from reasonlab.train.run import train as _train

    return _train(*args, **kwargs)
