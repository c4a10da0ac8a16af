"""Tokenizers without a model: what the openai engine uses to render a served model's chat template and
count its tokens when the server cannot (llama-cpp-python's server and vLLM have no template endpoint).

``load_tokenizer(spec)`` takes what a user has: a ``.gguf`` file (llama.cpp reads its vocabulary and
chat template alone, cheaply), a registered model name (its GGUF), a local HF directory or a hub id
(transformers' ``AutoTokenizer``).

    >>> tok = load_tokenizer("qwen2.5-coder-0.5b")                           # doctest: +SKIP
    >>> tok.render_chat([{"role": "user", "content": "1+1?"}]).startswith("<|im_start|>")   # doctest: +SKIP
    True
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from reasonlab.engines.base import Message
from reasonlab.errors import EngineError, ModelError


class Tokenizer(Protocol):
    def render_chat(self, messages: list[Message]) -> str: ...

    def count_tokens(self, text: str) -> int: ...

    def tokenize(self, text: str, prompt: bool = False) -> list[int]: ...

    def detokenize(self, ids: list[int], special: bool = False) -> str: ...


class HFTokenizer:
    """transformers' tokenizer for a local directory or a hub id."""

    def __init__(self, spec: str) -> None:
        try:
            from transformers import AutoTokenizer
        except ImportError as err:
            raise EngineError(f"tokenizer '{spec}' needs transformers: pip install 'reasonlab[hf]' "
                              f"(or pass a .gguf file as --tokenizer)") from err
        try:
            self.tok: Any = AutoTokenizer.from_pretrained(spec)
        except (OSError, ValueError) as err:
            raise ModelError(f"tokenizer '{spec}' could not be loaded: {str(err).splitlines()[0]}") from err
        self.spec = spec

    def render_chat(self, messages: list[Message]) -> str:
        if not getattr(self.tok, "chat_template", None):
            raise EngineError(f"tokenizer '{self.spec}' has no chat template: use --prompt completion")
        return str(self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

    def tokenize(self, text: str, prompt: bool = False) -> list[int]:
        bos = self.tok.bos_token  # as the hf engine: a prompt gets BOS only when it lacks it
        return list(self.tok(text, add_special_tokens=prompt and bool(bos) and not text.startswith(bos))["input_ids"])

    def detokenize(self, ids: list[int], special: bool = False) -> str:
        return str(self.tok.decode(list(ids), skip_special_tokens=not special))


def resolvable(spec: str) -> bool:
    """Does ``spec`` name a tokenizer on this machine (a .gguf file, an installed registered model, a
    local directory) — without touching the network?"""
    from reasonlab.engines.models import MODELS, get_spec, installed_path

    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".gguf" or path.is_dir():
        return True
    if spec in MODELS:
        return installed_path(get_spec(spec)) is not None
    return False


def load_tokenizer(spec: str) -> Tokenizer:
    """A tokenizer for ``spec``: a .gguf path, a registered model name, a local HF directory or a hub id."""
    from reasonlab.engines.models import MODELS, ensure

    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        from reasonlab.engines.llamacpp import GGUFTokenizer

        return GGUFTokenizer(path)
    if spec in MODELS:
        from reasonlab.engines.llamacpp import GGUFTokenizer

        return GGUFTokenizer(ensure(spec))
    return HFTokenizer(spec)
