"""Does reasonlab's verifier decide as math-verify does? Pairs built from MATH-500 gold answers.

Three kinds of pair: each gold against itself, against itself stated inside a sentence ("The answer
is $…$."), and against another problem's gold (for false positives). The reference is
``math_verify.verify(parse(gold), parse(pred))`` with each side wrapped in ``$…$`` only when it has no
delimiters of its own. Prints the disagreements, their count, and the command:

    .venv/bin/python benchmarks/verifier_agreement.py --random 300
"""

from __future__ import annotations

import argparse
import random

from math_verify import parse, verify

from reasonlab.answers import Verifier
from reasonlab.answers.verify import has_delimiters
from reasonlab.data import DatasetConfig, load_problems


def wrap(text: str) -> str:
    return text if has_delimiters(text) else f"${text}$"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--random", type=int, default=300, help="cross pairs of different problems' golds")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    golds = [p.answer for p in load_problems(DatasetConfig(name="math500"))]
    rng = random.Random(args.seed)
    pairs = {"self": [(g, g) for g in golds],
             "in a sentence": [(g, f"The answer is ${g}$.") for g in golds],
             "mid-sentence": [(g, f"Therefore ${g}$ is the solution.") for g in golds],
             "cross": [(golds[i], golds[j]) for i, j in ((rng.randrange(len(golds)), rng.randrange(len(golds)))
                                                         for _ in range(args.random)) if golds[i] != golds[j]]}
    with Verifier() as v:
        for kind, rows in pairs.items():
            agree = both_true = 0
            for gold, pred in rows:
                ref = bool(verify(parse(wrap(gold)), parse(wrap(pred))))
                ours = v.check(pred, gold, "latex")[0]
                agree += ref == ours
                both_true += ref and ours
                if ref != ours:
                    print(f"  disagree ({kind}): math-verify={ref} reasonlab={ours} gold={gold!r} pred={pred!r}")
            print(f"{kind}: {agree}/{len(rows)} agree ({both_true} equivalent by both)")
    print(f"reproduce: .venv/bin/python benchmarks/verifier_agreement.py --random {args.random} --seed {args.seed}")


if __name__ == "__main__":
    main()
