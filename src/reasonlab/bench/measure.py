"""Throughput measurements on the llamacpp and openai engines.

Every figure separates prompt processing from decoding: decode speed is taken from per-token
timestamps (the engine's cancel hook is called after every token), first token to last.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from reasonlab.engines import SamplingParams
from reasonlab.engines.llamacpp import LlamaCppEngine

# a prompt that invites a long answer; ignore_eos keeps every sequence going to max_tokens anyway
PROMPT = ("Explain, step by step and in detail, how to compute the sum of the first 100 positive integers, "
          "then check the result in two other ways.")


class _Clock:
    """Collects a timestamp per generated token (all sequences of a call together)."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def __call__(self, index: int, sample: int, n: int, logprob: float | None = None) -> bool:
        self.times.append(time.perf_counter())
        return False  # never cancel: we only watch


def decode_tps(times: list[float]) -> float:
    """Tokens per second from the first token's timestamp to the last (prefill excluded)."""
    if len(times) < 2:
        return 0.0
    return (len(times) - 1) / (times[-1] - times[0])


def prompt_tps(engine: LlamaCppEngine, n_tokens: int) -> float:
    """Prompt processing speed: one fresh prefill of ``n_tokens`` tokens (n_batch chunks)."""
    llm = engine.llm
    words = (PROMPT + " ") * (n_tokens // 8 + 2)
    tokens = engine._tokens(words)[:n_tokens]

    def prefill() -> float:
        llm.reset()
        start = time.perf_counter()
        llm.eval(tokens)
        seconds = time.perf_counter() - start
        llm.reset()
        return seconds

    return n_tokens / engine.run(prefill)  # on the engine's compute thread, like its decoding


def single_sequence(engine: LlamaCppEngine, tokens: int, raw: bool = False) -> tuple[float, list[float], str]:
    """Greedy decode of one sequence: (decode tok/s, per-token timestamps, text).

    ``raw`` continues the prompt as plain text, for base models without a chat template.
    """
    clock = _Clock()
    prompt = PROMPT if raw else engine.render_chat([{"role": "user", "content": PROMPT}])
    gen = engine.generate([prompt], SamplingParams(max_tokens=tokens, ignore_eos=True), cancel=clock)[0]
    return decode_tps(clock.times), clock.times, gen.text


def speed_by_length(times: list[float], window: int = 128) -> list[dict[str, float]]:
    """tokens/s in consecutive windows of generated tokens: does decoding slow as the trace grows?"""
    out = []
    for lo in range(0, len(times) - window, window):
        out.append({"tokens": lo + window, "tok_s": round(window / (times[lo + window] - times[lo]), 2)})
    return out


def batch_run(engine: LlamaCppEngine, batch: int, tokens: int) -> tuple[float, str]:
    """``batch`` greedy copies of one prompt decoded together: (aggregate decode tok/s, first copy's text)."""
    clock = _Clock()
    prompt = engine.render_chat([{"role": "user", "content": PROMPT}])
    gens = engine.generate([prompt], SamplingParams(n=batch, max_tokens=tokens, ignore_eos=True), cancel=clock)
    return decode_tps(clock.times), gens[0].text


def first_difference(engine: LlamaCppEngine, a: str, b: str) -> int | None:
    """Index of the first generated token where two texts part (None if equal)."""
    if a == b:
        return None
    i = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return engine.count_tokens(a[:i])


def find_llama_server() -> Path | None:
    """llama.cpp's ``llama-server``: $REASONLAB_LLAMA_SERVER, what ``make llama-server`` built, or on PATH."""
    import os
    import shutil

    for cand in (os.environ.get("REASONLAB_LLAMA_SERVER"), ".cache/llama-server/llama-server",
                 shutil.which("llama-server")):
        if cand and Path(cand).is_file():
            return Path(cand)
    return None


def start_server(kind: str, model_path: Path, threads: int, port: int, slots: int = 8) -> subprocess.Popen:
    """A local OpenAI-compatible server on 127.0.0.1: llama.cpp's ``llama-server`` (continuous batching over
    ``slots``) or llama-cpp-python's (one request at a time; needs reasonlab[server])."""
    import importlib.util

    import httpx

    if kind == "llama-server":
        binary = find_llama_server()
        if binary is None:
            raise RuntimeError("llama-server not found: `make llama-server` builds it")
        cmd = [str(binary), "-m", str(model_path), "--host", "127.0.0.1", "--port", str(port), "-t", str(threads),
               "-np", str(slots), "-c", str(1024 * slots), "--no-webui"]
    else:
        if importlib.util.find_spec("uvicorn") is None or importlib.util.find_spec("fastapi") is None:
            raise RuntimeError("the local server needs llama-cpp-python's server extra: pip install 'reasonlab[server]'")
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(model_path), "--host", "127.0.0.1",
               "--port", str(port), "--n_threads", str(threads), "--n_ctx", "4096"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{kind} exited at start")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"{kind} did not start in 120 s")


def server_throughput(url: str, concurrency: int, tokens: int) -> dict[str, Any]:
    """``concurrency`` requests in flight against a live server: aggregate generated tokens/s."""
    from reasonlab.engines.openai import OpenAIEngine

    eng = OpenAIEngine(url, concurrency=concurrency)
    prompts = [f"{PROMPT} (variant {k})" for k in range(concurrency)]
    start = time.perf_counter()
    gens = eng.generate(prompts, SamplingParams(max_tokens=tokens, ignore_eos=True))
    seconds = time.perf_counter() - start
    eng.close()
    total = sum(g.completion_tokens for g in gens)
    return {"concurrency": concurrency, "tokens": total, "seconds": round(seconds, 2),
            "tok_s": round(total / seconds, 2)}


QUESTIONS = ("What is 17 * 23? Show your work.", "How many primes are there below 50?",
             "What is the sum of the interior angles of a hexagon?", "Solve 3x + 7 = 31 for x.")


def prefix_workload(engine: LlamaCppEngine, shape: str, tokens: int = 48) -> dict[str, Any]:
    """A multi-call workload on a batched engine: "tir" (four problems at once: generate, inject a tool's
    output, continue — four rounds) or "branch" (a stem per problem, then four children that continue it,
    then four grandchildren each). Counts prompt tokens evaluated vs served from the prefix cache."""
    params = SamplingParams(temperature=0.0, max_tokens=tokens, ignore_eos=True)
    prompts = [engine.render_chat([{"role": "user", "content": q}]) for q in QUESTIONS]
    gens: list[Any] = []
    start = time.perf_counter()
    if shape == "tir":
        texts = [""] * len(prompts)
        for _ in range(4):
            out = engine.generate([p + t for p, t in zip(prompts, texts)], params)
            gens += out
            texts = [t + g.text + "\n```output\n42\n```\n" for t, g in zip(texts, out)]
    else:
        stems = engine.generate(prompts, params)
        gens += stems
        level = [p + g.text for p, g in zip(prompts, stems)]
        for cue in ("\n\nLet me verify this another way.", "\n\nAlternatively,"):
            kids = [f"{node}{cue} ({k})" for node in level for k in range(4)][:16]
            out = engine.generate(kids, params)
            gens += out
            level = [k + g.text for k, g in zip(kids, out)][:4]
    seconds = time.perf_counter() - start
    generated = sum(g.completion_tokens for g in gens)
    cached = sum(g.cached_tokens for g in gens)
    prefilled = sum(g.prefilled_tokens for g in gens)
    return {"shape": shape, "calls": len(gens), "prefilled": prefilled, "cached": cached, "generated": generated,
            "seconds": round(seconds, 2), "tok_s": round(generated / seconds, 2)}
