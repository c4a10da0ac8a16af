"""How long an interrupted run takes to exit with problems in flight (issue: reliability, part 3).

Starts ``reasonlab eval --parallel 4`` in a child process, waits until it has stored ``--after``
results (so four problems are mid-generation), sends SIGINT or SIGTERM, and times signal -> exit.
Prints each trial and the command that reproduces it:

    .venv/bin/python benchmarks/interrupt.py --model qwen2.5-coder-0.5b --trials 3
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def trial(model: str, sig: int, after: int, parallel: int) -> tuple[float, int]:
    run = Path(tempfile.mkdtemp()) / "run"
    cmd = [sys.executable, "-m", "reasonlab.cli", "eval", "-d", "gsm8k", "-n", "40", "-m", model,
           "--parallel", str(parallel), "--max-tokens", "400", "-o", str(run), "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    results = run / "results.jsonl"
    while not (results.exists() and results.read_text().count("\n") >= after):
        if proc.poll() is not None:
            raise SystemExit("eval ended before the signal")
        time.sleep(0.02)
    t0 = time.perf_counter()
    proc.send_signal(sig)
    proc.wait()
    latency = time.perf_counter() - t0
    kept = [json.loads(x)["id"] for x in results.read_text().splitlines()]
    assert len(kept) == len(set(kept)), "a problem was stored twice"
    return latency, len(kept)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--after", type=int, default=2, help="results stored before the signal")
    ap.add_argument("--parallel", type=int, default=4)
    args = ap.parse_args()
    for name, sig in (("SIGINT", signal.SIGINT), ("SIGTERM", signal.SIGTERM)):
        lat = []
        for k in range(args.trials):
            secs, kept = trial(args.model, sig, args.after, args.parallel)
            lat.append(secs)
            print(f"{name} trial {k}: exit {secs:.2f} s after the signal, {kept} problems stored")
        print(f"{name}: median {statistics.median(lat):.2f} s, max {max(lat):.2f} s over {args.trials} trials")
    print(f"reproduce: .venv/bin/python benchmarks/interrupt.py --model {args.model} --trials {args.trials} "
          f"--parallel {args.parallel}")


if __name__ == "__main__":
    main()
