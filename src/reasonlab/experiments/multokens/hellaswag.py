"""HellaSwag the way build-nanogpt scores it (Karpathy-compatible numbers: GPT-2 124M gets acc 0.2859 and
acc_norm 0.2955): completion style — the context, then each of the four endings after a space — through the engine
seam's log-likelihood scoring (lm-eval's ``loglikelihood``); ``acc`` picks the ending with the lowest summed loss
over its tokens, ``acc_norm`` the lowest mean loss per ending token.

Data: a JSONL file with ``ctx``, ``endings`` (4) and ``label`` (build-nanogpt's hellaswag_val.jsonl, or the HF
dataset's rows), or an HF dataset id (``Rowan/hellaswag``, split validation). This machine has neither: the tests
score a small authored file in the same format.

    >>> pick([(-4.0, 4), (-3.0, 2), (-3.5, 1), (-9.0, 4)])  # (summed log p, tokens) per ending
    (1, 0)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from reasonlab.errors import DataError


def load_items(source: str, limit: int | None = None) -> list[dict[str, Any]]:
    path = Path(source)
    if path.is_file():
        rows = []
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                row = json.loads(line)
                if not {"ctx", "endings", "label"} <= set(row) or len(row["endings"]) < 2:
                    raise DataError(f"{path}:{lineno}: a HellaSwag row needs ctx, endings (>= 2) and label")
                rows.append(row)
    else:
        try:
            from datasets import load_dataset

            rows = list(load_dataset(source, split="validation"))
        except Exception as err:  # noqa: BLE001 - one line naming the source
            raise DataError(f"hellaswag {source!r}: not a file, and not loadable as an HF dataset ({err})") from None
    return rows[:limit] if limit else rows


def pick(scores: list[tuple[float, int]]) -> tuple[int, int]:
    """(acc choice, acc_norm choice): lowest summed loss, lowest mean loss per token."""
    total = min(range(len(scores)), key=lambda i: -scores[i][0])
    mean = min(range(len(scores)), key=lambda i: -scores[i][0] / max(1, scores[i][1]))
    return total, mean


def evaluate(engine: Any, items: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """acc and acc_norm of ``engine`` (any reasonlab engine with ``loglikelihood`` and ``tokenize``)."""
    n = right = right_norm = 0
    for row in items:
        endings = [" " + e for e in row["endings"]]
        scored = engine.loglikelihood([(row["ctx"], e) for e in endings])
        counts = [len(engine.tokenize(e)) for e in endings]
        total, mean = pick([(lp, c) for (lp, _), c in zip(scored, counts)])
        label = int(row["label"])
        n += 1
        right += total == label
        right_norm += mean == label
    if n == 0:
        raise DataError("hellaswag: no items")
    return {"n": n, "acc": right / n, "acc_norm": right_norm / n}
