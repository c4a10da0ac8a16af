"""Scoring fixed continuations on llama.cpp (lm-eval's ``loglikelihood``), in a context of its own.

One sequence in its own context over the engine's weights (and its LoRA), on the engine's compute thread.
Consecutive requests that share a context (HellaSwag's four endings) reuse its KV cells: only the last context
token and the continuation are decoded again.
"""

from __future__ import annotations

import math
from typing import Any

from reasonlab.engines.llamacpp_common import apply_lora
from reasonlab.errors import EngineError


class Scorer:
    def __init__(self, llm: Any) -> None:
        import llama_cpp
        from llama_cpp._internals import LlamaBatch, LlamaContext

        self.llm = llm
        params = llama_cpp.llama_context_params.from_buffer_copy(llm.context_params)
        params.n_seq_max = 1
        self.ctx = LlamaContext(model=llm._model, params=params, verbose=False)
        apply_lora(llm, self.ctx)
        self.batch = LlamaBatch(n_tokens=params.n_batch, embd=0, n_seq_max=1, verbose=False)
        self.n_batch = params.n_batch
        self.held: list[int] = []  # the token ids whose KV the context holds

    def score(self, pairs: list[tuple[list[int], int]], n_ctx: int) -> list[tuple[float, bool]]:
        """For each (ids of context + continuation, how many are context): the continuation's summed
        log-prob and whether greedy decoding would write it."""
        import numpy as np

        ctx, batch, held = self.ctx, self.batch, self.held
        n_vocab = self.llm.n_vocab()
        out: list[tuple[float, bool]] = []
        for ids, n_context in pairs:
            if n_context == 0:  # lm-eval: an empty context is the end-of-text token
                ids, n_context = [self.llm.token_eos(), *ids], 1
            if len(ids) > n_ctx:
                raise EngineError(f"context + continuation of {len(ids)} tokens exceed the context window of "
                                  f"{n_ctx}", retryable=False)
            keep = 0  # the KV of the longest shared prefix stays; the last context token is decoded again
            while keep < min(len(held), len(ids)) and held[keep] == ids[keep]:
                keep += 1
            keep = min(keep, n_context - 1)
            ctx.kv_cache_seq_rm(0, keep, -1)
            del held[:]
            total, greedy = 0.0, True
            for lo in range(keep, len(ids), self.n_batch):
                chunk = ids[lo: lo + self.n_batch]
                b = batch.batch
                b.n_tokens = len(chunk)
                want = []  # (batch row, the token it must predict): logits at p score token p + 1
                for i, tok in enumerate(chunk):
                    p = lo + i
                    need = n_context - 1 <= p < len(ids) - 1
                    b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = tok, p, 1, need
                    b.seq_id[i][0] = 0
                    if need:
                        want.append((i, ids[p + 1]))
                if not want:
                    b.logits[len(chunk) - 1] = True  # llama.cpp wants one output per batch
                ctx.decode(batch)
                for i, nxt in want:
                    row = np.ctypeslib.as_array(ctx.get_logits_ith(i), shape=(n_vocab,)).astype(np.float64)
                    top = row.max()
                    total += float(row[nxt] - top - math.log(float(np.exp(row - top).sum())))
                    greedy = greedy and int(row.argmax()) == nxt
            held.extend(ids)
            out.append((total, greedy))
        return out

    def close(self) -> None:
        self.batch.close()
        self.ctx.close()
