"""Sandbox latency: a warm worker against a cold `python -c`, for the smallest cell.

    python benchmarks/sandbox.py            # 300 warm runs, 20 cold runs
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

from reasonlab.sandbox import PythonSandbox


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warm", type=int, default=300)
    ap.add_argument("--cold", type=int, default=20)
    args = ap.parse_args()

    start = time.perf_counter()
    sb = PythonSandbox(timeout_s=10)
    startup = time.perf_counter() - start
    for _ in range(10):  # warm the path
        sb.run("print(1 + 1)")
    warm = []
    for _ in range(args.warm):
        t = time.perf_counter()
        res = sb.run("print(1 + 1)")
        warm.append(time.perf_counter() - t)
        assert res.stdout == "2\n"
    t = time.perf_counter()
    sb.run("import sympy\nprint(sympy.factorint(2**32 + 1))")
    sympy_cell = time.perf_counter() - t
    t = time.perf_counter()
    sb.reset()
    reset = time.perf_counter() - t
    sb.close()

    cold = []
    for _ in range(args.cold):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "print(1 + 1)"], capture_output=True, check=True)
        cold.append(time.perf_counter() - t)
    cold_sympy = []
    for _ in range(3):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import sympy; print(sympy.factorint(2**32 + 1))"], capture_output=True,
                       check=True)
        cold_sympy.append(time.perf_counter() - t)

    w, c = statistics.median(warm), statistics.median(cold)
    print(f"warm sandbox, print(1+1): median {w * 1e3:.2f} ms, p90 {sorted(warm)[int(0.9 * len(warm))] * 1e3:.2f} ms "
          f"({args.warm} runs)   (target <= 5 ms)")
    print(f"cold python -c, print(1+1): median {c * 1e3:.1f} ms ({args.cold} runs)")
    print(f"speed-up: {c / w:.0f}x   (target >= 20x)")
    print(f"a sympy cell: warm {sympy_cell * 1e3:.1f} ms vs cold python -c {statistics.median(cold_sympy) * 1e3:.0f} ms")
    print(f"worker start (imports numpy+sympy, locks down): {startup:.2f} s; reset between traces: {reset * 1e3:.1f} ms")
    print("command: " + " ".join([os.path.basename(sys.executable), *sys.argv]))


if __name__ == "__main__":
    main()
