"""llama.cpp backend (llama-cpp-python): GGUF models on the CPU; the embedded default.

One ``Llama`` object owns the model and its KV cache; calls are serialised by a lock because
llama.cpp contexts are not thread-safe. Samples of one prompt reuse the evaluated prompt: llama-cpp-
python keeps the longest common token prefix of consecutive calls, so n samples cost one prefill.

    >>> from reasonlab.engines import load_engine                    # doctest: +SKIP
    >>> eng = load_engine("smollm2-135m")                             # doctest: +SKIP
    >>> eng.generate(["2 + 2 ="], SamplingParams(max_tokens=4))[0].text  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from reasonlab.engines.base import (CancelFn, Engine, Generation, Message, Prompt, PruneFn, SamplingParams,
                                   pair_tokens, refuse_positions)
from reasonlab.engines.llamacpp_common import llama_text, llama_tokens
from reasonlab.errors import ConfigError, EngineError, ModelError

GGUF_MAGIC = b"GGUF"


def check_gguf(path: Path) -> None:
    """Fail early, naming the file, when ``path`` is missing or not a GGUF file at all."""
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    with path.open("rb") as fh:
        if fh.read(4) != GGUF_MAGIC:
            raise ModelError(f"not a GGUF model file (bad magic bytes): {path}")


def chat_formatter(llm: Any, template: str | None) -> tuple[Any, str]:
    """(llama-cpp-python's Jinja formatter for ``template``, or None; the BOS text llama.cpp adds itself)."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    if not template:
        return None, ""
    model = llm._model
    eos, bos = llm.token_eos(), llm.token_bos()
    formatter = Jinja2ChatFormatter(
        template=template,
        eos_token=model.token_get_text(eos) if eos != -1 else "",
        bos_token=model.token_get_text(bos) if bos != -1 else "",
        add_generation_prompt=True,
    )
    return formatter, model.token_get_text(bos) if bos != -1 and model.add_bos_token() else ""


def render_with(formatter: Any, bos_text: str, messages: list[Message]) -> str:
    text = formatter(messages=messages).prompt
    # llama.cpp adds BOS itself when the vocab asks for it; a template that writes it too would double it
    if bos_text and text.startswith(bos_text):
        text = text[len(bos_text):]
    return text


class GGUFTokenizer:
    """A GGUF file's vocabulary and chat template without its weights (llama.cpp's ``vocab_only``: a
    fraction of a second and a few MB), to render prompts for a server that serves that model.

        >>> tok = GGUFTokenizer("model.gguf")                                    # doctest: +SKIP
        >>> tok.render_chat([{"role": "user", "content": "1+1?"}])[:30]         # doctest: +SKIP
    """

    def __init__(self, path: str | Path) -> None:
        path = Path(path).expanduser()
        check_gguf(path)
        from llama_cpp import Llama

        try:
            self.llm = Llama(model_path=str(path), vocab_only=True, verbose=False)
        except (ValueError, RuntimeError) as err:
            raise ModelError(f"llama.cpp could not read the vocabulary of {path}: {err}") from err
        self.path = path
        self._formatter, self._bos_text = chat_formatter(self.llm, self.llm.metadata.get("tokenizer.chat_template"))

    def render_chat(self, messages: list[Message]) -> str:
        if self._formatter is None:
            raise EngineError(f"{self.path.name} has no chat template: use --prompt completion")
        return render_with(self._formatter, self._bos_text, messages)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

    def tokenize(self, text: str, prompt: bool = False) -> list[int]:
        return llama_tokens(self.llm, text, prompt)

    def detokenize(self, ids: list[int], special: bool = False) -> str:
        return llama_text(self.llm, ids, special)


class LlamaCppEngine(Engine):
    """A GGUF model loaded in-process.

    Args:
        model_path: the .gguf file.
        n_ctx: context window in tokens (prompt + generation).
        n_threads: CPU threads; default: every core this process may use.
        n_batch: prompt tokens evaluated per step.
        chat_template: a Jinja chat template overriding the one stored in the GGUF.
        seed: seeds the per-engine generator used when ``SamplingParams.seed`` is None.
        n_parallel: sequences decoded together in one llama.cpp batch (see ``llamacpp_batch``);
            1 decodes one sample at a time, the reproducible mode.
        n_ctx_batch: KV cells shared by the parallel sequences (default: room for n_parallel
            sequences of n_ctx tokens, at most 32768).
        flash_attn: flash attention (both contexts alike, so a batch of one reproduces the sequential
            path); measured by ``reasonlab bench``.
        prefix_cache: batched path: finished sequences leave their KV cells behind (bounded, LRU) and a
            job sharing a prefix with one prefills only the rest (``prefix_cache``). The sequential path
            keeps llama-cpp-python's own reuse of the previous prompt's prefix.
        kv_shift: batched path with the prefix cache: a prompt that is a cached sequence with one span cut out
            (the hcot policy's prune) takes that sequence's cells and moves the ones after the cut down (llama.cpp
            seq_rm + seq_add) instead of prefilling them — in place, as opposed to re-reading the kept tail.
        lora: a LoRA adapter applied at run time on the quantized base, in every context this engine makes
            (a .gguf adapter, or a peft adapter / training run directory, converted once: ``engines.lora``).
            One adapter per engine, so cached KV is always the adapter's own.
        lora_scale: the adapter's weight (1.0: as trained).
    """

    backend = "llamacpp"

    def __init__(
        self,
        model_path: str | Path,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_batch: int = 512,
        chat_template: str | None = None,
        seed: int = 0,
        name: str | None = None,
        n_parallel: int = 1,
        n_ctx_batch: int | None = None,
        flash_attn: bool = True,
        prefix_cache: bool = True,
        lora: str | Path | None = None,
        lora_scale: float = 1.0,
        kv_shift: bool = False,
    ) -> None:
        path = Path(model_path).expanduser()
        super().__init__(name or path.name)
        check_gguf(path)
        try:
            from llama_cpp import Llama
        except ImportError as err:
            raise EngineError("the llamacpp engine needs llama-cpp-python: pip install 'reasonlab[llamacpp]'") from err
        self.path = path
        self.n_threads = n_threads or len(os.sched_getaffinity(0))
        self.lora: Path | None = None
        if lora is not None:
            from reasonlab.engines.lora import gguf_adapter

            self.lora = gguf_adapter(lora, path)
        self.lora_scale = lora_scale
        self._lora_sha: str | None = None
        try:
            self.llm = Llama(
                lora_path=str(self.lora) if self.lora else None,
                lora_scale=lora_scale,
                model_path=str(path),
                n_ctx=n_ctx,
                n_threads=self.n_threads,
                n_threads_batch=self.n_threads,
                n_batch=n_batch,
                seed=seed,
                flash_attn=flash_attn,
                verbose=False,
            )
        except (ValueError, RuntimeError) as err:
            what = f" with the LoRA {self.lora}" if self.lora else ""
            raise ModelError(f"llama.cpp could not load {path}{what}: {err} (corrupt or unsupported GGUF, or an "
                             f"adapter made for another model?)") from err
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        # token prefixes (a chat template's system prompt and user header) that _prime always evaluates
        # as their own batch, so their KV cache can be reused across prompts without changing any output
        self._anchors: list[list[int]] = []
        self._anchors_lock = threading.Lock()  # its own lock: _anchor is read while self._lock is held
        self._sha256: str | None = None
        self._scorer: Any = None  # the loglikelihood context (llamacpp_score.Scorer), made on first use
        template = chat_template or self.llm.metadata.get("tokenizer.chat_template")
        self._template_sha = hashlib.sha256(template.encode()).hexdigest()[:16] if chat_template else None
        self._formatter, self._bos_text = chat_formatter(self.llm, template)
        self.n_parallel = n_parallel
        self.max_concurrency = n_parallel  # the runner keeps this many problems in flight to fill the batch
        self._decoder = None
        self._calls = 0
        self._eog_bias: dict[int, float] | None = None
        # every llama.cpp compute call of this engine runs on one thread: the OpenMP team that llama.cpp's
        # CPU backend keeps per calling thread spins while idle, and two teams on 2 cores slow each other
        self._worker: ThreadPoolExecutor | None = None
        if n_parallel > 1:
            from reasonlab.engines.llamacpp_batch import BatchedDecoder

            slots = min(max(4, 4 * n_parallel), 256 - n_parallel) if prefix_cache else 0  # llama.cpp: <= 256 ids
            self._decoder = BatchedDecoder(self.llm, n_parallel, n_ctx_batch or min(n_ctx * n_parallel, 32768),
                                           self.n_threads, flash_attn=flash_attn, cache_slots=slots,
                                           kv_shift=kv_shift)
        else:
            from reasonlab.engines.llamacpp_seq import SequentialDecoder

            self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llamacpp")
            self._seq = SequentialDecoder(self.llm, self.n_ctx, self._anchor, self._no_eog, self.detokenize)

    @property
    def n_ctx(self) -> int:
        return self.llm.n_ctx()

    def stats(self) -> dict[str, Any]:
        """Batched path: decode steps, mean sequences per step (how full the batch ran), seconds in decode
        steps, prompt prefill and idle waiting, prompt tokens prefilled, tokens the prefix cache holds."""
        if self._decoder is None:
            return {}
        s = dict(self._decoder.stats)
        s["mean_batch"] = round(s["slot_steps"] / s["steps"], 2) if s["steps"] else 0.0
        s["cached_tokens_held"] = self._decoder.cached_tokens()
        return {k: round(v, 2) if isinstance(v, float) else v for k, v in s.items()}

    def identity(self) -> dict[str, Any]:
        if self._sha256 is None:  # hashing 0.5 GB takes about a second: once per engine
            h = hashlib.sha256()
            with self.path.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 22), b""):
                    h.update(chunk)
            self._sha256 = h.hexdigest()
        ident = {"backend": self.backend, "file": self.path.name, "sha256": self._sha256,
                 "chat_template": self._template_sha}
        if self.lora is not None:  # a run with an adapter is another model: it never resumes one without
            if self._lora_sha is None:
                self._lora_sha = hashlib.sha256(self.lora.read_bytes()).hexdigest()
            ident["lora"] = {"file": self.lora.name, "sha256": self._lora_sha, "scale": self.lora_scale}
        return ident

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "model": self.model,
            "path": str(self.path),
            "n_ctx": self.n_ctx,
            "n_threads": self.n_threads,
            "chat_template": self._formatter is not None,
            "n_parallel": self.n_parallel,
            "prefix_cache": self._decoder is not None and self._decoder.cache is not None,
            "lora": str(self.lora) if self.lora else None,
        }

    def render_chat(self, messages: list[Message]) -> str:
        if self._formatter is None:
            raise EngineError(
                f"model {self.model} has no chat template (a base model?): use a completion-style prompt template"
            )
        text = self._render(messages)
        # the text before the last message's content is shared by every prompt with this system prompt
        sentinel = "\u2063reasonlab-anchor\u2063"
        probe = self._render(messages[:-1] + [{**messages[-1], "content": sentinel}]) if messages else ""
        cut = probe.find(sentinel)
        if cut > 0 and text.startswith(probe[:cut]):
            self._add_anchor(self._tokens(probe[:cut]))
        return text

    def _render(self, messages: list[Message]) -> str:
        assert self._formatter is not None
        return render_with(self._formatter, self._bos_text, messages)

    def _add_anchor(self, tokens: list[int]) -> None:
        with self._anchors_lock:
            if tokens in self._anchors:
                self._anchors.remove(tokens)
            self._anchors.insert(0, tokens)
            del self._anchors[8:]  # a few system prompts at a time is plenty

    def count_tokens(self, text: str) -> int:
        return len(self._plain_tokens(text))

    def tokenize(self, text: str, prompt: bool = False) -> list[int]:
        return llama_tokens(self.llm, text, prompt)

    def detokenize(self, ids: list[int], special: bool = False) -> str:
        return llama_text(self.llm, ids, special)

    def _prompt_ids(self, prompt: Prompt) -> list[int]:
        """Text is tokenised as a prompt; ids are taken as given, after a range check (llama.cpp aborts the
        process on an id outside the vocabulary). Either must leave room in the context to generate."""
        if isinstance(prompt, str):
            ids = self._tokens(prompt)
        else:
            ids = [int(t) for t in prompt]
            n_vocab = self.llm.n_vocab()
            bad = next((t for t in ids if not 0 <= t < n_vocab), None)
            if not ids:
                raise EngineError("a token-id prompt is empty", retryable=False)
            if bad is not None:
                raise EngineError(f"token-id prompt holds {bad}, outside the vocabulary of {n_vocab}",
                                  retryable=False)
        if len(ids) >= self.n_ctx:
            raise EngineError(f"prompt of {len(ids)} tokens exceeds the context window of {self.n_ctx}",
                              retryable=False)
        return ids

    def _tokens(self, prompt: str) -> list[int]:
        return llama_tokens(self.llm, prompt, prompt=True)

    def _anchor(self, head: list[int]) -> list[int]:
        with self._anchors_lock:  # written by render_chat on other threads
            return next((a for a in self._anchors if len(a) < len(head) and head[: len(a)] == a), [])

    def _no_eog(self) -> dict[int, float]:
        """A logit bias that forbids every end-of-generation token (for ignore_eos and min_tokens)."""
        if self._eog_bias is None:
            import llama_cpp

            vocab = llama_cpp.llama_model_get_vocab(self.llm._model.model)
            self._eog_bias = {t: float("-inf") for t in range(self.llm.n_vocab())
                              if llama_cpp.llama_vocab_is_eog(vocab, t)}
        return self._eog_bias

    def _seeds(self, params: SamplingParams) -> int:
        return params.seed if params.seed is not None else self._rng.randrange(2**31)

    # -- scoring (lm-eval's loglikelihood) ---------------------------------------------------------------
    def loglikelihood(self, requests: list[tuple[str, str]]) -> list[tuple[float, bool]]:
        """Summed log-prob of each continuation given its context, and whether it is the greedy one.

        Runs in a scoring context of its own (one sequence, the engine's context size) on the engine's
        compute thread. Consecutive requests that share a context (HellaSwag's four endings) reuse its KV
        cells: only the last context token and the continuation are decoded again.

            >>> eng.loglikelihood([("The capital of France is", " Paris")])    # doctest: +SKIP
            [(-1.23, True)]
        """
        return self.run(self._loglikelihood, list(requests))

    def _plain_tokens(self, text: str) -> list[int]:
        return llama_tokens(self.llm, text)

    def _loglikelihood(self, requests: list[tuple[str, str]]) -> list[tuple[float, bool]]:
        if self._scorer is None:  # made on first use, on the compute thread
            from reasonlab.engines.llamacpp_score import Scorer

            self._scorer = Scorer(self.llm)
        pairs = [pair_tokens(self._tokens, self._plain_tokens, c, x) for c, x in requests]
        return self._scorer.score(pairs, self.n_ctx)

    def run(self, fn: Any, *args: Any) -> Any:
        """Call ``fn(*args)`` on the engine's compute thread (the decoder's, when batched)."""
        if self._decoder is not None:
            return self._decoder.call(lambda: fn(*args))
        assert self._worker is not None
        return self._worker.submit(fn, *args).result()

    def generate(self, prompts: list[Prompt], params: SamplingParams, cancel: CancelFn | None = None) -> list[Generation]:
        refuse_positions(prompts, self.backend)
        if self._decoder is not None:
            return self._generate_batched(prompts, params, cancel)
        return self.run(self._generate_sequential, prompts, params, cancel)

    def _generate_sequential(self, prompts: list[Prompt], params: SamplingParams,
                             cancel: CancelFn | None) -> list[Generation]:
        if params.logprobs is not None:
            raise ConfigError("log-probs need the batched path: load the llamacpp engine with n_parallel >= 2 "
                              "(--parallel 2)")
        out: list[Generation] = []
        with self._lock:
            for i, prompt in enumerate(prompts):
                base = self._seeds(params)
                for s in range(params.n):
                    try:
                        tokens = self._prompt_ids(prompt)
                    except EngineError as err:
                        out.append(Generation(text="", index=i, sample=s, finish_reason="error", error=str(err),
                                              retryable=err.retryable))
                        continue
                    reused = self._seq.prime(tokens)
                    gen = self._seq.sample(tokens, params, base + s, i, s, cancel)
                    out.append(gen.model_copy(update={"cached_tokens": reused}))
        return out

    @property
    def prunes_in_place(self) -> bool:  # type: ignore[override]
        return self._decoder is not None

    def generate_pruning(self, prompts: list[Prompt], params: SamplingParams, prune: PruneFn,
                         cancel: CancelFn | None = None) -> list[Generation]:
        refuse_positions(prompts, self.backend)
        if self._decoder is None:
            raise ConfigError("cutting spans out of a live sequence needs the batched path: load the llamacpp "
                              "engine with n_parallel >= 2 (--parallel 2)")
        return self._generate_batched(prompts, params, cancel, prune)

    def _generate_batched(self, prompts: list[Prompt], params: SamplingParams, cancel: CancelFn | None,
                          prune: PruneFn | None = None) -> list[Generation]:
        from reasonlab.engines.llamacpp_batch import Job

        with self._lock:  # call ids and the engine's seed generator are shared state
            self._calls += 1
            call = self._calls
            bases = [self._seeds(params) for _ in prompts]
        results: list[Generation | Job] = []
        jobs = []
        for i, prompt in enumerate(prompts):
            failed: EngineError | None = None
            try:
                tokens = self._prompt_ids(prompt)
            except EngineError as err:
                failed = err
            for s in range(params.n):
                if failed is not None:
                    results.append(Generation(text="", index=i, sample=s, finish_reason="error", error=str(failed),
                                              retryable=failed.retryable))
                    continue
                job = Job(key=(call, i), index=i, sample=s, tokens=tokens, anchor=len(self._anchor(tokens[:-1])),
                          params=params, seed=bases[i] + s, cancel=cancel, prune=prune)
                jobs.append(job)
                results.append(job)
        self._decoder.submit(jobs)
        return [r.future.result() if isinstance(r, Job) else r for r in results]

    def close(self) -> None:
        if getattr(self, "_scorer", None) is not None:
            self.run(self._scorer.close)
            self._scorer = None
        if getattr(self, "_decoder", None) is not None:
            self._decoder.close()
            self._decoder = None
        if getattr(self, "_worker", None) is not None:
            self._worker.shutdown()
            self._worker = None
        llm = getattr(self, "llm", None)
        if llm is not None:
            llm.close()
            self.llm = None
