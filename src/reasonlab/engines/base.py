"""The engine seam: the only place in reasonlab that generates text.

Shaped like vLLM's ``LLM.generate`` (batched lists in, batched lists out) and lm-eval-harness's
``LM``: a backend implements ``generate`` (raw prompts, continued as written) and ``render_chat``
(the model's own chat template); ``chat`` is built from the two, once, here.

    >>> params = SamplingParams(temperature=0.0, max_tokens=64, stop=["\\n\\n"])
    >>> params.n, params.top_p
    (1, 1.0)
"""

from __future__ import annotations

import abc
import json
from dataclasses import dataclass
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from reasonlab.errors import ConfigError

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": "..."}
# What ``generate`` continues: raw text (tokenised by the engine, BOS added where the model wants it), or token ids
# used exactly as given (vLLM's ``TokensPrompt``): a policy continuing a trace sends the ids the model sampled, so
# nothing is re-tokenised across the boundary
@dataclass(frozen=True)
class PositionedIds:
    """Token ids with the position of each (prune-agnostic decoding, ``hcot -O prune=agnostic``): where a span was
    cut, the tokens after it keep the positions they were written at, so the positions have a gap. Generation goes
    on at the last position + 1. Only an engine with ``takes_positions`` accepts it (hf: llama.cpp refuses a gap
    inside a prefill, servers take no positions)."""

    ids: tuple[int, ...]
    positions: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.ids) != len(self.positions) or not self.ids:
            raise ConfigError("positioned ids: as many positions as ids, and at least one")
        if any(b <= a for a, b in zip(self.positions, self.positions[1:])) or self.positions[0] < 0:
            raise ConfigError("positioned ids: positions must start at 0 or later and increase")


Prompt = str | list[int] | PositionedIds
# (prompt index, sample, tokens so far, log-prob of the newest token or None) -> end this sample now.
# The log-prob is given when params.logprobs is set and the engine computes it while decoding (llamacpp
# batched path, hf); DeepConf-style confidence stopping reads it.
CancelFn = Callable[[int, int, int, "float | None"], bool]
FinishReason = Literal["stop", "length", "cancelled", "error"]
# (prompt index, sample, tokens generated so far, the newest last and not yet read by the model) -> [start, end)
# spans of the generated tokens to forget now: their KV cells are removed in place, the positions of everything
# else kept (prune-agnostic hCoT on an engine with ``prunes_in_place``). Called once per sampled token.
PruneFn = Callable[[int, int, list[int]], list[tuple[int, int]]]

# A prompt that is a conversation, not text: what ``render_chat`` returns on an engine that cannot render
# the model's template (a server without a template endpoint and no tokenizer). ``generate`` sends it to
# the chat endpoint; text appended to it (raw continuation) cannot be sent anywhere and is refused.
CHAT_PROMPT = "\x00reasonlab-chat\x00"


def chat_prompt(messages: list[Message]) -> str:
    """A conversation as a prompt for an engine that renders it server-side."""
    return CHAT_PROMPT + json.dumps(messages, ensure_ascii=False)


def chat_messages(prompt: str) -> list[Message] | None:
    """The conversation a ``chat_prompt`` holds; None for ordinary text. A chat prompt with text appended
    (a strategy continuing the model's answer) raises ConfigError: that needs the rendered template."""
    if not prompt.startswith(CHAT_PROMPT):
        return None
    try:
        return list(json.JSONDecoder().decode(prompt[len(CHAT_PROMPT):]))
    except ValueError:
        raise ConfigError("this strategy continues the model's text raw, which needs the chat template rendered "
                          "here: pass --tokenizer (a hub id, an HF directory or a .gguf file) or use "
                          "--prompt completion") from None


class SamplingParams(BaseModel):
    """How to sample; mirrors vLLM's ``SamplingParams`` and the OpenAI API (same names, same defaults)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n: int = Field(1, ge=1, description="samples per prompt")
    temperature: float = Field(0.0, ge=0.0, description="0 means greedy decoding")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="nucleus sampling mass; 1 disables")
    top_k: int = Field(-1, ge=-1, description="keep the k most likely tokens; -1 disables (vLLM convention)")
    min_p: float = Field(0.0, ge=0.0, le=1.0, description="drop tokens below min_p * p(top token); 0 disables")
    max_tokens: int = Field(512, ge=1, description="most tokens to generate per sample")
    stop: tuple[str, ...] = Field((), description="strings that end a sample (not included in its text)")
    seed: int | None = Field(None, description="sample i of a prompt uses seed + i; None draws a fresh seed")
    logprobs: int | None = Field(None, ge=0, description="per generated token, its log-prob and the k most likely "
                                                         "alternatives' (vLLM's meaning; 0: the chosen one only)")
    ignore_eos: bool = Field(False, description="keep generating past end-of-sequence tokens (benchmarks; vLLM's name)")
    min_tokens: int = Field(0, ge=0, description="end-of-sequence is not sampled before this many generated tokens "
                                                 "(vLLM's name); stop strings and the token limit still end a sample")

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_as_tuple(cls, v: Any) -> Any:
        if isinstance(v, str):
            return (v,)
        return tuple(v) if v is not None else ()

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


class Generation(BaseModel):
    """One finished sample: what was generated for prompt ``index``, sample ``sample`` of n."""

    text: str
    index: int = 0  # which prompt of the batch
    sample: int = 0  # which of the n samples of that prompt
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: FinishReason = "stop"
    seconds: float = 0.0  # wall time spent producing this sample (prompt + decode)
    token_logprobs: list[float] | None = None  # log p of each generated token when params.logprobs is set
    # with params.logprobs = k > 0: per generated token, the k most likely (token id, text, log p), best first;
    # log-probs are the model's own distribution, before temperature and sampling filters (as vLLM's). Servers
    # answer in text: their ids are -1
    top_logprobs: list[list[tuple[int, str, float]]] | None = None
    error: str | None = None  # why this sample failed (finish_reason "error"), e.g. a prompt over the context
    retryable: bool = True  # with error: False when asking again cannot help (a prompt over the context)
    cached_tokens: int = 0  # prompt tokens not prefilled: served from the prefix cache (or a sibling's prefill)
    # the prompt as the model read it, and the tokens it generated (None where the engine cannot tell: a server
    # without a tokenizer). ``token_ids`` spell ``text``, except that a stop string cutting a token leaves that
    # token out (they spell a prefix of ``text`` then); an end-of-sequence token is not among them
    prompt_token_ids: list[int] | None = None
    token_ids: list[int] | None = None

    @property
    def prefilled_tokens(self) -> int:
        """Prompt tokens the engine actually evaluated for this sample."""
        return max(0, self.prompt_tokens - self.cached_tokens)
    stop_reason: str | None = None  # the stop string that ended the sample (None: end of sequence, length, cancel)


def spelled_ids(decode: Callable[[list[int]], str], ids: list[int], text: str) -> list[int]:
    """The longest head of ``ids`` that spells a prefix of ``text`` (all of them when they spell it exactly).
    Engines cut a sample's text at a stop string, which may fall inside a token: that token and the ones after
    it are dropped, so the ids never claim text the sample does not have.

    >>> spelled_ids(lambda ids: "".join("ab c"[i] for i in ids), [0, 1, 2, 3], "ab ")
    [0, 1, 2]
    """
    if decode(ids) == text:
        return list(ids)
    lo, hi = 0, len(ids)  # decode(ids[:lo]) is a prefix of text; binary search the largest such lo
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if text.startswith(decode(ids[:mid])):
            lo = mid
        else:
            hi = mid - 1
    return list(ids[:lo])


def refuse_positions(prompts: list[Prompt], backend: str) -> None:
    """ConfigError when an engine without ``takes_positions`` is handed positioned ids."""
    if any(isinstance(p, PositionedIds) for p in prompts):
        raise ConfigError(f"the {backend} engine cannot take token positions (prune-agnostic decoding, "
                          f"hcot prune=agnostic): use the hf engine, or prune=continue")


def split_pair(context: str, continuation: str) -> tuple[str, str]:
    """lm-eval's convention: whitespace ending the context belongs to the continuation (BPE vocabularies
    attach a space to the word after it).

    >>> split_pair("Paris is the capital of ", "France")
    ('Paris is the capital of', ' France')
    """
    stripped = context.rstrip()
    return stripped, context[len(stripped):] + continuation


def pair_tokens(encode: Callable[[str], list[int]], encode_plain: Callable[[str], list[int]], context: str,
                continuation: str) -> tuple[list[int], int]:
    """(ids of context + continuation, how many of them are the context), split as ``split_pair`` says.
    ``encode`` adds what a prompt starts with (BOS), ``encode_plain`` nothing. The whole is encoded once, so
    a token merging across the boundary is not split in two; when the context's own ids are not a prefix of
    the whole's, the continuation is encoded on its own after them."""
    context, continuation = split_pair(context, continuation)
    ctx = encode(context)
    whole = encode(context + continuation)
    if whole[: len(ctx)] == ctx and len(whole) > len(ctx):
        return whole, len(ctx)
    return ctx + encode_plain(continuation), len(ctx)


class Engine(abc.ABC):
    """A text generator. Subclasses implement ``generate``, ``render_chat`` and ``count_tokens``.

    ``max_concurrency`` tells the runner how many problems it pays to have in flight at once:
    1 for an in-process model that owns the CPU, more for a server that batches requests itself.
    """

    backend: str = "?"
    max_concurrency: int = 1
    takes_positions = False  # generate accepts PositionedIds (prune-agnostic decoding)
    prunes_in_place = False  # generate_pruning: spans cut from a live sequence's KV cache while it decodes

    def generate_pruning(self, prompts: list[Prompt], params: SamplingParams, prune: PruneFn,
                         cancel: CancelFn | None = None) -> list[Generation]:
        """``generate``, with ``prune`` asked after every sampled token which spans of the generation to forget
        (in place, positions kept). Only engines with ``prunes_in_place``."""
        raise ConfigError(f"the {self.backend} engine cannot cut spans out of a live sequence's cache "
                          f"(prune=agnostic with agnostic_by=cache needs llamacpp with --parallel >= 2)")

    def __init__(self, model: str) -> None:
        self.model = model

    @abc.abstractmethod
    def generate(self, prompts: list[Prompt], params: SamplingParams, cancel: CancelFn | None = None) -> list[Generation]:
        """Continue each raw prompt exactly as written — text, or token ids taken as they are — and return
        ``len(prompts) * params.n`` generations in prompt-major order (all samples of prompt 0 first).

        ``cancel``, where an engine supports it, is asked after every token whether a sample should end
        now (finish reason "cancelled"): early-stopping strategies stop spending on a decided problem.
        Engines that cannot stop mid-sample ignore it and finish the sample.
        """

    @abc.abstractmethod
    def render_chat(self, messages: list[Message]) -> str:
        """Apply the model's own chat template and open the assistant turn."""

    @abc.abstractmethod
    def count_tokens(self, text: str) -> int:
        """Number of tokens ``text`` takes in this model's vocabulary."""

    def tokenize(self, text: str, prompt: bool = False) -> list[int]:
        """``text`` in this model's vocabulary (special-token text such as a chat template's markers becomes
        those tokens). ``prompt``: as a prompt starts, with BOS where the model wants one — exactly the ids
        ``generate`` would feed for that text. Engines without a vocabulary raise ConfigError."""
        raise ConfigError(f"the {self.backend} engine has no tokenizer: pass --tokenizer")

    def detokenize(self, ids: list[int], special: bool = False) -> str:
        """The text ``ids`` spell; special tokens (end-of-sequence, a chat template's markers) are left out
        unless ``special``, which writes them as their text (a token-id prompt sent to a server as text)."""
        raise ConfigError(f"the {self.backend} engine has no tokenizer: pass --tokenizer")

    def chat(self, conversations: list[list[Message]], params: SamplingParams) -> list[Generation]:
        """Answer each conversation: its template is rendered once here, then continued raw,
        so a strategy can later continue the same text (budget forcing, tool calls)."""
        return self.generate([self.render_chat(m) for m in conversations], params)

    def loglikelihood(self, requests: list[tuple[str, str]]) -> list[tuple[float, bool]]:
        """Score fixed continuations (lm-eval-harness's ``loglikelihood`` request): for each (context,
        continuation), the summed log-prob of the continuation's tokens given the context, and whether
        greedy decoding from the context would write exactly those tokens. Tokens are split as lm-eval does
        (``split_pair``). Engines that cannot score raise ConfigError naming the ones that can."""
        raise ConfigError(f"the {self.backend} engine cannot score continuations (loglikelihood): "
                          f"use the llamacpp or hf engine")

    def stats(self) -> dict[str, Any]:
        """Counters of what the engine did (where it keeps any): a run stores them in summary.json."""
        return {}

    def can_render_chat(self) -> bool:
        """Does ``render_chat`` give the template as text (True), or a ``chat_prompt`` that only the
        chat endpoint takes, which cannot be continued raw (False)?"""
        return True

    def describe(self) -> dict[str, Any]:
        """What a run records about this engine in ``config.yaml``."""
        return {"backend": self.backend, "model": self.model}

    def identity(self) -> dict[str, Any]:
        """What was actually loaded, for a run's identity: a run directory resumes only with the same
        weights (file and checksum, or server and served model id). Speed knobs stay out."""
        return {"backend": self.backend, "model": self.model}

    def close(self) -> None:
        """Release the model or connection; the engine is unusable afterwards."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
