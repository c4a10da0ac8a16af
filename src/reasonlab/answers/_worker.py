"""math-verify in a child process: one JSON request per line on stdin, one JSON reply per line on the
private pipe whose fd is the first argument (stdout is left to whatever sympy or latex2sympy print).

It runs math-verify with its signal-based timeouts switched off (they only work on a main thread);
the parent enforces the wall-clock limit by killing this process, which nothing inside sympy can block.
"""

from __future__ import annotations

import json
import os
import resource
import sys


def wrap(text: str) -> str:
    """A text with math delimiters of its own goes to math-verify as written; a bare answer is one formula."""
    from reasonlab.answers.verify import has_delimiters

    return text if has_delimiters(text) else f"${text}$"


def main() -> None:
    # a runaway simplification gets MemoryError here instead of eating the machine
    limit = 2 << 30
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from math_verify import parse, verify

    out = os.fdopen(int(sys.argv[1]), "w", buffering=1, encoding="utf-8")
    out.write('{"ready": true}\n')
    for line in sys.stdin:
        req = json.loads(line)
        try:
            gold = parse(wrap(req["gold"]), parsing_timeout=None)
            pred = parse(wrap(req["pred"]), parsing_timeout=None)
            ok = bool(gold) and bool(pred) and bool(verify(gold, pred, timeout_seconds=None))
            reply = {"ok": ok}
        except Exception as err:  # a parse failure is a "not equivalent", reported for debugging
            reply = {"ok": False, "error": f"{type(err).__name__}: {err}"[:200]}
        out.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    main()
