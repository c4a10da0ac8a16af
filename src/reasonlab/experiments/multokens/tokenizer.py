"""The study's tokenizer: a byte-level BPE (GPT-2's scheme) trained here with ``tokenizers`` on the corpus,
because no package this machine can install ships GPT-2's own merges offline (tiktoken downloads them on first
use). Both conditions use the same tokenizer: ``<|endoftext|>`` and every fact token of the family are added
whole, so the vocabulary — and the model — are identical; only the data differs. Fact tokens are ordinary added
tokens, not special ones: decoding keeps them (a generated answer shows the tokens it used).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

EOT = "<|endoftext|>"


def train_tokenizer(docs: list[str], vocab_size: int, fact_tokens: list[str]) -> Any:
    """A ``tokenizers.Tokenizer`` trained on ``docs`` (a sample is plenty), fact tokens added whole."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(fact_tokens), special_tokens=[EOT],
                                  show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(docs, trainer)
    tok.add_tokens([AddedToken(t, normalized=False, special=False) for t in fact_tokens])
    return tok


def as_hf(tok: Any) -> Any:
    """The tokenizer as transformers' fast tokenizer (what the exported model ships with)."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOT, bos_token=EOT, unk_token=EOT, pad_token=EOT)


def load(path: Path) -> Any:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(path))
