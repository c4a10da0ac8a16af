"""What this machine can do at best, and what a model asks of it per token.

Decoding one sequence reads every weight the token passes through once, so memory bandwidth divided
by the bytes read per token bounds single-sequence tokens/s. Batched decoding reuses each weight
for many sequences, which moves the bound to compute: FLOPs per token x tokens/s against the cores'
peak. Both are measured here, not taken from a datasheet (these virtual machines are noisy).

    >>> from reasonlab.bench.hardware import cpu_info   # the CPU itself: reasonlab.runs.machine
    >>> cpu_info()["cores"] >= 1
    True
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from reasonlab.runs.machine import cpu_info  # noqa: F401  (re-exported: bench figures name their CPU)


def memory_bandwidth(mb: int = 256, repeats: int = 7, threads: int | None = None) -> dict[str, float]:
    """Streaming copy bandwidth in GB/s (bytes read + written), all cores copying their own buffers.

    numpy's copy releases the GIL, so one Python thread per core streams in parallel. Best and median
    of ``repeats`` runs: the best is what the memory system can give; the median what it usually does.
    """
    threads = threads or len(os.sched_getaffinity(0))
    n = mb * (1 << 20) // 8 // threads
    bufs = [(np.ones(n), np.empty(n)) for _ in range(threads)]
    rates = []
    for _ in range(repeats):
        barrier = threading.Barrier(threads + 1)

        def work(src: np.ndarray, dst: np.ndarray) -> None:
            barrier.wait()
            np.copyto(dst, src)

        workers = [threading.Thread(target=work, args=b) for b in bufs]
        for w in workers:
            w.start()
        barrier.wait()
        start = time.perf_counter()
        for w in workers:
            w.join()
        rates.append(2 * n * 8 * threads / (time.perf_counter() - start) / 1e9)
    return {"best_gbs": round(max(rates), 2), "median_gbs": round(float(np.median(rates)), 2), "buffer_mb": mb}


def _best_gflops(multiply: Callable[[], Any], n: int, repeats: int) -> float:
    multiply()  # warm up the threads
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        multiply()
        best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return round(best, 1)


def gemm_peak(n: int = 1536, repeats: int = 5) -> dict[str, float]:
    """fp32 matrix-multiply GFLOP/s through numpy's BLAS on every core: a practical compute ceiling.

    llama.cpp multiplies quantised weights with int8/fp16 kernels whose peak differs; this is the
    yardstick a reader can reproduce, stated as such, not the silicon's theoretical number.
    """
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    return {"fp32_gemm_gflops": _best_gflops(lambda: a @ b, n, repeats), "n": n}


def torch_gemm_peak(dtype: str = "float32", n: int = 1536, repeats: int = 5) -> float:
    """GFLOP/s of torch's n x n matmul in ``dtype`` on this process's threads: training's ceiling (bfloat16 runs
    ~4.4x float32 on a CPU with avx512_bf16)."""
    import torch

    a, b = (torch.randn(n, n).to(getattr(torch, dtype)) for _ in range(2))
    return _best_gflops(lambda: a @ b, n, repeats)


@dataclass(frozen=True)
class ModelProfile:
    """What decoding one token of a GGUF model reads and computes."""

    file_bytes: int
    tensor_bytes: int
    bytes_per_token: int  # weights streamed per decoded token (a separate embedding table is only gathered)
    params: int
    matmul_params: int  # weights multiplied per token
    flops_per_token: int  # 2 x matmul_params (attention over the context is extra, small at these lengths)
    embedding_gathered: bool  # False when the output layer reuses (reads all of) the embedding table


def gguf_profile(path: str | Path) -> ModelProfile:
    """Read tensor sizes from a GGUF file's header (no weights are loaded)."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    tensors = {t.name: (int(t.n_bytes), int(t.n_elements)) for t in reader.tensors}
    total_bytes = sum(b for b, _ in tensors.values())
    params = sum(e for _, e in tensors.values())
    embd_bytes, embd_params = tensors.get("token_embd.weight", (0, 0))
    separate_output = "output.weight" in tensors
    # with a separate output matrix the embedding table is only gathered (one row per token);
    # tied embeddings are the output matrix too and are read in full every token
    per_token = total_bytes - embd_bytes if separate_output else total_bytes
    matmul = params - embd_params if separate_output else params
    return ModelProfile(file_bytes=Path(path).stat().st_size, tensor_bytes=total_bytes, bytes_per_token=per_token,
                        params=params, matmul_params=matmul, flops_per_token=2 * matmul,
                        embedding_gathered=separate_output)
