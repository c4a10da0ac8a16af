"""transformers backend: a local directory or a hub id (hub only where there is a network).

This is the backend with full control: per-token log-probs come from the scores of the chosen tokens,
and later work on the KV cache (pruning finished sub-thoughts) lives here. Prompts are batched with
left padding; stop strings end a sample and are cut from its text.

    >>> eng = HFEngine("path/to/tiny-model")                            # doctest: +SKIP
    >>> eng.generate(["1 + 1 ="], SamplingParams(max_tokens=3))[0].text  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from reasonlab.engines.base import (CancelFn, Engine, Generation, Message, PositionedIds, Prompt, SamplingParams,
                                   pair_tokens, spelled_ids)
from reasonlab.errors import EngineError, ModelError


class HFEngine(Engine):
    """A transformers causal LM on the CPU (or ``device``).

    Args:
        model: a local directory holding config.json and weights, or a hub id.
        batch_size: prompts decoded together.
        dtype: weights' dtype; float32 is the safe choice on CPU.
        device: torch device string.
    """

    backend = "hf"
    takes_positions = True  # PositionedIds: prune-agnostic decoding (a gapped prefill, then on from the last)

    def __init__(
        self,
        model: str,
        batch_size: int = 8,
        dtype: Literal["float32", "bfloat16", "float16"] = "float32",
        device: str = "cpu",
        seed: int = 0,
        lora: str | None = None,
    ) -> None:
        super().__init__(model)
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as err:
            raise EngineError("the hf engine needs transformers and torch: pip install 'reasonlab[hf]'") from err
        self._torch = torch
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model)
            self.lm = AutoModelForCausalLM.from_pretrained(model, dtype=getattr(torch, dtype)).to(device)
        except (OSError, ValueError) as err:
            raise ModelError(f"transformers could not load '{model}': {str(err).splitlines()[0]}") from err
        self.lora = None
        if lora is not None:  # a peft adapter (or a training run holding one in adapter/)
            from peft import PeftModel

            path = Path(lora) / "adapter" if (Path(lora) / "adapter" / "adapter_config.json").exists() else Path(lora)
            try:
                self.lm = PeftModel.from_pretrained(self.lm, str(path))
            except (OSError, ValueError, RuntimeError) as err:
                raise ModelError(f"LoRA {lora} does not load on {model}: {str(err).splitlines()[0]}") from err
            self.lora = str(path)
        self.lm.eval()
        conf = getattr(self.lm, "config", None)
        self._context = getattr(conf, "n_positions", None) or getattr(conf, "max_position_embeddings", None)
        self.device = device
        self.batch_size = batch_size
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        # a private pad token: never mutate a shared tokenizer's special tokens beyond this instance
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "left"

    def identity(self) -> dict[str, Any]:
        cfg = self.lm.config
        return {"backend": self.backend, "model": str(getattr(cfg, "_name_or_path", self.model)),
                "revision": getattr(cfg, "_commit_hash", None), "weights": _weights_stamp(self.model),
                "dtype": str(self.lm.dtype), "lora": self.lora and _weights_stamp(self.lora)}

    def describe(self) -> dict[str, Any]:
        return {"backend": self.backend, "model": self.model, "dtype": str(self.lm.dtype), "device": self.device}

    def render_chat(self, messages: list[Message]) -> str:
        if not getattr(self.tokenizer, "chat_template", None):
            raise EngineError(f"model {self.model} has no chat template: use a completion-style prompt template")
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def loglikelihood(self, requests: list[tuple[str, str]]) -> list[tuple[float, bool]]:
        """Summed log-prob of each continuation given its context, and whether it is the greedy one: one
        forward pass per ``batch_size`` pairs (right-padded), read at the continuation's positions."""
        torch = self._torch
        tok = self.tokenizer

        def encode(text: str) -> list[int]:
            return list(tok(text, add_special_tokens=True)["input_ids"])

        def plain(text: str) -> list[int]:
            return list(tok(text, add_special_tokens=False)["input_ids"])

        out: list[tuple[float, bool]] = []
        with self._lock, torch.inference_mode():
            for lo in range(0, len(requests), self.batch_size):
                pairs = []
                for context, continuation in requests[lo: lo + self.batch_size]:
                    ids, n_context = pair_tokens(encode, plain, context, continuation)
                    if n_context == 0:  # lm-eval: an empty context is the end-of-text token
                        ids, n_context = [tok.eos_token_id, *ids], 1
                    pairs.append((ids, n_context))
                width = max(len(ids) for ids, _ in pairs)
                pad = tok.pad_token_id if tok.pad_token_id is not None else 0
                input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in pairs], device=self.device)
                mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in pairs],
                                    device=self.device)
                logp = torch.log_softmax(self.lm(input_ids=input_ids, attention_mask=mask).logits.float(), dim=-1)
                for row, (ids, n_context) in enumerate(pairs):  # logits at p score token p + 1
                    pos = torch.arange(n_context - 1, len(ids) - 1, device=self.device)
                    target = input_ids[row, pos + 1]
                    scores = logp[row, pos]  # [continuation tokens, vocab]
                    total = float(scores.gather(-1, target[:, None]).sum())
                    out.append((total, bool((scores.argmax(-1) == target).all())))
        return out

    def tokenize(self, text: str, prompt: bool = False) -> list[int]:
        # a rendered chat template already holds BOS; a prompt gets it only when it lacks it
        bos = self.tokenizer.bos_token
        add = prompt and bool(bos) and not text.startswith(bos)
        return list(self.tokenizer(text, add_special_tokens=add)["input_ids"])

    def detokenize(self, ids: list[int], special: bool = False) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=not special)

    def _encode(self, prompts: list[Prompt]) -> Any:
        """Left-padded ids and attention mask: text tokenised as a prompt, ids taken as given; with
        ``position_ids`` when a prompt is positioned (a gap where a span was cut: generate goes on at its last
        position + 1; the other rows get 0..n-1, padding 0)."""
        rows, positions = [], []
        for p in prompts:
            if isinstance(p, str):
                rows.append({"input_ids": self.tokenize(p, prompt=True)})
                positions.append(None)
                continue
            ids = [int(t) for t in (p.ids if isinstance(p, PositionedIds) else p)]
            # given ids are checked: an id past the embedding fails deep in torch
            if not ids or any(not 0 <= t < self.lm.config.vocab_size for t in ids):
                raise EngineError("a token-id prompt is empty or holds ids outside the vocabulary", retryable=False)
            rows.append({"input_ids": ids})
            positions.append(list(p.positions) if isinstance(p, PositionedIds) else None)
        enc = self.tokenizer.pad(rows, padding=True, return_tensors="pt")
        if any(pos is not None for pos in positions):
            width = enc["input_ids"].shape[1]
            pos_ids = self._torch.zeros_like(enc["input_ids"])  # [batch, width], left-padded as the ids
            for i, (row, pos) in enumerate(zip(rows, positions)):
                n = len(row["input_ids"])
                pos_ids[i, width - n:] = self._torch.tensor(pos if pos is not None else range(n))
            enc["position_ids"] = pos_ids
        return enc.to(self.device)

    def generate(self, prompts: list[Prompt], params: SamplingParams, cancel: CancelFn | None = None) -> list[Generation]:
        # a cancel request ends its row at once (the row is padded from then on; its tokens are not counted)
        torch = self._torch
        out: list[Generation] = []
        with self._lock, torch.inference_mode():
            for lo in range(0, len(prompts), self.batch_size):
                chunk = prompts[lo : lo + self.batch_size]
                enc = self._encode(chunk)
                if params.n > 1:  # row = prompt * n + sample, expanded here (greedy refuses num_return_sequences)
                    enc = {k: v.repeat_interleave(params.n, dim=0) for k, v in enc.items()}
                # a model with learned positions (GPT-2) cannot read past its context: generation stops there,
                # finish reason "length", as llama.cpp's does at n_ctx
                room = self._context - enc["input_ids"].shape[1] if self._context else params.max_tokens
                if room <= 0:
                    raise EngineError(f"a prompt of {enc['input_ids'].shape[1]} tokens does not fit {self.model}'s "
                                      f"context of {self._context}", retryable=False)
                kwargs: dict[str, Any] = dict(
                    max_new_tokens=min(params.max_tokens, room),
                    pad_token_id=self.tokenizer.pad_token_id,
                    return_dict_in_generate=True,
                    output_scores=params.logprobs is not None,
                )
                if params.ignore_eos or params.min_tokens:
                    kwargs["min_new_tokens"] = params.max_tokens if params.ignore_eos else params.min_tokens
                # greedy decoding as transformers does it; sampling by our own processor, one torch.Generator per
                # sample (sample s of a prompt seeded seed + s, as on every engine), never the global RNG
                kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
                sampler = None
                if not params.greedy:
                    bases = [params.seed if params.seed is not None else self._rng.randrange(2**31) for _ in chunk]
                    sampler = _SeededSampler([b + s for b in bases for s in range(params.n)], params)
                    kwargs["logits_processor"] = LogitsProcessorList([sampler])
                criteria: list[Any] = []
                if params.stop:
                    criteria.append(_StopOnStrings(self.tokenizer, params.stop, enc["input_ids"].shape[1]))
                cancelled = None
                if cancel is not None:
                    cancelled = _Cancel(cancel, params.n, lo, enc["input_ids"].shape[1], self.tokenizer.eos_token_id,
                                        params.logprobs is not None, sampler)
                    criteria.append(cancelled)
                if criteria:
                    kwargs["stopping_criteria"] = criteria
                start = time.perf_counter()
                res = self.lm.generate(**enc, **kwargs)
                seconds = time.perf_counter() - start
                prompt_len = enc["input_ids"].shape[1]
                new = res.sequences[:, prompt_len:]  # [batch * n, new_tokens]
                chosen_lp, top = None, None
                if params.logprobs is not None and sampler is not None:
                    chosen_lp = sampler.chosen_logprobs()  # [batch * n, steps], the model's own log-probs
                    top = sampler.top if params.logprobs else None
                elif params.logprobs is not None:
                    # log-softmax of the scores at each step (greedy: the model's own), at the chosen token
                    chosen_lp = self.lm.compute_transition_scores(res.sequences, res.scores, normalize_logits=True)
                    if params.logprobs:
                        steps = [torch.topk(torch.log_softmax(sc.float(), -1), min(params.logprobs, sc.shape[-1]), -1)
                                 for sc in res.scores]  # per step: [rows, k]
                        top = [[list(zip(st.indices[r].tolist(), st.values[r].tolist())) for st in steps]
                               for r in range(new.shape[0])]
                for row in range(new.shape[0]):
                    i, s = divmod(row, params.n)
                    gen = self._finish(new[row], chosen_lp, row, lo + i, s, params, enc, row, seconds / new.shape[0],
                                       top[row] if top is not None else None)
                    if cancelled is not None and row in cancelled.rows:
                        gen = gen.model_copy(update={"finish_reason": "cancelled", "stop_reason": None})
                    out.append(gen)
        return out

    def _finish(self, tokens: Any, chosen_lp: Any, row: int, index: int, sample: int,
                params: SamplingParams, enc: Any, i: int, seconds: float,
                top: list[list[tuple[int, float]]] | None = None) -> Generation:
        special = {self.tokenizer.pad_token_id, self.tokenizer.eos_token_id}
        ids = tokens.tolist()
        n_real = len(ids)
        while n_real and ids[n_real - 1] in special:  # padding after this row finished
            n_real -= 1
        hit_eos = n_real < len(ids) or (ids and ids[-1] == self.tokenizer.eos_token_id)
        text = self.tokenizer.decode(ids[:n_real], skip_special_tokens=True)
        found = [(text.find(s), s) for s in params.stop if s in text]
        cut, stop = min(found) if found else (-1, None)
        if cut >= 0:
            text = text[:cut]
        finished = hit_eos or cut >= 0
        lps = None
        if chosen_lp is not None:
            lps = [float(x) for x in chosen_lp[row, :n_real].tolist()]
        n_prompt = int(enc["attention_mask"][i].sum())
        return Generation(
            text=text,
            index=index,
            sample=sample,
            prompt_tokens=n_prompt,
            prompt_token_ids=enc["input_ids"][i, enc["input_ids"].shape[1] - n_prompt:].tolist(),  # left-padded
            token_ids=spelled_ids(self.detokenize, ids[:n_real], text),
            completion_tokens=n_real,
            finish_reason="stop" if finished or n_real < params.max_tokens else "length",
            seconds=seconds,
            token_logprobs=lps,
            stop_reason=stop,
            top_logprobs=[[(t, self.tokenizer.decode([t]), lp) for t, lp in step] for step in top[:n_real]]
            if top is not None else None,
        )


@lru_cache(maxsize=16)
def _digest_of(path: str, size: int, mtime: float) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _digest(path: Path) -> str:
    """The file's content hash (once per process per file version: ~1 s per GB)."""
    stat = path.stat()
    return _digest_of(str(path), stat.st_size, stat.st_mtime)


def gguf_to_hf(gguf: str | Path, out: str | Path | None = None) -> Path:
    """A GGUF model as a transformers directory (fp32, untied as stored), so the hf engine and training can
    load the model llama.cpp runs. transformers dequantizes it (needs accelerate; ~90 s for a 0.5B model),
    so the result is cached: ``out`` defaults to the reasonlab cache, keyed by the file's name and a hash of its
    bytes — a reinstalled package (new mtime, same file) reuses the conversion, a rewritten file of the same size
    does not. A conversion made under the older name-size-mtime key is still found.

        >>> gguf_to_hf(ensure("smollm2-135m"))                       # doctest: +SKIP
        PosixPath('/root/.cache/reasonlab/hf/SmolLM2-135M-Instruct.Q4_1-...')
    """
    from reasonlab.engines.models import cache_dir

    gguf = Path(gguf).expanduser()
    if not gguf.is_file():
        raise ModelError(f"model file not found: {gguf}")
    stat = gguf.stat()
    if out is None:
        legacy = cache_dir() / "hf" / f"{gguf.stem}-{stat.st_size}-{int(stat.st_mtime)}"
        out = legacy if (legacy / "config.json").exists() else cache_dir() / "hf" / f"{gguf.stem}-{_digest(gguf)}"
    out = Path(out)
    if (out / "config.json").exists():
        return out
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig
    except ImportError as err:
        raise EngineError("converting a GGUF needs transformers and torch: pip install 'reasonlab[hf]'") from err
    try:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        lm = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                  quantization_config=GgufConfig(dequantize=True))
    except (OSError, ValueError, ImportError) as err:
        raise ModelError(f"transformers could not read {gguf}: {str(err).splitlines()[0]}") from err
    tmp = out.with_name(out.name + ".part")
    lm.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.replace(out)  # whole or not at all: a crash never leaves a directory that looks converted
    return out


def _weights_stamp(model: str) -> list[list[Any]] | None:
    """(file, bytes, mtime) of a local model directory's weight files: changes when the weights do,
    without hashing gigabytes; None for a hub id (its revision hash identifies it)."""
    path = Path(model)
    if not path.is_dir():
        return None
    files = sorted(p for p in path.iterdir() if p.suffix in (".safetensors", ".bin", ".gguf"))
    return [[p.name, p.stat().st_size, int(p.stat().st_mtime)] for p in files]


try:
    from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria
except ImportError:  # HFEngine.__init__ reports the missing extra in one line
    StoppingCriteria = LogitsProcessor = object  # type: ignore[assignment,misc]
    LogitsProcessorList = list  # type: ignore[assignment,misc]


class _SeededSampler(LogitsProcessor):  # type: ignore[misc]
    """Samples every row with its own ``torch.Generator``, so row r's tokens depend only on its seed (not on
    the batch, nor on torch's global RNG, which stays untouched), and returns scores that leave only the
    chosen token, which greedy decoding then takes. Filters as llama.cpp orders them: top-k, top-p, min-p,
    then temperature. Keeps each chosen token's log-prob under the distribution it was drawn from.
    """

    def __init__(self, seeds: list[int], params: SamplingParams) -> None:
        import torch

        self.params = params
        self.gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.lps: list[list[float]] = [[] for _ in seeds]
        self.top: list[list[list[tuple[int, float]]]] = [[] for _ in seeds]  # per row, per step: top-k (id, lp)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        p = self.params
        x = scores.float().clone()  # [rows, vocab]
        if p.top_k > 0:
            kth = torch.topk(x, min(p.top_k, x.shape[-1]), dim=-1).values[:, -1:]
            x[x < kth] = -float("inf")
        if p.top_p < 1.0:
            probs, order = torch.sort(torch.softmax(x, dim=-1), dim=-1, descending=True)
            drop = probs.cumsum(-1) - probs > p.top_p  # tokens after the mass reached top_p (the first stays)
            x[drop.scatter(-1, order, drop)] = -float("inf")
        if p.min_p > 0.0:
            probs = torch.softmax(x, dim=-1)
            x[probs < p.min_p * probs.max(dim=-1, keepdim=True).values] = -float("inf")
        logp = torch.log_softmax(x / p.temperature, dim=-1)  # [rows, vocab]: the distribution sampled
        raw = torch.log_softmax(scores.float(), dim=-1)  # [rows, vocab]: the model's own, which log-probs report
        best = torch.topk(raw, min(p.logprobs or 1, raw.shape[-1]), dim=-1) if p.logprobs else None
        out = torch.full_like(scores, -float("inf"))
        for r in range(x.shape[0]):
            tok = int(torch.multinomial(logp[r].exp(), 1, generator=self.gens[r]))
            self.lps[r].append(float(raw[r, tok]))
            if best is not None:
                self.top[r].append(list(zip(best.indices[r].tolist(), best.values[r].tolist())))
            out[r, tok] = 0.0
        return out

    def last(self, row: int) -> float | None:
        return self.lps[row][-1] if self.lps[row] else None

    def chosen_logprobs(self) -> Any:
        import torch

        width = max(len(r) for r in self.lps)
        return torch.tensor([r + [0.0] * (width - len(r)) for r in self.lps])


class _StopOnStrings(StoppingCriteria):  # type: ignore[misc]
    """Ends each row once its generated text contains a stop string.

    transformers' own ``stop_strings`` maps tokens to bytes and fails on tokenizers that are not
    byte-level (WordLevel, some SentencePiece); decoding a short tail of each row works for any.
    """

    def __init__(self, tokenizer: Any, stops: tuple[str, ...], prompt_len: int) -> None:
        self.tokenizer = tokenizer
        self.stops = stops
        self.prompt_len = prompt_len
        self.window = max(len(s) for s in stops) + 8  # tokens: every token holds at least one character

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        tails = input_ids[:, self.prompt_len:][:, -self.window:]  # [batch, <=window]
        texts = self.tokenizer.batch_decode(tails, skip_special_tokens=True)
        return torch.tensor([any(s in t for s in self.stops) for t in texts], device=input_ids.device)


class _Cancel(StoppingCriteria):  # type: ignore[misc]
    """Asks the engine's cancel hook after every token of every live row; a row it cancels ends there.

    Rows that already produced EOS are not asked again (their later positions are padding).
    """

    def __init__(self, cancel: CancelFn, n: int, lo: int, prompt_len: int, eos: int | None, logprobs: bool,
                 sampler: _SeededSampler | None = None) -> None:
        self.cancel, self.n, self.lo, self.prompt_len, self.eos, self.logprobs = cancel, n, lo, prompt_len, eos, logprobs
        self.sampler = sampler  # when sampling, the log-prob of the chosen token comes from the sampled distribution
        self.rows: set[int] = set()
        self.ended: set[int] = set()

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        step = input_ids.shape[1] - self.prompt_len  # tokens generated so far, this one included
        if isinstance(scores, tuple):  # transformers 5 passes every step's scores when output_scores is on
            scores = scores[-1] if scores else None
        lps = None
        if self.logprobs and scores is not None and self.sampler is None:
            lps = torch.log_softmax(scores.float(), dim=-1)
        done = []
        for row in range(input_ids.shape[0]):
            tok = int(input_ids[row, -1])
            if row in self.rows or row in self.ended:
                done.append(True)
                continue
            if tok == self.eos:
                self.ended.add(row)
                done.append(True)
                continue
            i, s = divmod(row, self.n)
            if self.logprobs and self.sampler is not None:
                lp = self.sampler.last(row)
            else:
                lp = float(lps[row, tok]) if lps is not None else None
            if self.cancel(self.lo + i, s, step, lp):
                self.rows.add(row)
                done.append(True)
            else:
                done.append(False)
        return torch.tensor(done, device=input_ids.device)
