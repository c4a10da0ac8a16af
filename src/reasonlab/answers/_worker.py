"""math-verify in a child process: one JSON request per line in, one JSON reply per line out.

It runs math-verify with its signal-based timeouts switched off (they only work on a main thread);
the parent enforces the wall-clock limit by killing this process, which nothing inside sympy can block.
"""

from __future__ import annotations

import json
import resource
import sys


def main() -> None:
    # a runaway simplification gets MemoryError here instead of eating the machine
    limit = 2 << 30
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from math_verify import parse, verify

    sys.stdout.write('{"ready": true}\n')
    sys.stdout.flush()
    for line in sys.stdin:
        req = json.loads(line)
        try:
            gold = parse(f"${req['gold']}$", parsing_timeout=None)
            pred = parse(f"${req['pred']}$", parsing_timeout=None)
            ok = bool(gold) and bool(pred) and bool(verify(gold, pred, timeout_seconds=None))
            reply = {"ok": ok}
        except Exception as err:  # a parse failure is a "not equivalent", reported for debugging
            reply = {"ok": False, "error": f"{type(err).__name__}: {err}"[:200]}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
