"""The llama.cpp engine's sequential path (``n_parallel=1``, the reproducible mode): one sample at a time on the
engine's own ``Llama`` context, through llama-cpp-python's ``generate`` — its sampler chain and its reuse of the
previous call's token prefix, so n samples of one prompt cost one prefill. The batched path is ``llamacpp_batch``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from reasonlab.engines.base import CancelFn, Generation, SamplingParams, spelled_ids
from reasonlab.engines.llamacpp_common import cut_at_stop


class SequentialDecoder:
    """Samples on ``llm``'s context. ``anchor(head)`` is the registered prefix of ``head`` (or []), ``no_eog()`` the
    logit bias that forbids ending, ``detokenize(ids)`` the engine's. Callers serialise calls (the engine's lock)."""

    def __init__(self, llm: Any, n_ctx: int, anchor: Callable[[list[int]], list[int]],
                 no_eog: Callable[[], dict[int, float]], detokenize: Callable[[list[int]], str]) -> None:
        self.llm, self.n_ctx = llm, n_ctx
        self.anchor, self.no_eog, self.detokenize = anchor, no_eog, detokenize

    def cached(self, tokens: list[int]) -> bool:
        llm = self.llm
        return llm.n_tokens >= len(tokens) and llm._input_ids[: len(tokens)].tolist() == tokens

    def prime(self, tokens: list[int]) -> int:
        """Put ``tokens[:-1]`` in the KV cache, always split the same way: anchor | rest.

        llama-cpp-python then decodes the last prompt token alone before sampling, for the first
        sample as for every later one. Batched and one-token passes sum in another order, so without
        a fixed split the same seed gave a different first sample depending on what the cache held
        before. A registered anchor (the chat template's shared prefix) is evaluated as its own batch
        from position 0, so reusing its cached KV across problems is exact, not approximate.
        Returns how many prompt tokens were already in the KV cache (not evaluated again).
        """
        llm, head = self.llm, tokens[:-1]
        if self.cached(head):
            return len(head)  # the same prompt: generate() trims the cache to head and decodes the last token
        anchor = self.anchor(head)
        reused = 0
        if anchor and self.cached(anchor):
            llm.n_tokens = reused = len(anchor)  # eval() drops the cache past this point
        else:
            llm.reset()
            if anchor:
                llm.eval(anchor)
        llm.eval(head[len(anchor):])
        return reused

    def sample(self, tokens: list[int], params: SamplingParams, seed: int, index: int, sample: int,
               cancel: CancelFn | None) -> Generation:
        """One sample after ``prime(tokens)``: llama-cpp-python's ``generate`` (its sampler chain and prefix reuse,
        as ``create_completion`` drives it), with our own loop around it so the sampled ids are kept and stop
        strings, cancellation and the token limit are checked after every token."""
        import llama_cpp

        start = time.perf_counter()
        self.llm.set_seed(seed)
        limit = min(params.max_tokens, self.n_ctx - len(tokens))  # llama-cpp-python truncates the same way
        processor = None
        out: list[int] = []
        if params.ignore_eos or params.min_tokens:
            import numpy as np

            banned = np.fromiter(self.no_eog(), dtype=np.int64)

            def no_eog(_ids: Any, scores: Any) -> Any:
                if params.ignore_eos or len(out) < params.min_tokens:
                    scores[banned] = -np.inf
                return scores

            processor = llama_cpp.LogitsProcessorList([no_eog])
        vocab = self.llm._model.vocab
        window = 4 * max(map(len, params.stop), default=0) + 16  # bytes: the tail a new stop string can end in
        text = bytearray()
        reason = "length"
        for tok in self.llm.generate(tokens, top_k=max(params.top_k, 0), top_p=params.top_p, min_p=params.min_p,
                                     temp=params.temperature, repeat_penalty=1.0, logits_processor=processor):
            if not params.ignore_eos and llama_cpp.llama_vocab_is_eog(vocab, tok):
                reason = "stop"
                break
            out.append(tok)
            text += self.llm.detokenize([tok], special=False)
            tail = bytes(text[-window:]).decode("utf-8", errors="ignore")
            if params.stop and any(x in tail for x in params.stop):
                reason = "stop"
                break
            if len(out) >= limit:
                break
            if cancel is not None and cancel(index, sample, len(out), None):
                reason = "cancelled"
                break
        full = self.detokenize(out)
        cut, stop = cut_at_stop(full, params.stop) if reason == "stop" else (full, None)
        return Generation(text=cut, stop_reason=stop, index=index, sample=sample, prompt_tokens=len(tokens),
                          completion_tokens=len(out), finish_reason=reason,  # type: ignore[arg-type]
                          seconds=time.perf_counter() - start, prompt_token_ids=tokens,
                          token_ids=spelled_ids(self.detokenize, out, cut))
