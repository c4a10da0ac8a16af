"""Training on hierarchical chains of thought, prune-aware (the notebook's final method): every example is split
into stages at its ``[RETURN]``s, and each stage is a row whose context is what the model will really see at that
point of generation — the blocks returned before it pruned (``strategies.hcot_format.stages``) — with the loss on
that stage's own tokens only. So each token is trained once, with the context it will have when ``hcot`` decodes.

    reasonlab datagen hcot -d gsm8k-train -n 2000 -o data/hcot.jsonl
    reasonlab train sft -c recipes/train/hcot.yaml            # sft.hcot: stages; the markers added and seeded

The markers are added to the model first (``train.tokens.add_tokens``: seeded rows; on Qwen2.5 the ids of the
GGUF's spare slots, so ``reasonlab train add-tokens`` gives llama.cpp the same vocabulary). Rows are the
prompt/completion rows ``datagen hcot`` writes (conversational, rendered with the model's chat template, ending in
its end-of-turn token) or text; the stage rows go to TRL's SFT as ``input_ids`` + ``completion_mask``.
"""

from __future__ import annotations

from typing import Any

from reasonlab.errors import DataError
from reasonlab.strategies.hcot_format import RETURN, SOLUTION, THOUGHT, find_blocks, id_kind, stages


def example_ids(row: dict[str, Any], tok: Any) -> tuple[list[int], int]:
    """(ids of prompt + completion, how many are the prompt) for a prompt/completion row."""
    prompt, completion = row["prompt"], row["completion"]
    if isinstance(prompt, list):  # conversational: the chat template renders both, the completion ends its turn
        head = tok.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
        whole = tok.apply_chat_template(prompt + completion, tokenize=False)
    else:
        head, whole = prompt, prompt + completion + (tok.eos_token or "")
    if not whole.startswith(head):
        raise DataError("the chat template renders the prompt differently inside the whole conversation")
    ids_head = tok(head, add_special_tokens=False)["input_ids"]
    ids = tok(whole, add_special_tokens=False)["input_ids"]
    if ids[: len(ids_head)] != ids_head:  # a token merging across the boundary: keep the prompt's own ids
        ids = ids_head + tok(whole[len(head):], add_special_tokens=False)["input_ids"]
    return ids, len(ids_head)


def stage_rows(rows: list[dict[str, Any]], tok: Any, max_length: int | None = None) -> tuple[list[dict[str, Any]],
                                                                                             dict[str, int]]:
    """One row per stage of each example: ``input_ids`` (kept ids) and ``completion_mask`` (1 on the stage's own
    completion tokens); (rows, counts: examples, stages, too long, malformed)."""
    ids_of = {m: tok.convert_tokens_to_ids(m) for m in (THOUGHT, SOLUTION, RETURN)}
    if any(i is None or i == tok.unk_token_id for i in ids_of.values()):
        raise DataError("the tokenizer lacks the hCoT markers: add them first (train.tokens.add_tokens)")
    kind = id_kind(ids_of[THOUGHT], ids_of[SOLUTION], ids_of[RETURN])
    out, counts = [], {"examples": len(rows), "stages": 0, "too_long": 0, "malformed": 0}
    for row in rows:
        ids, n_prompt = example_ids(row, tok)
        parse = find_blocks(ids[n_prompt:], kind)
        if parse.problems:
            counts["malformed"] += 1
            continue
        blocks = [type(b)(b.thought + n_prompt, b.solution + n_prompt, b.ret + n_prompt, b.depth) for b in parse.blocks]
        for keep, loss in stages(len(ids), blocks):
            mask = [1 if on and i >= n_prompt else 0 for i, on in zip(keep, loss)]
            if not any(mask):
                continue
            if max_length is not None and len(keep) > max_length:
                counts["too_long"] += 1
                continue
            out.append({"input_ids": [ids[i] for i in keep], "completion_mask": mask})
            counts["stages"] += 1
    return out, counts


def hcot_dataset(path: str, model: Any, tok: Any, max_length: int | None = None) -> tuple[Any, dict[str, int]]:
    """The markers added to ``model`` and ``tok`` (seeded); (the file's stage rows as a Dataset, their counts)."""
    from datasets import Dataset

    from reasonlab.train.data import form_of, read_rows
    from reasonlab.train.tokens import HCOT_SEEDS, add_tokens

    rows = read_rows(path)
    form_of(rows, "sft", path)
    if not all("prompt" in r and "completion" in r for r in rows):
        raise DataError(f"{path}: hcot training needs prompt/completion rows (reasonlab datagen hcot writes them)")
    add_tokens(model, tok, HCOT_SEEDS)
    staged, counts = stage_rows(rows, tok, max_length)
    if not staged:
        raise DataError(f"{path}: no stage rows ({counts})")
    return Dataset.from_list(staged), counts
