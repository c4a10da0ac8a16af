"""Generation backends behind one seam (see ``base.Engine``), found through a lazy registry.

    >>> cfg = EngineConfig(model="smollm2-135m")
    >>> resolve(cfg)[0]
    'llamacpp'
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from reasonlab.engines.base import Engine, Generation, Message, Prompt, SamplingParams
from reasonlab.engines.models import ALIASES, DEFAULT_MODEL, MODELS, ensure
from reasonlab.errors import ModelError
from reasonlab.registry import Registry, did_you_mean

ENGINES: Registry[type[Engine]] = Registry("engine")
ENGINES.register("llamacpp", "reasonlab.engines.llamacpp:LlamaCppEngine")
ENGINES.register("hf", "reasonlab.engines.hf:HFEngine")
ENGINES.register("openai", "reasonlab.engines.openai:OpenAIEngine")

EngineName = Literal["auto", "llamacpp", "hf", "openai"]
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


class EngineConfig(BaseModel):
    """Which model, on which backend, with which backend options."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(DEFAULT_MODEL, description="registered name, .gguf path, HF directory, hub id, or server URL")
    engine: EngineName = Field("auto", description="backend; auto picks from the model string")
    base_url: str | None = Field(None, description="openai: server URL, e.g. http://127.0.0.1:8000/v1")
    n_ctx: int = Field(4096, ge=256, description="llamacpp: context window in tokens")
    n_threads: int | None = Field(None, ge=1, description="llamacpp: CPU threads; default all usable cores")
    n_parallel: int = Field(1, ge=1, le=256, description="llamacpp: sequences decoded together in one batch; "
                            "1 = one at a time (reproducible); >1 also batches problems run concurrently")
    flash_attn: bool = Field(True, description="llamacpp: flash attention (measured +5-8 % batched, neutral for one "
                             "sequence); both contexts alike so a batch of one reproduces the sequential path")
    prefix_cache: bool = Field(True, description="llamacpp, batched: keep finished sequences' KV cells (LRU) so a "
                               "later job sharing a prefix prefills only the rest")
    kv_shift: bool = Field(False, description="llamacpp, batched: a prompt that is a cached sequence with one span "
                           "cut out (hcot's prune) reuses the cells after the cut by shifting their positions "
                           "instead of prefilling them")
    gguf_file: str = Field("*q4_k_m.gguf", description="llamacpp from a hub repo: filename pattern to fetch")
    concurrency: int = Field(8, ge=1, description="openai: requests in flight at once")
    timeout_s: float = Field(600.0, gt=0, description="openai: per-request timeout in seconds")
    max_retries: int = Field(4, ge=0, description="openai: retries after 429/5xx/connection errors")
    tokenizer: str | None = Field(None, description="openai: the served model's tokenizer (hub id, HF dir, .gguf, "
                                  "registered name) for chat templates and token counts the server cannot do")
    lora: str | None = Field(None, description="llamacpp, hf: a LoRA adapter (.gguf, peft adapter directory or "
                             "training run directory) applied on the base; part of the run's identity")
    lora_scale: float = Field(1.0, description="llamacpp: the adapter's weight")
    batch_size: int = Field(8, ge=1, description="hf: prompts decoded together")
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="hf: weight dtype")


def resolve(cfg: EngineConfig) -> tuple[str, str]:
    """(backend, what it loads) for a config, without loading anything heavy."""
    model = cfg.model
    if cfg.engine == "openai" or model.startswith(("http://", "https://")):
        return "openai", model
    if cfg.engine != "auto":
        if cfg.engine not in ENGINES:
            raise did_you_mean("engine", cfg.engine, ENGINES.names())
        return cfg.engine, model
    if model in MODELS or model in ALIASES:
        return "llamacpp", model
    path = Path(model).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return "llamacpp", str(path)
    if path.is_dir():
        return "hf", str(path)
    if path.suffix == ".gguf" or "/" in model and not _HUB_ID.match(model):
        raise ModelError(f"model file not found: {model}")
    if _HUB_ID.match(model):
        return ("llamacpp" if "gguf" in model.lower() else "hf"), model
    raise did_you_mean("model", model, list(MODELS) + list(ALIASES))


def _gguf_from_hub(repo_id: str, pattern: str) -> Path:
    try:
        from huggingface_hub import hf_hub_download, list_repo_files

        names = [f for f in list_repo_files(repo_id) if fnmatch.fnmatch(f.lower(), pattern.lower())]
        if not names:
            raise ModelError(f"hub repo {repo_id} has no file matching {pattern}")
        return Path(hf_hub_download(repo_id, sorted(names)[0]))
    except ImportError as err:
        raise ModelError("fetching a GGUF from the hub needs huggingface_hub: pip install huggingface_hub") from err
    except ModelError:
        raise
    except Exception as err:  # no network, no such repo, gated: all one answer for the user
        raise ModelError(f"could not fetch '{repo_id}' from the hub: {type(err).__name__}: {err}") from err


def gguf_file(cfg: EngineConfig | str) -> tuple[Path, str]:
    """(the .gguf file, its display name) for a llama.cpp model: a registered name (installed on first use),
    a path, or a hub repo of GGUF files. ModelError for anything else (an HF directory or hub id)."""
    cfg = cfg if isinstance(cfg, EngineConfig) else EngineConfig(model=cfg)
    backend, target = resolve(cfg)
    if backend != "llamacpp":
        raise ModelError(f"{cfg.model} is not a GGUF model")
    if target in MODELS or target in ALIASES:
        return ensure(target), ALIASES.get(target, target)
    if Path(target).expanduser().exists():
        return Path(target).expanduser(), Path(target).name
    return _gguf_from_hub(target, cfg.gguf_file), target


def load_engine(model: str | EngineConfig = DEFAULT_MODEL, **options: Any) -> Engine:
    """Load a backend for ``model`` (a string or an ``EngineConfig``); options override config fields.

    >>> eng = load_engine("smollm2-135m")                   # doctest: +SKIP
    >>> eng = load_engine("http://127.0.0.1:8000/v1")       # doctest: +SKIP
    """
    cfg = model if isinstance(model, EngineConfig) else EngineConfig(model=model, **options)
    if isinstance(model, EngineConfig) and options:
        cfg = cfg.model_copy(update=options)
    backend, target = resolve(cfg)
    cls = ENGINES.get(backend)
    if backend == "llamacpp":
        path, name = gguf_file(cfg)
        return cls(path, n_ctx=cfg.n_ctx, n_threads=cfg.n_threads, name=name, n_parallel=cfg.n_parallel,
                   flash_attn=cfg.flash_attn, prefix_cache=cfg.prefix_cache, lora=cfg.lora, lora_scale=cfg.lora_scale,
                   kv_shift=cfg.kv_shift)
    if backend == "hf":
        return cls(target, batch_size=cfg.batch_size, dtype=cfg.dtype, lora=cfg.lora)
    if cfg.lora is not None:
        raise ModelError("a server applies its own adapters (vLLM: --lora-modules, then --model the adapter's name)")
    base_url = cfg.base_url or (target if target.startswith(("http://", "https://")) else None)
    if base_url is None:
        raise ModelError("the openai engine needs a server: --base-url http://HOST:PORT/v1")
    served = None if target == base_url else target
    return cls(base_url, model=served, concurrency=cfg.concurrency, timeout_s=cfg.timeout_s,
               max_retries=cfg.max_retries, tokenizer=cfg.tokenizer)


__all__ = ["ENGINES", "Engine", "EngineConfig", "Generation", "Message", "Prompt", "SamplingParams", "gguf_file",
           "load_engine", "resolve"]
