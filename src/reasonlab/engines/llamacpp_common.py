"""llama.cpp primitives both generation paths share (sequential in ``llamacpp``, batched in ``llamacpp_batch``) and
the scoring context uses: text <-> ids as llama-cpp-python does them, the engine's LoRA on another context, and
cutting a sample's text at its first stop string.

    >>> cut_at_stop("the answer is 4. Q: next", ("Q:",))
    ('the answer is 4. ', 'Q:')
"""

from __future__ import annotations

from typing import Any


def llama_tokens(llm: Any, text: str, prompt: bool = False) -> list[int]:
    """``text`` in a llama.cpp vocabulary, special-token text as those tokens; ``prompt`` adds BOS where the
    vocabulary asks for it (as llama.cpp does for a text prompt)."""
    bos = [llm.token_bos()] if prompt and llm._model.add_bos_token() and llm.token_bos() != -1 else []
    return bos + llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)


def llama_text(llm: Any, ids: list[int], special: bool = False) -> str:
    return llm.detokenize(list(ids), special=special).decode("utf-8", errors="ignore")


def apply_lora(llm: Any, ctx: Any) -> None:
    """Set ``llm``'s LoRA adapter (if it loaded one) on another context over the same weights."""
    import ctypes

    import llama_cpp

    adapter = getattr(llm, "_lora_adapter", None)
    if adapter is None:
        return
    adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(adapter)
    scales = (ctypes.c_float * 1)(llm.lora_scale)
    if llama_cpp.llama_set_adapters_lora(ctx.ctx, adapters, 1, scales):
        raise RuntimeError(f"llama.cpp could not set the LoRA {llm.lora_path} on a second context")


def cut_at_stop(text: str, stops: tuple[str, ...]) -> tuple[str, str | None]:
    """``text`` up to the earliest stop string in it, and that stop string (None when none occurs)."""
    found = [(text.find(s), s) for s in stops if s in text]
    if not found:
        return text, None
    at, stop = min(found)
    return text[:at], stop
