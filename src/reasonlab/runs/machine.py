"""Which machine a run or a benchmark ran on: speeds compare only within one machine kind (an AMD EPYC here decodes
~1.8x an Intel Xeon), and batched greedy decoding differs a little between them, so run records and benchmark
figures both say which CPU they came from. The one reader of /proc/cpuinfo.

    >>> from reasonlab.runs.machine import cpu_info
    >>> cpu_info()["cores"] >= 1
    True
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

# SIMD extensions that decide which llama.cpp kernels run (AMX: Intel Xeon 4th gen and later), and whether torch's
# bf16 matmuls run in hardware (avx512_bf16: AMD Zen 4 and later, Intel Cooper Lake; amx_bf16)
_SIMD = {"avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8",
         "amx_bf16"}


def cpu_info() -> dict[str, Any]:
    """Cores this process may use, the CPU model and its SIMD flags (from /proc/cpuinfo where present)."""
    info: dict[str, Any] = {"cores": len(os.sched_getaffinity(0)), "machine": platform.machine(),
                            "model": platform.processor() or platform.machine()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    found_model = False
    for line in text.splitlines():
        if line.startswith("model name") and not found_model:
            info["model"], found_model = line.split(":", 1)[1].strip(), True
        if line.startswith("flags"):
            info["simd"] = sorted(f for f in line.split(":", 1)[1].split() if f in _SIMD)
            break
    return info


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (avx512_bf16 or AMX): there torch's bf16 matmuls run ~4.4x its
    fp32 ones (885 vs 203 GFLOP/s on 2 cores of an AMD EPYC with avx512_bf16). Elsewhere bf16 goes through
    software conversion (not measured here), so auto stays fp32 there."""
    return bool({"avx512_bf16", "amx_bf16"} & set(cpu_info().get("simd", ())))


def bf16_precision(choice: str, device: str = "cpu") -> str:
    """A ``precision: auto | fp32 | bf16`` option resolved for ``device``: auto is bf16 where the hardware
    multiplies bf16 (a CUDA GPU that supports it, a CPU with avx512_bf16 or AMX), else fp32."""
    if choice != "auto":
        return choice
    if device.startswith("cuda"):
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_bf16() else "fp32"
