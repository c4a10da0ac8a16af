"""Training on hierarchical chains of thought, three ways, each matching one way ``hcot`` decodes:

- ``stages`` (prune-aware, the notebook's final method): every example is split into stages at its ``[RETURN]``s,
  and each stage is a row whose context is what the model will really see at that point of generation — the blocks
  returned before it pruned (``strategies.hcot_format.stages``) — with the loss on that stage's own tokens only. So
  each token is trained once, with the context it will have. Positions renumbered contiguously (``hcot -O
  prune=continue``, and llama.cpp's in-place cut with a shift) or, with ``hcot_positions: keep``, the original ones
  with gaps where bodies were (``hcot -O prune=agnostic`` on hf: a gapped prefill).
- ``mask`` (prune-agnostic, one sequence): the whole example in one row with a 4-D additive attention mask in which
  every query from a block's ``[RETURN]`` on has the dtype's minimum on exactly that block's pruned columns, and
  explicit position ids (the original ones). One forward trains every token — but the kept result tokens are
  computed once, seeing the body they summarise: this is the semantics of a cut made in the KV cache without a
  shift (cells removed, positions kept), not of a re-prefill. ``hcot_mask_matches_cache_surgery`` in the tests
  checks exactly that.

    reasonlab datagen hcot -d gsm8k-train -n 2000 -o data/hcot.jsonl
    reasonlab train sft -c recipes/train/hcot.yaml            # sft.hcot: stages; the markers added and seeded

The markers are added to the model first (``train.tokens.add_tokens``: seeded rows; on Qwen2.5 the ids of the
GGUF's spare slots, so ``reasonlab train add-tokens`` gives llama.cpp the same vocabulary). Rows are the
prompt/completion rows ``datagen hcot`` writes (conversational, rendered with the model's chat template, ending in
its end-of-turn token) or text; the stage rows go to TRL's SFT as ``input_ids`` + ``completion_mask``.
"""

from __future__ import annotations

from typing import Any, Literal

from reasonlab.errors import DataError
from reasonlab.strategies.hcot_format import RETURN, SOLUTION, THOUGHT, Block, find_blocks, id_kind, pruned_spans, stages

Mode = Literal["stages", "mask"]
Positions = Literal["renumber", "keep"]


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


def _parsed(rows: list[dict[str, Any]], tok: Any, counts: dict[str, int]):  # type: ignore[no-untyped-def]
    """(ids, prompt length, blocks in ids' indices) per well-formed example; malformed ones counted."""
    ids_of = {m: tok.convert_tokens_to_ids(m) for m in (THOUGHT, SOLUTION, RETURN)}
    if any(i is None or i == tok.unk_token_id for i in ids_of.values()):
        raise DataError("the tokenizer lacks the hCoT markers: add them first (train.tokens.add_tokens)")
    kind = id_kind(ids_of[THOUGHT], ids_of[SOLUTION], ids_of[RETURN])
    for row in rows:
        ids, n_prompt = example_ids(row, tok)
        parse = find_blocks(ids[n_prompt:], kind)
        if parse.problems:
            counts["malformed"] += 1
            continue
        blocks = [Block(b.thought + n_prompt, b.solution + n_prompt, b.ret + n_prompt, b.depth) for b in parse.blocks]
        yield ids, n_prompt, blocks


def stage_rows(rows: list[dict[str, Any]], tok: Any, max_length: int | None = None,
               positions: Positions = "renumber") -> tuple[list[dict[str, Any]], dict[str, int]]:
    """One row per stage of each example: ``input_ids`` (kept ids) and ``completion_mask`` (1 on the stage's own
    completion tokens), and with ``positions="keep"`` ``position_ids`` (each kept token's index in the whole
    example); (rows, counts: examples, stages, too long, malformed)."""
    out, counts = [], {"examples": len(rows), "stages": 0, "too_long": 0, "malformed": 0}
    for ids, n_prompt, blocks in _parsed(rows, tok, counts):
        for keep, loss in stages(len(ids), blocks):
            mask = [1 if on and i >= n_prompt else 0 for i, on in zip(keep, loss)]
            if not any(mask):
                continue
            if max_length is not None and len(keep) > max_length:
                counts["too_long"] += 1
                continue
            row = {"input_ids": [ids[i] for i in keep], "completion_mask": mask}
            if positions == "keep":
                row["position_ids"] = list(keep)
            out.append(row)
            counts["stages"] += 1
    return out, counts


def mask_rows(rows: list[dict[str, Any]], tok: Any, max_length: int | None = None) -> tuple[list[dict[str, Any]],
                                                                                            dict[str, int]]:
    """One row per example for the 4-D mask: ``input_ids``, ``labels`` (-100 on the prompt) and ``pruned``
    ([first query that no longer sees it, start, end] per pruned span); (rows, counts)."""
    out, counts = [], {"examples": len(rows), "rows": 0, "too_long": 0, "malformed": 0}
    for ids, n_prompt, blocks in _parsed(rows, tok, counts):
        if max_length is not None and len(ids) > max_length:
            counts["too_long"] += 1
            continue
        out.append({"input_ids": ids, "labels": [-100] * n_prompt + ids[n_prompt:],
                    "pruned": [list(s) for s in pruned_spans(blocks)]})
        counts["rows"] += 1
    return out, counts


def additive_mask(length: int, pruned: list[list[int]], n: int, dtype: Any) -> Any:
    """[1, length, length] additive mask for one example of ``n`` real tokens right-padded to ``length``: 0 where
    query q may read key k (k <= q, k real, k not in a span pruned by q), the dtype's minimum elsewhere (as
    transformers' own masks: -inf would turn the padding rows' softmax into NaN)."""
    import torch

    q = torch.arange(length)[:, None]
    k = torch.arange(length)[None, :]
    allowed = (k <= q) & (k < n)  # causal, no padding keys
    for q0, start, end in pruned:
        allowed &= ~((q >= q0) & (k >= start) & (k < end))
    allowed |= (q >= n) & (k == q)  # a padding row reads itself: no row is all-masked
    mask = torch.zeros(length, length, dtype=dtype)
    return mask.masked_fill(~allowed, torch.finfo(dtype).min)[None]


class HcotCollator:
    """Batches the rows ``stage_rows(positions="keep")`` and ``mask_rows`` make, right-padded: ``input_ids``,
    ``labels`` (-100 on padding and where the row says), ``position_ids`` (the row's own, or 0..n-1), and
    ``attention_mask`` — 2-D ones/zeros, or for ``mask`` rows the (B, 1, L, L) additive mask
    (``additive_mask``), which transformers 5.x takes as given with eager and sdpa attention."""

    def __init__(self, pad_id: int, dtype: Any = None) -> None:
        self.pad_id, self.dtype = pad_id, dtype

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        length = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), length), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), length), -100, dtype=torch.long)
        pos = torch.zeros((len(rows), length), dtype=torch.long)
        pad = torch.zeros((len(rows), length), dtype=torch.long)
        for b, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[b, :n] = torch.tensor(r["input_ids"])
            if "labels" in r:
                labels[b, :n] = torch.tensor(r["labels"])
            else:  # a stage row: the loss on its completion_mask
                keep = torch.tensor(r["completion_mask"]).bool()
                labels[b, :n] = torch.where(keep, ids[b, :n], torch.tensor(-100))
            pos[b, :n] = torch.tensor(r["position_ids"]) if "position_ids" in r else torch.arange(n)
            pad[b, :n] = 1
        out = {"input_ids": ids, "labels": labels, "position_ids": pos, "attention_mask": pad}
        if any("pruned" in r for r in rows):
            dtype = self.dtype or torch.float32
            out["attention_mask"] = torch.stack([additive_mask(length, r.get("pruned", []), len(r["input_ids"]), dtype)
                                                 for r in rows])  # [B, 1, L, L]
            out["real_tokens"] = pad
        return out


def hcot_dataset(path: str, model: Any, tok: Any, max_length: int | None = None, mode: Mode = "stages",
                 positions: Positions = "renumber") -> tuple[Any, dict[str, int], HcotCollator | None, list[int]]:
    """The markers added to ``model`` and ``tok`` (seeded); (the file's rows as a Dataset, their counts, the
    collator they need — None when TRL's own does: renumbered stages —, the markers' ids, whose rows a LoRA run
    must train: ``train.tokens.token_rows``)."""
    from datasets import Dataset

    from reasonlab.train.data import form_of, read_rows
    from reasonlab.train.tokens import HCOT_SEEDS, add_tokens

    rows = read_rows(path)
    form_of(rows, "sft", path)
    if not all("prompt" in r and "completion" in r for r in rows):
        raise DataError(f"{path}: hcot training needs prompt/completion rows (reasonlab datagen hcot writes them)")
    ids = add_tokens(model, tok, HCOT_SEEDS)
    if mode == "mask":
        made, counts = mask_rows(rows, tok, max_length)
    else:
        made, counts = stage_rows(rows, tok, max_length, positions)
    if not made:
        raise DataError(f"{path}: no hcot rows ({counts})")
    own = mode == "mask" or positions == "keep"
    collator = HcotCollator(tok.pad_token_id, getattr(model, "dtype", None)) if own else None
    return Dataset.from_list(made), counts, collator, list(ids.values())
