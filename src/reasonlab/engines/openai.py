"""OpenAI-compatible backend: vLLM, SGLang, llama.cpp's server, Ollama — the scale-out path.

``generate`` uses ``/v1/completions`` (raw continuation); ``chat`` uses ``/v1/chat/completions`` so the
server applies the model's template. Requests run ``concurrency`` at a time; a 429, a 5xx, a refused
connection or a timeout is retried with exponential backoff and jitter, then reported in one line.

    >>> eng = OpenAIEngine("http://127.0.0.1:8000/v1", model="qwen")     # doctest: +SKIP
    >>> eng.generate(["1 + 1 ="], SamplingParams(max_tokens=3))[0].text  # doctest: +SKIP
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

import httpx

from reasonlab.engines.base import (CancelFn, Engine, Generation, Message, Prompt, SamplingParams, chat_messages,
                                   chat_prompt, refuse_positions, split_pair)
from reasonlab.engines.tokenizers import load_tokenizer, resolvable
from reasonlab.errors import ConfigError, EngineError

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
# how servers say a prompt is over the context window (vLLM, llama.cpp, SGLang, OpenAI)
_CONTEXT_ERROR = re.compile(r"context (length|window|size)|maximum context|too long|exceeds|exceed_context", re.I)
T = TypeVar("T")


class OpenAIEngine(Engine):
    """Client for an OpenAI-compatible server.

    Args:
        base_url: e.g. ``http://127.0.0.1:8000/v1`` (a trailing ``/v1`` is added if missing).
        model: the served model id; default: the first id the server lists at ``/v1/models``.
        api_key: sent as a bearer token; default: $OPENAI_API_KEY, else none.
        concurrency: requests in flight at once (the server batches them).
        timeout_s: per-request timeout.
        max_retries: retries of one request after a retryable failure.
        tokenizer: the served model's tokenizer (a .gguf file, a registered model name, an HF directory or
            hub id), used to render chat templates and count tokens when the server cannot (vLLM and
            llama-cpp-python's server have no template endpoint). Default: the server's /apply-template
            (llama-server), else the served model id where it resolves here (a .gguf path), else
            single-turn prompts go to /v1/chat/completions and raw continuation is refused.
    """

    backend = "openai"

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        api_key: str | None = None,
        concurrency: int = 8,
        timeout_s: float = 600.0,
        max_retries: int = 4,
        backoff_s: float = 0.5,
        tokenizer: str | None = None,
    ) -> None:
        base_url = base_url.rstrip("/")
        if not base_url.endswith("/v1"):
            base_url += "/v1"
        self.base_url = base_url
        self.root_url = base_url[: -len("/v1")]
        self.max_concurrency = concurrency
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        key = api_key or os.environ.get("OPENAI_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
            limits=httpx.Limits(max_connections=concurrency * 2),
        )
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="openai")
        self._tokenizer_id = tokenizer
        self._tokenizer: Any = None
        self._render_mode: str | None = None
        self._tokenize_route: str | None = None
        self._render_lock = threading.Lock()
        self._rng = random.Random()
        self._takes_ids: bool | None = None
        self._echo_ok: bool | None = None  # does /completions echo the prompt's log-probs? (vLLM: yes)  # does /completions take token-id prompts? (vLLM, llama-server: yes)
        super().__init__(model or self._first_model())

    # -- HTTP ---------------------------------------------------------------------------------
    def _request(self, method: str, url: str, body: dict[str, Any] | None = None,
                 parse: Callable[[dict[str, Any]], T] | None = None, retries: int | None = None) -> T | dict[str, Any]:
        """One JSON request with retries; ``parse`` turns the reply into what the caller needs and raises
        KeyError/TypeError/ValueError when it is not the JSON the API promises. Retried (with backoff and
        jitter): 408/409/429/5xx, refused, dropped or reset connections, timeouts, and 200 replies whose
        body is not that JSON. A request the server refuses as such (4xx) is not retried; one over the
        context window fails for good (``EngineError.retryable`` False)."""
        last = ""
        retries = self.max_retries if retries is None else retries
        for attempt in range(retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1) * (0.5 + self._rng.random()))
            try:
                resp = self._http.request(method, url, json=body)
            except httpx.TransportError as err:  # refused, dropped, reset, timed out
                last = f"{type(err).__name__}: {err}"
                continue
            if resp.status_code in RETRY_STATUS:
                last = f"HTTP {resp.status_code}: {resp.text[:200]}"
                continue
            if resp.status_code >= 400:
                text = resp.text[:300]
                too_long = resp.status_code in (400, 413) and _CONTEXT_ERROR.search(text) is not None
                raise EngineError(f"server {url} refused the request: HTTP {resp.status_code}: {text}",
                                  retryable=not too_long)
            try:
                data = resp.json()
                if not isinstance(data, dict):
                    raise TypeError(f"a JSON {type(data).__name__}, not an object")
                return parse(data) if parse is not None else data
            except (ValueError, KeyError, TypeError, IndexError) as err:
                last = f"a reply that is not the JSON the API promises ({type(err).__name__}: {err}): {resp.text[:120]!r}"
                continue
        raise EngineError(f"server {url} did not answer after {retries + 1} tries: {last}")

    def _first_model(self) -> str:
        data = self._request("GET", f"{self.base_url}/models")
        try:
            return str(data["data"][0]["id"])
        except (KeyError, IndexError, TypeError):
            raise EngineError(f"server {self.base_url}/models listed no model: {str(data)[:200]}") from None

    # -- the seam ------------------------------------------------------------------------------
    def _body(self, params: SamplingParams, n: int, seed: int | None, chat: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "n": n,
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
        }
        # non-standard knobs go only when set: strict servers reject unknown fields
        if params.top_k > 0:
            body["top_k"] = params.top_k
        if params.min_p > 0:
            body["min_p"] = params.min_p
        if params.stop:
            body["stop"] = list(params.stop)
        if seed is not None:
            body["seed"] = seed
        if params.logprobs is not None and chat:  # the chat API asks for log-probs as a flag and a count
            body["logprobs"] = True
            if params.logprobs:
                body["top_logprobs"] = params.logprobs
        elif params.logprobs is not None:
            body["logprobs"] = params.logprobs
        if params.ignore_eos:
            body["ignore_eos"] = True  # vLLM, SGLang and llama.cpp's server accept it
        if params.min_tokens:
            body["min_tokens"] = params.min_tokens  # vLLM's and SGLang's extension (not in the OpenAI API)
        return body

    def _sample(self, endpoint: str, payload: dict[str, Any], params: SamplingParams, index: int) -> list[Generation]:
        """All n samples of one prompt, with their token ids where a local tokenizer gives them (servers answer
        in text). A token-id prompt goes as ids where the server takes them, as the text they spell elsewhere
        (llama-cpp-python's server), found out on the first one."""
        prompt = payload.get("prompt")
        ids = list(prompt) if isinstance(prompt, list) else None
        if ids is not None and self._takes_ids is False:
            payload = {**payload, "prompt": self.detokenize(ids, special=True)}
        probe = ids is not None and self._takes_ids is None
        try:  # the first id prompt is asked once: servers refuse them as 4xx or 5xx (llama-cpp-python: 500)
            out = self._sample_n(endpoint, payload, params, index, retries=0 if probe else None)
            if probe:
                self._takes_ids = True
        except EngineError:
            if not probe:
                raise
            self._takes_ids = False  # text then: what the ids spell, special tokens written out
            out = self._sample_n(endpoint, {**payload, "prompt": self.detokenize(ids, special=True)}, params, index)
        tok = self._local_tokenizer()
        if tok is not None and endpoint == "completions":
            prompt_ids = ids if ids is not None else tok.tokenize(str(prompt), prompt=True)
            out = [g.model_copy(update={"prompt_token_ids": prompt_ids, "token_ids": tok.tokenize(g.text)})
                   for g in out]
        return out

    def _sample_n(self, endpoint: str, payload: dict[str, Any], params: SamplingParams, index: int,
                  retries: int | None = None) -> list[Generation]:
        """All n samples of one prompt. Servers that ignore ``n`` (llama.cpp) get the rest asked one by one."""
        base_seed = params.seed if params.seed is not None else self._rng.randrange(2**31)
        url = f"{self.base_url}/{endpoint}"
        chat = endpoint == "chat/completions"
        out: list[Generation] = []
        while len(out) < params.n:
            want = params.n - len(out)
            start = time.perf_counter()
            choices, usage = self._request("POST", url, {**payload, **self._body(params, want, base_seed + len(out), chat)},
                                           parse=lambda data: _choices(data, want, chat), retries=retries)
            seconds = time.perf_counter() - start
            # usage counts all choices together; split it by text length (exact when n == 1)
            total = int(usage.get("completion_tokens", 0))
            details = usage.get("prompt_tokens_details") or {}  # vLLM and OpenAI report prefix-cache hits here
            cached = int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0
            lengths = [max(len(c["text"]), 1) for c in choices]
            for c, length in zip(choices, lengths):
                out.append(
                    Generation(
                        text=c["text"],
                        index=index,
                        sample=len(out),
                        prompt_tokens=int(usage.get("prompt_tokens", 0)),
                        completion_tokens=round(total * length / sum(lengths)),
                        finish_reason="length" if c["reason"] == "length" else "stop",
                        seconds=seconds,
                        token_logprobs=c["logprobs"],
                        top_logprobs=c["top"],
                        stop_reason=c["stop"],
                        cached_tokens=cached,
                    )
                )
        return out

    def _fan_out(self, endpoint: str, payloads: list[dict[str, Any]], params: SamplingParams) -> list[Generation]:
        futures = [self._pool.submit(self._sample, endpoint, p, params, i) for i, p in enumerate(payloads)]
        return [g for f in futures for g in f.result()]

    def generate(self, prompts: list[Prompt], params: SamplingParams, cancel: CancelFn | None = None) -> list[Generation]:
        # a request in flight cannot be stopped through the API; cancel is not honoured mid-sample
        refuse_positions(prompts, self.backend)
        chats = [chat_messages(p) if isinstance(p, str) else None for p in prompts]
        if all(c is None for c in chats):
            return self._fan_out("completions", [{"prompt": p} for p in prompts], params)
        if any(c is None for c in chats):  # a mixed batch: each prompt to its endpoint, order kept
            parts = [self.generate([p], params) for p in prompts]
            return [g.model_copy(update={"index": i}) for i, part in enumerate(parts) for g in part]
        return self.chat(chats, params)  # type: ignore[arg-type]

    def chat(self, conversations: list[list[Message]], params: SamplingParams) -> list[Generation]:
        return self._fan_out("chat/completions", [{"messages": m} for m in conversations], params)

    # -- rendering and counting: the server's endpoints, a local tokenizer, or the chat endpoint -------------
    def _renderer(self) -> str:
        """How chat templates get rendered, decided once: "tokenizer" (given, or the served model's when it
        resolves here), "server" (llama-server's /apply-template), or "chat" (none: single-turn prompts go to
        the chat endpoint)."""
        with self._render_lock:
            if self._render_mode is None:
                if self._tokenizer_id:
                    self._tokenizer = load_tokenizer(self._tokenizer_id)
                    self._render_mode = "tokenizer"
                elif self._server_renders():
                    self._render_mode = "server"
                elif resolvable(self.model):  # llama-cpp-python's server reports its model as a .gguf path
                    self._tokenizer = load_tokenizer(self.model)
                    self._render_mode = "tokenizer"
                else:
                    self._render_mode = "chat"
            return self._render_mode

    def _server_renders(self) -> bool:
        probe = [{"role": "user", "content": "1"}]
        try:
            self._request("POST", f"{self.root_url}/apply-template", {"messages": probe},
                          parse=lambda d: str(d["prompt"]))
            return True
        except EngineError:
            return False

    def can_render_chat(self) -> bool:
        return self._renderer() != "chat"

    def render_chat(self, messages: list[Message]) -> str:
        mode = self._renderer()
        if mode == "tokenizer":
            return self._tokenizer.render_chat(messages)
        if mode == "server":
            return self._request("POST", f"{self.root_url}/apply-template", {"messages": messages},
                                 parse=lambda d: str(d["prompt"]))
        return chat_prompt(messages)

    def _local_tokenizer(self) -> Any:
        """The served model's tokenizer when one is here (given, or the served model's file), else None."""
        return self._tokenizer if self._renderer() == "tokenizer" else None

    def tokenize(self, text: str, prompt: bool = False) -> list[int]:
        tok = self._local_tokenizer()
        if tok is None:
            raise ConfigError(f"token ids for {self.base_url} need the served model's tokenizer: pass --tokenizer "
                              f"(a hub id, an HF directory or a .gguf file)")
        return tok.tokenize(text, prompt)

    def detokenize(self, ids: list[int], special: bool = False) -> str:
        tok = self._local_tokenizer()
        if tok is None:
            raise ConfigError(f"token-id prompts for {self.base_url} need the served model's tokenizer: pass "
                              f"--tokenizer (a hub id, an HF directory or a .gguf file)")
        return tok.detokenize(ids, special)

    def count_tokens(self, text: str) -> int:
        routes = {  # what each server calls its tokenizer endpoint; the first that answers is kept
            "llama-server": (f"{self.root_url}/tokenize", {"content": text, "add_special": False}),
            "vllm": (f"{self.root_url}/tokenize", {"model": self.model, "prompt": text, "add_special_tokens": False}),
            "llama-cpp-python": (f"{self.root_url}/extras/tokenize", {"input": text}),
        }
        for name in ([self._tokenize_route] if self._tokenize_route else list(routes)):
            if name == "local":
                break
            url, body = routes[name]
            try:
                n = self._request("POST", url, body, parse=lambda d: len(d["tokens"]))
                self._tokenize_route = name
                return n
            except EngineError:
                continue
        if self._renderer() == "tokenizer":
            self._tokenize_route = "local"
            return self._tokenizer.count_tokens(text)
        raise EngineError(f"server {self.root_url} has no tokenize endpoint: pass --tokenizer "
                          f"(a hub id, an HF directory or a .gguf file)")

    # -- scoring through the server's prompt log-probs (echo) ------------------------------------------------
    def loglikelihood(self, requests: list[tuple[str, str]]) -> list[tuple[float, bool]]:
        """lm-eval's ``loglikelihood`` through the completions endpoint's ``echo`` (the prompt's own
        log-probs, as lm-eval's OpenAI-completions model asks vLLM): context + continuation is sent, one
        token generated and ignored, and the continuation's tokens are found by their text offsets. Servers
        without it get one clear error: llama-server refuses echo, and llama-cpp-python's server answers it
        with each token scored by the distribution after it (shifted by one: checked against the in-process
        engine), so it is refused too."""
        if requests and self._echo_ok is None and self._is_llama_cpp_python():
            raise ConfigError(f"server {self.base_url} is llama-cpp-python's, whose echoed prompt log-probs are "
                              f"shifted by one token: scoring needs vLLM, or the llamacpp or hf engine")
        out = [self._score(*requests[0])] if requests else []  # the first alone: it finds out whether echo works
        return out + list(self._pool.map(lambda r: self._score(*r), requests[1:]))

    def _is_llama_cpp_python(self) -> bool:
        try:  # its own tokenizer route, which no other server has
            self._request("POST", f"{self.root_url}/extras/tokenize", {"input": "a"},
                          parse=lambda d: len(d["tokens"]), retries=0)
            return True
        except EngineError:
            return False

    def _score(self, context: str, continuation: str) -> tuple[float, bool]:
        context, continuation = split_pair(context, continuation)
        text = context + continuation
        body = {"model": self.model, "prompt": text, "max_tokens": 1, "temperature": 0.0, "echo": True,
                "logprobs": 1}
        probe = self._echo_ok is None
        try:
            lp = self._request("POST", f"{self.base_url}/completions", body,
                               parse=lambda d: _echoed(d, len(text)), retries=0 if probe else None)
        except EngineError as err:
            if not probe:
                raise
            raise ConfigError(f"server {self.base_url} does not return the prompt's log-probs (echo), which "
                              f"scoring needs: vLLM does; or use the llamacpp or hf engine ({str(err)[:160]})") from None
        self._echo_ok = True
        total, greedy = 0.0, True
        for offset, logprob, top in lp:
            if offset >= len(context) and logprob is not None:  # the continuation's tokens
                total += logprob
                greedy = greedy and (not top or logprob >= max(top.values()) - 1e-6)
        return total, greedy

    def identity(self) -> dict[str, Any]:
        return {"backend": self.backend, "model": self.model, "base_url": self.base_url}

    def describe(self) -> dict[str, Any]:
        return {"backend": self.backend, "model": self.model, "base_url": self.base_url,
                "concurrency": self.max_concurrency}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._http.close()


def _echoed(data: dict[str, Any], n_chars: int) -> list[tuple[int, float | None, dict[str, float]]]:
    """(text offset, log-prob, top alternatives) of each prompt token of an echo reply (the generated
    token after them left out). ValueError when the reply does not hold the prompt's log-probs."""
    lp = data["choices"][0]["logprobs"]
    offsets, logprobs = lp["text_offset"], lp["token_logprobs"]
    tops = lp.get("top_logprobs") or [None] * len(offsets)
    rows = [(int(o), None if v is None else float(v), dict(t or {})) for o, v, t in zip(offsets, logprobs, tops)
            if int(o) < n_chars]
    if not rows or rows[0][0] != 0:
        raise ValueError("the reply holds no log-probs for the prompt (echo ignored)")
    return rows


def _choices(data: dict[str, Any], want: int, chat: bool) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The choices of a completions reply, checked: KeyError/TypeError/ValueError when it is not the JSON
    the API promises (the request is then retried like a 5xx)."""
    raw = data["choices"][:want]
    if not raw:
        raise ValueError("no choices")
    usage = data.get("usage") or {}
    if not isinstance(usage, dict):
        raise TypeError("usage is not an object")
    out = []
    for c in raw:
        text = c["message"]["content"] if chat else c["text"]
        if text is not None and not isinstance(text, str):
            raise TypeError("text is not a string")
        stop = c.get("stop_reason")  # vLLM and SGLang say which stop string matched; others do not
        out.append({"text": text or "", "reason": c.get("finish_reason"), "logprobs": _token_logprobs(c),
                    "top": _top_logprobs(c),
                    "stop": stop if isinstance(stop, str) else None})
    return out, usage


def _top_logprobs(choice: dict[str, Any]) -> list[list[tuple[int, str, float]]] | None:
    """Per token, the alternatives a server returned (completions: ``top_logprobs`` dicts; chat: lists),
    best first; servers answer in text, so ids are -1."""
    lp = choice.get("logprobs")
    if not lp:
        return None
    if isinstance(lp.get("top_logprobs"), list):  # completions format: [{token text: logprob}, ...]
        return [sorted(((-1, str(t), float(v)) for t, v in (d or {}).items()), key=lambda x: -x[2])
                for d in lp["top_logprobs"]]
    if isinstance(lp.get("content"), list):  # chat format
        return [[(-1, str(a["token"]), float(a["logprob"])) for a in t.get("top_logprobs", [])] for t in lp["content"]]
    return None


def _token_logprobs(choice: dict[str, Any]) -> list[float] | None:
    lp = choice.get("logprobs")
    if not lp:
        return None
    if "token_logprobs" in lp:  # completions format
        return [float(x) for x in lp["token_logprobs"] if x is not None]
    if "content" in lp:  # chat format
        return [float(t["logprob"]) for t in lp["content"]]
    return None
