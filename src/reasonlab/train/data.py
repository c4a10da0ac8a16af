"""Training rows from a JSON-lines file, checked before any training starts.

Each method accepts TRL's standard forms (``reasonlab datagen`` writes them):

- sft: prompt + completion | text | messages | input_ids (+ completion_mask: 1 where the loss applies)
- dpo: prompt + chosen + rejected | prompt_ids + chosen_ids + rejected_ids (token ids trained exactly as given:
  no end-of-sequence appended, nothing re-tokenised; pivotal-token pairs are one id each side)
- kto: prompt + completion + label
- reward: (prompt +) chosen + rejected (a scalar-head verifier: the chosen side must score higher)

Columns beyond the form (provenance, labels) are dropped before TRL sees them. A file with none of the forms,
a bad line, or no rows gets one line naming the file and what was expected. SFT rows with recorded token ids
(``input_ids``) are checked against the model's vocabulary — ids recorded with another model's tokenizer would
train on nonsense — and get the end-of-sequence token where the trace ended with one (``eos``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reasonlab.errors import DataError

FORMS: dict[str, tuple[tuple[str, ...], ...]] = {
    "sft": (("input_ids", "completion_mask"), ("input_ids",), ("prompt", "completion"), ("messages",), ("text",)),
    "dpo": (("prompt_ids", "chosen_ids", "rejected_ids"), ("prompt", "chosen", "rejected")),
    "kto": (("prompt", "completion", "label"),),
    "reward": (("prompt", "chosen", "rejected"), ("chosen", "rejected")),
}


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"dataset file not found: {path}")
    rows = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as err:
                raise DataError(f"{path}:{lineno}: not JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{lineno}: a row must be a JSON object")
            rows.append(row)
    if not rows:
        raise DataError(f"{path} holds no rows")
    return rows


def form_of(rows: list[dict[str, Any]], method: str, where: str) -> tuple[str, ...]:
    """The first of the method's forms every row has."""
    for form in FORMS[method]:
        if all(all(c in r for c in form) for r in rows):
            return form
    expected = " | ".join(" + ".join(f) for f in FORMS[method])
    raise DataError(f"{where}: {method} rows need the columns {expected}; the first row has "
                    f"{', '.join(sorted(rows[0])) or 'none'}")


def load_rows(path: str | Path, method: str, tokenizer: Any = None) -> Any:
    """The rows of ``path`` as a ``datasets.Dataset`` in the method's form."""
    from datasets import Dataset

    rows = read_rows(path)
    form = form_of(rows, method, str(path))
    if "input_ids" in form:
        rows = [_with_eos(r, tokenizer) for r in rows]
        _check_vocab(rows, tokenizer, str(path))
        form = ("input_ids", "completion_mask")
    if "prompt_ids" in form:
        _check_pair_ids(rows, tokenizer, str(path))
    if method == "kto":
        labels = {bool(r["label"]) for r in rows}
        if len(labels) < 2:
            raise DataError(f"{path}: kto needs desirable and undesirable rows (label true and false); all are "
                            f"{labels.pop()}")
    return Dataset.from_list([{c: r[c] for c in form} for r in rows])


def _with_eos(row: dict[str, Any], tokenizer: Any) -> dict[str, Any]:
    ids = list(row["input_ids"])
    mask = list(row.get("completion_mask") or [1] * len(ids))
    if len(mask) != len(ids):
        raise DataError(f"a row's completion_mask has {len(mask)} entries for {len(ids)} input_ids")
    if row.get("eos") and tokenizer is not None and tokenizer.eos_token_id is not None:
        ids, mask = ids + [tokenizer.eos_token_id], mask + [1]  # ending the answer is learned too
    return {**row, "input_ids": ids, "completion_mask": mask}


def _check_vocab(rows: list[dict[str, Any]], tokenizer: Any, where: str) -> None:
    if tokenizer is None:
        return
    size = len(tokenizer)
    top = max(max(r["input_ids"]) for r in rows)
    first = rows[0]
    prompt_len = first["completion_mask"].index(1) if 1 in first["completion_mask"] else 0
    head = first["input_ids"][:prompt_len]
    if head and head[0] == tokenizer.bos_token_id and not str(first.get("prompt", "")).startswith(
            str(tokenizer.bos_token)):
        head = head[1:]  # llama.cpp adds BOS itself; the recorded prompt text does not hold it
    spelled = tokenizer.decode(head) if head else ""
    if top >= size or ("prompt" in first and isinstance(first["prompt"], str) and spelled != first["prompt"]):
        raise DataError(f"{where}: its token ids were recorded with another vocabulary than this model's "
                        f"(ids up to {top}, vocabulary {size}; the first prompt decodes differently): train the "
                        f"model the run evaluated, or regenerate the file with `reasonlab datagen --no-token-ids`")


def _check_pair_ids(rows: list[dict[str, Any]], tokenizer: Any, where: str) -> None:
    """Token-id pairs: non-empty sides, ids inside the model's vocabulary."""
    for i, r in enumerate(rows, 1):
        if not r["prompt_ids"] or not r["chosen_ids"] or not r["rejected_ids"]:
            raise DataError(f"{where}: row {i} has an empty prompt_ids, chosen_ids or rejected_ids")
    if tokenizer is None:
        return
    top = max(max(r["prompt_ids"] + r["chosen_ids"] + r["rejected_ids"]) for r in rows)
    if top >= len(tokenizer):
        raise DataError(f"{where}: token ids up to {top} but the model's vocabulary has {len(tokenizer)}: the pairs "
                        f"were made with another model")
