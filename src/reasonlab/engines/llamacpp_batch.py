"""Batched multi-sequence decoding for the llamacpp engine: many samples, one llama.cpp batch per step.

A small continuous-batching scheduler. Callers submit jobs (a tokenised prompt, one sample's seed);
one decode thread keeps up to ``n_parallel`` sequences in a second llama.cpp context that shares the
model's weights. Each step feeds every live sequence's next token in one ``llama_decode`` call, then
samples each sequence with its own sampler chain, so each stops on its own (EOG, stop string, max
tokens, or cancellation) and frees its KV cells at once; a free slot takes the next job.

A prompt is evaluated once: its first sample prefills the prompt (minus its last token) into one
sequence, later samples of the same prompt copy those KV cells (``llama_memory_seq_cp``), and every
sample then decodes the last prompt token itself — exactly the split the one-at-a-time path uses, so
a batch of one reproduces it token for token.

Threads: llama.cpp's CPU backend runs each graph on an OpenMP team that belongs to the OS thread
that called it, and idle teams spin. Two threads computing in one process (a context on the main
thread, another here) cost the decoder 10-35 % of its speed, so every llama.cpp call an engine makes
runs on this one thread (see ``call``).

Determinism: batched kernels sum in another order than one-row kernels, so batched greedy output
drifts from the sequential one after some tokens (the same drift vLLM users see). The same batch
composition and seeds give the same outputs: one ``generate`` call enqueues all its jobs at once, so a
single caller is reproducible. Concurrent callers batch together in arrival order, which is not.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from reasonlab.engines.base import CancelFn, Generation, PruneFn, SamplingParams, spelled_ids
from reasonlab.engines.llamacpp_common import apply_lora, cut_at_stop, llama_text
from reasonlab.engines.llamacpp_surgery import KVSurgery
from reasonlab.engines.prefix_cache import RadixCache, common_prefix


class _Aborted(Exception):
    """A prompt prefill stopped by llama.cpp's abort callback because its job was cancelled."""


@dataclass
class Job:
    """One sample of one prompt."""

    key: tuple[int, int]  # (call id, prompt index): samples of one prompt share its KV prefix
    index: int
    sample: int
    tokens: list[int]  # the whole prompt, tokenised
    anchor: int  # prompt tokens [0, anchor) are evaluated as their own batch (see LlamaCppEngine._prime)
    params: SamplingParams
    seed: int
    cancel: CancelFn | None
    future: Future[Generation] = field(default_factory=Future)
    pinned: int | None = None  # the prefix-cache slot this waiting job will continue (kept until admitted)
    prune: PruneFn | None = None  # spans of the generation to forget in place (see _cut_in_place)


@dataclass
class _Seq:
    job: Job
    sid: int
    sampler: Any
    pos: int  # position of the token fed next
    feed: int  # the token fed next
    early: Any = None  # min_tokens: the same chain with end-of-generation tokens forbidden, until min_tokens
    out: list[int] = field(default_factory=list)
    text: bytearray = field(default_factory=bytearray)
    logprobs: list[float] | None = None
    top: list[list[tuple[int, str, float]]] | None = None  # top-k alternatives per generated token
    start: float = field(default_factory=time.perf_counter)
    cached: int = 0  # prompt tokens not prefilled: copied from the prefix cache or a sibling sample
    intact: int = 1 << 62  # cells [0, intact) hold job.tokens + out at their indices (a cut in place ends that)


class BatchedDecoder(KVSurgery):
    """Owns a multi-sequence llama.cpp context and the thread that decodes in it.

    Args:
        llm: the engine's ``llama_cpp.Llama`` (its weights are shared, not copied).
        n_parallel: sequences decoded together (llama.cpp's ``--parallel``).
        n_ctx: KV cells shared by all sequences: room for the prompts plus every live sample.
    """

    def __init__(self, llm: Any, n_parallel: int, n_ctx: int, n_threads: int, flash_attn: bool = False,
                 cache_slots: int = 0, cache_tokens: int | None = None, kv_shift: bool = False) -> None:
        import llama_cpp
        from llama_cpp._internals import LlamaBatch, LlamaContext

        self._llama_cpp = llama_cpp
        self.llm = llm
        self.model = llm._model
        self.n_parallel = n_parallel
        params = llama_cpp.llama_context_params.from_buffer_copy(llm.context_params)
        params.n_ctx = n_ctx
        params.n_seq_max = n_parallel + cache_slots  # sequence ids n_parallel.. hold cached prefixes
        # one KV buffer: copied prompt cells are shared, not duplicated. The price: each token attends
        # over every sequence's cells (masked), so speed-ups shrink on long traces. Per-sequence streams
        # would avoid that, but llama.cpp aborts on a partial seq_cp between streams.
        params.kv_unified = True
        params.flash_attn_type = (llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn
                                  else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        params.n_threads = params.n_threads_batch = n_threads
        self.ctx = LlamaContext(model=self.model, params=params, verbose=False)
        apply_lora(llm, self.ctx)  # the engine's adapter, in this context too (adapters are per context)
        self.n_ctx = self.ctx.n_ctx()
        # finished sequences leave their cells behind for later jobs that share a prefix (see prefix_cache);
        # bounded: every decode step attends over cached cells too (masked), so they are not free
        self.cache = (RadixCache(range(n_parallel, n_parallel + cache_slots), cache_tokens or self.n_ctx // 2)
                      if cache_slots else None)
        self.n_batch = params.n_batch
        self.batch = LlamaBatch(n_tokens=max(self.n_batch, n_parallel), embd=0, n_seq_max=n_parallel, verbose=False)
        self.n_vocab = llm.n_vocab()
        self.vocab = llama_cpp.llama_model_get_vocab(self.model.model)
        self._eog: dict[int, float] | None = None
        self._jobs: deque[Job] = deque()  # submitted, not yet sorted into the two queues below
        self._fresh: deque[Job] = deque()  # waiting jobs, in arrival order
        # waiting jobs that continue a cached sequence (a trace after a tool call, a forced "Wait", a branch
        # child): admitted before fresh ones, their cache entry pinned, so the cells they need are not evicted
        # while they queue behind fresh samples and nothing they already read is read again
        self._continuations: deque[Job] = deque()
        self._calls: deque[tuple[Callable[[], Any], Future[Any]]] = deque()
        self._cv = threading.Condition()
        self._closed = False
        # a long prompt prefill is one llama_decode call that a cancel hook cannot reach between tokens:
        # llama.cpp's abort callback asks the job's hook (at most every 50 ms) while a prefill runs
        self._prefilling: Job | None = None
        # where the decode thread's time goes: decode steps (and how full they are), prompt prefill, idle
        self.stats: dict[str, float] = {"steps": 0, "slot_steps": 0, "decode_s": 0.0, "prefill_tokens": 0,
                                        "prefill_s": 0.0, "idle_s": 0.0, "shifted_cuts": 0, "shifted_tokens": 0, "cut_cells": 0}
        # a prompt that is a cached sequence with one span cut out (hcot's prune) reuses the cells after the cut,
        # moved down by a position shift (llama.cpp seq_rm + seq_add), instead of prefilling them again
        self.kv_shift = kv_shift
        self._abort_seen = 0.0
        self._abort_cb = llama_cpp.ggml_abort_callback(self._should_abort)
        self._thread = threading.Thread(target=self._loop, name="llamacpp-batch", daemon=True)
        self._thread.start()

    # -- public ------------------------------------------------------------------------------
    def submit(self, jobs: list[Job]) -> None:
        """Enqueue jobs atomically: a call's jobs are admitted in order, never interleaved with another's."""
        with self._cv:
            if self._closed:
                raise RuntimeError("decoder is closed")
            self._jobs.extend(jobs)
            self._cv.notify()

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the decode thread between steps (all llama.cpp compute stays on one thread)."""
        fut: Future[Any] = Future()
        with self._cv:
            self._calls.append((fn, fut))
            self._cv.notify()
        return fut.result()

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join()
        self.batch.close()
        self.ctx.close()

    def cached_tokens(self) -> int:
        """Tokens the prefix cache keeps cells for (an entry's shared prefix counted once per entry)."""
        return self.cache.tokens_held if self.cache is not None else 0

    def clear_cache(self) -> None:
        """Drop every cached prefix (runs on the decode thread)."""
        if self.cache is not None:
            self.call(lambda: [self.ctx.kv_cache_seq_rm(s, -1, -1) for s in self.cache.clear()])

    def cells_in_use(self) -> int:
        """KV cells held by any live sequence (0 once every sequence has ended; cached prefixes aside)."""
        mem = self.ctx.memory
        used = 0
        for sid in range(self.n_parallel):
            hi = self._llama_cpp.llama_memory_seq_pos_max(mem, sid)
            if hi >= 0:
                used += hi - self._llama_cpp.llama_memory_seq_pos_min(mem, sid) + 1
        return used

    # -- the decode thread -------------------------------------------------------------------
    def _loop(self) -> None:
        active: dict[int, _Seq] = {}
        free = list(range(self.n_parallel))
        holders: dict[tuple[int, int], int] = {}  # prompt key -> a live sid whose cells hold that prompt's head
        while True:
            with self._cv:
                while not self._jobs and not self._waiting() and not active and not self._calls and not self._closed:
                    idle = time.perf_counter()
                    self._cv.wait()
                    self.stats["idle_s"] += time.perf_counter() - idle
                if self._closed and not self._jobs and not self._waiting() and not active and not self._calls:
                    return
                while self._jobs:
                    self._queue(self._jobs.popleft())
                calls = list(self._calls)
                self._calls.clear()
                admit = []
                evict: list[int] = []
                # KV cells promised to live sequences: prompt + max_tokens each, prompt sharing ignored
                reserved = sum(_reserve(q.job) for q in active.values())
                # admit while the worst case fits in the KV cache beside what the prefix cache keeps (evicted,
                # least recently used first, when a job needs the room); one sequence is always admitted
                while self._waiting() and free:
                    queue = self._continuations or self._fresh
                    need = reserved + _reserve(queue[0])
                    if self.cache is not None and need + self.cache.tokens_held > self.n_ctx:
                        evict += self.cache.evict_until(max(0, self.n_ctx - need))
                    if active or admit:
                        held = self.cache.tokens_held if self.cache is not None else 0
                        if need + held > self.n_ctx:
                            break
                    job = queue.popleft()
                    reserved += _reserve(job)
                    admit.append((job, free.pop(0)))
            for slot in evict:
                self.ctx.kv_cache_seq_rm(slot, -1, -1)
            for fn, fut in calls:
                try:
                    fut.set_result(fn())
                except Exception as err:
                    fut.set_exception(err)
            for job, sid in admit:
                if job.cancel is not None and job.cancel(job.index, job.sample, 0, None):
                    if job.pinned is not None and self.cache is not None:
                        self.cache.unpin(job.pinned)
                    free.append(sid)  # cancelled while it waited for a slot: no prefill, no tokens
                    free.sort()
                    job.future.set_result(Generation(text="", index=job.index, sample=job.sample,
                                                     prompt_tokens=len(job.tokens), finish_reason="cancelled",
                                                     prompt_token_ids=job.tokens, token_ids=[]))
                    continue
                try:
                    active[sid] = self._start(job, sid, holders, active)
                except Exception as err:  # this job fails alone; its caller must not wait forever
                    self.ctx.kv_cache_seq_rm(sid, -1, -1)
                    if holders.get(job.key) == sid:
                        del holders[job.key]
                    free.append(sid)
                    free.sort()
                    aborted = isinstance(err, _Aborted)
                    job.future.set_result(Generation(
                        text="", index=job.index, sample=job.sample, prompt_tokens=len(job.tokens),
                        finish_reason="cancelled" if aborted else "error",
                        error=None if aborted else f"{type(err).__name__}: {err}"))
            try:
                if active:
                    t0 = time.perf_counter()
                    self.stats["steps"] += 1
                    self.stats["slot_steps"] += len(active)  # / steps = mean sequences per decode step
                    self._step(active, free, holders)
                    self.stats["decode_s"] += time.perf_counter() - t0
            except Exception as err:  # a failed decode fails the live jobs, not the thread
                for sid, seq in list(active.items()):
                    self._end(seq, "error", active, free, holders, error=f"{type(err).__name__}: {err}")

    def _waiting(self) -> bool:
        return bool(self._fresh or self._continuations)

    def _queue(self, job: Job) -> None:
        """Sort a submitted job (on the decode thread, under the lock): a job whose cached prefix reaches past
        its template head and covers half its prompt continues something: it goes first and pins that entry."""
        if self.cache is not None:
            head = job.tokens[:-1]
            hit, slot = self.cache.match(head)
            if slot is not None and hit > job.anchor and 2 * hit >= len(head):
                self.cache.pin(slot)
                job.pinned = slot
                self._continuations.append(job)
                return
        self._fresh.append(job)

    def _start(self, job: Job, sid: int, holders: dict[tuple[int, int], int], active: dict[int, _Seq]) -> _Seq:
        try:
            return self._start_pinned(job, sid, holders, active)
        finally:
            if job.pinned is not None and self.cache is not None:
                self.cache.unpin(job.pinned)  # its cells are copied (or no longer needed)
                job.pinned = None

    def _start_pinned(self, job: Job, sid: int, holders: dict[tuple[int, int], int],
                      active: dict[int, _Seq]) -> _Seq:
        head = job.tokens[:-1]
        holder = holders.get(job.key)
        if holder is not None:  # a sibling sample of the same prompt holds its head
            self.ctx.kv_cache_seq_cp(holder, sid, 0, len(head))
            cached = len(head)
        else:
            # the longest prefix whose cells exist: in the prefix cache, or in a live sequence (samples of one
            # prompt sent by separate calls, as a trace policy's threads do, share its prefill this way)
            cached, source = self.cache.match(head) if self.cache is not None else (0, None)
            from_cache = source is not None
            if self.cache is not None:
                live, live_sid = _longest_live(head, active)
                if live > cached:
                    cached, source, from_cache = live, live_sid, False
            if from_cache and self.kv_shift and cached < len(head):
                cached = self._shift_cut(job, sid, head, cached, source, active)  # type: ignore[arg-type]
            elif source is not None:  # take those cells, prefill the rest
                self.ctx.kv_cache_seq_cp(source, sid, 0, cached)
            self._prefilling = job if job.cancel is not None else None
            try:  # split at the anchor as the sequential path does, so both compute the same values
                if cached < job.anchor:
                    self._prefill(sid, head[cached: job.anchor], cached)
                self._prefill(sid, head[max(cached, job.anchor):], max(cached, job.anchor))
            finally:
                self._prefilling = None
            holders[job.key] = sid
        early = self._sampler(job.params, job.seed, no_eog=True) if job.params.min_tokens else None
        return _Seq(job=job, sid=sid, sampler=self._sampler(job.params, job.seed), early=early, pos=len(head),
                    feed=job.tokens[-1], logprobs=[] if job.params.logprobs is not None else None,
                    top=[] if job.params.logprobs else None, cached=cached)

    def _should_abort(self, _data: Any) -> bool:
        """llama.cpp's abort callback, called between graph nodes while a prefill runs."""
        job = self._prefilling
        if job is None or job.cancel is None:
            return False
        now = time.monotonic()
        if now - self._abort_seen < 0.05:
            return False
        self._abort_seen = now
        return bool(job.cancel(job.index, job.sample, 0, None))

    def _prefill(self, sid: int, tokens: list[int], pos0: int) -> None:
        """Evaluate prompt tokens for one sequence, in n_batch chunks (as llama-cpp-python's eval does).
        Chunks of a cancellable job run with the abort callback set (only then: it costs a Python call
        per graph node)."""
        b = self.batch.batch
        for lo in range(0, len(tokens), self.n_batch):
            chunk = tokens[lo : lo + self.n_batch]
            b.n_tokens = len(chunk)
            for i, tok in enumerate(chunk):
                b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = tok, pos0 + lo + i, 1, False
                b.seq_id[i][0] = sid
            b.logits[len(chunk) - 1] = True  # llama.cpp wants at least one output per batch
            watch = self._prefilling is not None and len(chunk) >= 32
            if watch:
                self._abort_seen = time.monotonic()
                self._llama_cpp.llama_set_abort_callback(self.ctx.ctx, self._abort_cb, None)
            t0 = time.perf_counter()
            try:
                rc = self._llama_cpp.llama_decode(self.ctx.ctx, self.batch.batch)
                self.stats["prefill_tokens"] += len(chunk)
                self.stats["prefill_s"] += time.perf_counter() - t0
            finally:
                if watch:
                    self._llama_cpp.llama_set_abort_callback(self.ctx.ctx, self._llama_cpp.ggml_abort_callback(), None)
            if rc == 2:
                raise _Aborted("prefill cancelled")
            if rc != 0:
                raise RuntimeError(f"llama_decode returned {rc}")

    def _sampler(self, params: SamplingParams, seed: int, no_eog: bool = False) -> Any:
        """The same chain llama-cpp-python builds for create_completion (its no-op penalties aside); ``no_eog``
        puts a bias forbidding every end-of-generation token first (min_tokens)."""
        from llama_cpp._internals import LlamaSampler

        s = LlamaSampler()
        if no_eog:
            if self._eog is None:  # once per decoder: the vocabulary's end-of-generation tokens
                self._eog = {t: float("-inf") for t in range(self.n_vocab)
                             if self._llama_cpp.llama_vocab_is_eog(self.vocab, t)}
            s.add_logit_bias(self.n_vocab, self._eog)
        if params.greedy:
            s.add_greedy()
        else:
            s.add_top_k(max(params.top_k, 0))
            s.add_typical(1.0, 1)
            s.add_top_p(params.top_p, 1)
            s.add_min_p(params.min_p, 1)
            s.add_temp(params.temperature)
            s.add_dist(seed)
        return s

    def _step(self, active: dict[int, _Seq], free: list[int], holders: dict[tuple[int, int], int]) -> None:
        seqs = list(active.values())
        b = self.batch.batch
        b.n_tokens = len(seqs)
        for i, seq in enumerate(seqs):
            b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = seq.feed, seq.pos, 1, True
            b.seq_id[i][0] = seq.sid
        self.ctx.decode(self.batch)
        for i, seq in enumerate(seqs):
            early = seq.early is not None and len(seq.out) < seq.job.params.min_tokens
            tok = (seq.early if early else seq.sampler).sample(self.ctx, i)
            seq.pos += 1
            params = seq.job.params
            if seq.logprobs is not None:
                logits = np.ctypeslib.as_array(self.ctx.get_logits_ith(i), shape=(self.n_vocab,))
                top = float(logits.max())
                norm = top + math.log(float(np.exp(logits - top).sum()))  # log-sum-exp: log p = logit - norm
                seq.logprobs.append(float(logits[tok]) - norm)
                if seq.top is not None:
                    k = min(params.logprobs or 0, self.n_vocab)
                    best = np.argpartition(logits, -k)[-k:]
                    best = best[np.argsort(-logits[best])]
                    seq.top.append([(int(t), self._piece(int(t)), float(logits[t]) - norm) for t in best])
            if not params.ignore_eos and self._llama_cpp.llama_vocab_is_eog(self.vocab, tok):
                self._end(seq, "stop", active, free, holders)
                continue
            seq.out.append(tok)
            if seq.job.prune is not None:
                failed = self._cut_in_place(seq)
                if failed:  # the caller's hook failed: this sequence ends, the others decode on
                    self._end(seq, "error", active, free, holders, error=failed)
                    continue
            seq.text += self.model.detokenize([tok], special=False)  # token_to_piece pads to 32 bytes
            if params.stop and self._hit_stop(seq):
                self._end(seq, "stop", active, free, holders)
            elif len(seq.out) >= params.max_tokens or seq.pos >= self.n_ctx:
                self._end(seq, "length", active, free, holders)
            elif seq.job.cancel is not None and seq.job.cancel(
                    seq.job.index, seq.job.sample, len(seq.out), seq.logprobs[-1] if seq.logprobs else None):
                self._end(seq, "cancelled", active, free, holders)
            else:
                seq.feed = tok

    def _piece(self, token: int) -> str:
        return self.model.detokenize([token], special=True).decode("utf-8", errors="replace")

    @staticmethod
    def _hit_stop(seq: _Seq) -> bool:  # checks only the tail; the final text is cut exactly in _end
        longest = max(len(s) for s in seq.job.params.stop)
        tail = bytes(seq.text[-(4 * longest + 16):]).decode("utf-8", errors="ignore")
        return any(s in tail for s in seq.job.params.stop)

    def _end(self, seq: _Seq, reason: str, active: dict[int, _Seq], free: list[int],
             holders: dict[tuple[int, int], int], error: str | None = None) -> None:
        job = seq.job
        del active[seq.sid]
        if holders.get(job.key) == seq.sid:
            # hand the prompt's head to a live sibling, or forget it: its cells go with this sequence
            sibling = next((s.sid for s in active.values() if s.job.key == job.key), None)
            if sibling is None:
                del holders[job.key]
            else:
                holders[job.key] = sibling
        if self.cache is not None and reason != "error":
            # keep its cells (prompt and generated tokens alike) under a cache slot for later continuations
            held = min(seq.pos, seq.intact)  # a sequence cut in place holds its ids only up to the first cut
            kept = self.cache.store((job.tokens + seq.out)[:held]) if held > 0 else None
            if kept is not None:
                slot, evicted = kept
                for old in [*evicted, slot]:
                    self.ctx.kv_cache_seq_rm(old, -1, -1)
                self.ctx.kv_cache_seq_cp(seq.sid, slot, 0, held)
        self.ctx.kv_cache_seq_rm(seq.sid, -1, -1)  # this sequence's hold on its cells ends now
        free.append(seq.sid)
        free.sort()
        # the exact text, as llama-cpp-python detokenizes it, cut at the first stop string
        text = self._detokenize(seq.out)
        text, stop = cut_at_stop(text, job.params.stop) if reason == "stop" else (text, None)
        job.future.set_result(Generation(
            text=text, index=job.index, sample=job.sample, prompt_tokens=len(job.tokens),
            completion_tokens=len(seq.out), finish_reason=reason,  # type: ignore[arg-type]
            seconds=time.perf_counter() - seq.start, token_logprobs=seq.logprobs, error=error, stop_reason=stop,
            cached_tokens=seq.cached, top_logprobs=seq.top[: len(seq.out)] if seq.top is not None else None,
            prompt_token_ids=job.tokens, token_ids=spelled_ids(self._detokenize, seq.out, text),
        ))

    def _detokenize(self, ids: list[int]) -> str:
        return llama_text(self.llm, ids)


def _longest_live(head: list[int], active: dict[int, _Seq]) -> tuple[int, int | None]:
    """The longest prefix of ``head`` that a live sequence's KV cells already hold: (length, its sid)."""
    best, best_sid = 0, None
    for seq in active.values():
        k = common_prefix((seq.job.tokens + seq.out)[: min(seq.pos, seq.intact)], head)  # cells hold these
        if k > best:
            best, best_sid = k, seq.sid
    return best, best_sid


def _reserve(job: Job) -> int:
    return len(job.tokens) + job.params.max_tokens
