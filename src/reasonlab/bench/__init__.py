"""``reasonlab bench``: tokens/s against model size, batch size, trace length and server concurrency,
each next to this machine's measured limit; and what a LoRA applied at run time costs against the base and a merged
file (the ``lora`` part). Writes bench.json and PNG plots.

    >>> BenchConfig().batch_sizes
    (1, 2, 4, 8, 16)
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from reasonlab.engines.models import DEFAULT_MODEL

Part = Literal["hardware", "models", "batch", "length", "server", "prefix", "lora"]


class BenchConfig(BaseModel):
    """What to measure. Defaults finish in a few minutes on 2 cores."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(DEFAULT_MODEL, description="model for the batch, length and server curves")
    models: tuple[str, ...] | None = Field(None, description="models for the size curve; default: every installed one")
    batch_sizes: tuple[int, ...] = Field((1, 2, 4, 8, 16), description="sequences decoded together")
    tokens: int = Field(128, ge=8, description="generated tokens per sequence (models and batch curves)")
    prefix_tokens: int = Field(48, ge=4, description="tokens per call in the prefix-cache workloads")
    length: int = Field(1024, ge=256, description="generated tokens of the single long trace (length curve)")
    prompt_tokens: int = Field(256, ge=16, description="prompt length for the prompt-processing figure")
    threads: int | None = Field(None, ge=1, description="CPU threads; default every usable core")
    server: str | None = Field(None, description="OpenAI-compatible URL; default: start each of `servers` locally")
    servers: tuple[Literal["llama-server", "llama-cpp-python"], ...] = Field(
        ("llama-server", "llama-cpp-python"), description="local servers for the server curve (127.0.0.1)")
    concurrency: tuple[int, ...] = Field((1, 2, 4, 8), description="requests in flight for the server curve")
    server_tokens: int = Field(64, ge=8, description="generated tokens per server request")
    lora: str | None = Field(None, description="lora part: the adapter (a .gguf LoRA, or a peft adapter / training "
                                               "run directory) applied at run time on `model`")
    merged: str | None = Field(None, description="lora part: the same adapter merged into one GGUF "
                                                 "(`reasonlab train export --merge`), measured beside it")
    parts: tuple[Part, ...] = Field(("hardware", "models", "batch", "length", "server", "prefix"),
                                    description="what to run (lora only when asked: it needs an adapter)")

    @model_validator(mode="after")
    def _lora_part_has_an_adapter(self) -> "BenchConfig":
        if ("lora" in self.parts) != (self.lora is not None):
            raise ValueError("the lora part and an adapter go together: --only ...,lora --lora PATH")
        if self.merged is not None and self.lora is None:
            raise ValueError("a merged file is measured beside its adapter: give --lora too")
        return self


def run_bench(cfg: BenchConfig, out: str | Path, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the selected measurements, write ``out/bench.json`` and plots, return the results."""
    from reasonlab.bench import hardware, measure, plots
    from reasonlab.engines.llamacpp import LlamaCppEngine
    from reasonlab.engines.models import MODELS, ensure, get_spec, status

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    threads = cfg.threads or len(os.sched_getaffinity(0))
    res: dict[str, Any] = {"config": cfg.model_dump(mode="json"), "threads": threads, "cpu": hardware.cpu_info(),
                           "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    bandwidth = None
    if "hardware" in cfg.parts:
        res["memory"] = hardware.memory_bandwidth()
        res["compute"] = hardware.gemm_peak()
        bandwidth = res["memory"]["best_gbs"]
        say(f"memory bandwidth {res['memory']['best_gbs']} GB/s best, {res['memory']['median_gbs']} median; "
            f"fp32 GEMM {res['compute']['fp32_gemm_gflops']} GFLOP/s")

    def bound(profile: hardware.ModelProfile) -> float | None:
        return bandwidth * 1e9 / profile.bytes_per_token if bandwidth else None

    if "models" in cfg.parts:
        names = cfg.models or tuple(n for n, s in MODELS.items() if status(s) != "absent")
        res["models"] = []
        for name in names:
            path = ensure(name)
            prof = hardware.gguf_profile(path)
            with LlamaCppEngine(path, n_threads=threads, name=name) as eng:
                pp = measure.prompt_tps(eng, cfg.prompt_tokens)
                tps, _, _ = measure.single_sequence(eng, cfg.tokens, raw=not get_spec(name).chat)
            b = bound(prof)
            row = {"model": name, "file_mb": round(prof.file_bytes / 1e6, 1),
                   "mb_per_token": round(prof.bytes_per_token / 1e6, 1), "prompt_tok_s": round(pp, 1),
                   "decode_tok_s": round(tps, 2), "bandwidth_bound_tok_s": round(b, 1) if b else None,
                   "achieved_over_bound": round(tps / b, 3) if b else None,
                   "gflops_per_token": round(prof.flops_per_token / 1e9, 3)}
            res["models"].append(row)
            say(f"{name}: {row['file_mb']} MB, prompt {row['prompt_tok_s']} tok/s, decode {row['decode_tok_s']} tok/s"
                + (f", {row['achieved_over_bound']:.2f} of the bandwidth bound ({row['bandwidth_bound_tok_s']})" if b else ""))

    main_path = ensure(cfg.model)
    main_prof = hardware.gguf_profile(main_path)
    if "length" in cfg.parts:
        with LlamaCppEngine(main_path, n_threads=threads, n_ctx=max(4096, cfg.length + 512), name=cfg.model) as eng:
            tps, times, _ = measure.single_sequence(eng, cfg.length)
        res["length"] = {"model": cfg.model, "tok_s": round(tps, 2), "windows": measure.speed_by_length(times)}
        w = res["length"]["windows"]
        say(f"length: {w[0]['tok_s']} tok/s over the first 128 tokens, {w[-1]['tok_s']} by token {w[-1]['tokens']}")

    if "prefix" in cfg.parts:  # the prefix cache on multi-call workloads, on vs off in one run
        rows = []
        for shape in ("tir", "branch"):
            for on in (False, True):
                with LlamaCppEngine(main_path, n_threads=threads, n_ctx=4096, n_parallel=16, n_ctx_batch=16384,
                                    prefix_cache=on, name=cfg.model) as eng:
                    rows.append({**measure.prefix_workload(eng, shape, tokens=cfg.prefix_tokens), "cache": on})
        for off, on in zip(rows[::2], rows[1::2]):
            on["prefilled_ratio"] = round(on["prefilled"] / max(1, off["prefilled"]), 3)
            on["speedup"] = round(on["tok_s"] / max(1e-9, off["tok_s"]), 2)
            say(f"prefix {on['shape']}: prefilled {off['prefilled']} -> {on['prefilled']} tokens "
                f"({on['prefilled_ratio']}x), {off['tok_s']} -> {on['tok_s']} tok/s ({on['speedup']}x)")
        res["prefix"] = {"model": cfg.model, "rows": rows}

    if "batch" in cfg.parts:
        rows = []
        with LlamaCppEngine(main_path, n_threads=threads, n_ctx=4096, name=cfg.model) as seq:
            seq_tps, _, seq_text = measure.single_sequence(seq, cfg.tokens)
        with LlamaCppEngine(main_path, n_threads=threads, n_ctx=4096, n_parallel=max(cfg.batch_sizes),
                            n_ctx_batch=max(cfg.batch_sizes) * (cfg.tokens + 256), name=cfg.model) as eng:
            for b in cfg.batch_sizes:
                tps, text = measure.batch_run(eng, b, cfg.tokens)
                rows.append({"batch": b, "tok_s": round(tps, 2), "per_sequence_tok_s": round(tps / b, 2),
                             "first_token_differing_from_sequential": measure.first_difference(eng, seq_text, text),
                             "gflops": round(tps * main_prof.flops_per_token / 1e9, 1)})
        base = rows[0]["tok_s"] if rows and rows[0]["batch"] == 1 else seq_tps
        for r in rows:
            r["speedup"] = round(r["tok_s"] / base, 2)
            if "compute" in res:
                r["of_gemm_peak"] = round(r["gflops"] / res["compute"]["fp32_gemm_gflops"], 3)
        res["batch"] = {"model": cfg.model, "sequential_tok_s": round(seq_tps, 2), "rows": rows}
        say("batch: " + ", ".join(f"{r['batch']}: {r['tok_s']} tok/s ({r['speedup']}x)" for r in rows))

    if "lora" in cfg.parts:  # the same batches with the adapter applied at run time, and merged into the weights
        rows, texts = [], {}
        variants = [("base", main_path, None), ("lora", main_path, cfg.lora)]
        if cfg.merged:
            variants.append(("merged", Path(cfg.merged), None))
        for kind, path, lora in variants:
            with LlamaCppEngine(path, n_threads=threads, n_ctx=4096, n_parallel=max(cfg.batch_sizes),
                                n_ctx_batch=max(cfg.batch_sizes) * (cfg.tokens + 256), lora=lora,
                                name=cfg.model if kind != "merged" else path.stem) as eng:
                for b in cfg.batch_sizes:
                    tps, text = measure.batch_run(eng, b, cfg.tokens)
                    texts.setdefault(kind, text)  # the smallest batch's greedy text: is the adapter applied?
                    rows.append({"weights": kind, "batch": b, "tok_s": round(tps, 2)})
                differs = None if kind == "base" else measure.first_difference(eng, texts["base"], texts[kind])
            for r in rows:
                if r["weights"] == kind:
                    r["first_token_differing_from_base"] = differs
        base_tps = {r["batch"]: r["tok_s"] for r in rows if r["weights"] == "base"}
        for r in rows:
            r["of_base"] = round(r["tok_s"] / max(1e-9, base_tps[r["batch"]]), 3)
        res["lora"] = {"model": cfg.model, "adapter": cfg.lora, "merged": cfg.merged, "rows": rows}
        for kind, _, _ in variants:
            say(f"lora, {kind}: " + ", ".join(f"{r['batch']}: {r['tok_s']} tok/s ({r['of_base']}x base)"
                                             for r in rows if r["weights"] == kind))

    if "server" in cfg.parts:
        res["server"] = {}
        for kind in ([cfg.server] if cfg.server else list(cfg.servers)):
            proc = None
            try:
                url = kind
                if not cfg.server:
                    with socket.socket() as sock:  # a free loopback port
                        sock.bind(("127.0.0.1", 0))
                        port = sock.getsockname()[1]
                    proc = measure.start_server(kind, main_path, threads, port, slots=max(cfg.concurrency))
                    url = f"http://127.0.0.1:{port}/v1"
                rows = [measure.server_throughput(url, c, cfg.server_tokens) for c in cfg.concurrency]
                res["server"][kind] = {"url": url, "rows": rows}
                say(f"server {kind}: " + ", ".join(f"{r['concurrency']}: {r['tok_s']} tok/s" for r in rows))
            except RuntimeError as err:
                res["server"][kind] = {"error": str(err)}
                say(f"server {kind}: skipped ({err})")
            finally:
                if proc is not None:
                    proc.terminate()
                    proc.wait(timeout=30)

    res["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    (out / "bench.json").write_text(json.dumps(res, indent=2) + "\n")
    res["plots"] = plots.draw(res, out)
    (out / "bench.json").write_text(json.dumps(res, indent=2) + "\n")
    return res
