"""KV-cache surgery for the batched llama.cpp decoder: cutting a finished span out of a sequence's cells instead of
reading what is kept again (hierarchical CoT's prune). Two semantics:

- with a shift (prune-aware, ``kv_shift``): a new prompt that is a cached sequence with one span cut out takes that
  entry's cells, drops the span and moves what follows down (``seq_rm`` + ``seq_add``; RoPE re-applied on the next
  decode) — positions renumbered, as a re-prefill of the cut ids would have them;
- in place (prune-agnostic, ``generate_pruning``): while a sequence decodes, a hook names spans of its generation to
  forget; their cells leave the sequence (``seq_rm``, no shift) — every other position kept.

In a unified KV cache a cell's position is shared by every sequence holding it, so neither touches cells another
sequence or the prefix cache still holds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from reasonlab.engines.prefix_cache import common_prefix

if TYPE_CHECKING:
    from reasonlab.engines.llamacpp_batch import Job, _Seq


class KVSurgery:
    """Mixed into BatchedDecoder: uses its ``ctx``, ``cache`` and ``stats``."""

    ctx: Any
    cache: Any
    stats: dict[str, float]

    def _shift_cut(self, job: Job, sid: int, head: list[int], a: int, slot: int, active: dict[int, _Seq]) -> int:
        """Give ``sid`` the cells of ``head``; return how many it now holds. When ``head`` is the cached entry in
        ``slot`` with one span [a, b) cut out, the entry's cells after the cut are moved down by b - a positions
        (seq_rm + seq_add: RoPE is re-applied to their keys on the next decode) and nothing is prefilled; the
        entry leaves the cache, its cells become this sequence's. Only when no other entry or live sequence
        holds those cells — in a unified cache a cell's position is shared by every sequence holding it —
        otherwise the shared head is copied and the rest prefilled, as without ``kv_shift``."""
        cache = self.cache
        assert cache is not None
        entry = cache.entries[slot]
        b = len(entry) - (len(head) - a)
        movable = (b > a and list(entry[b:]) == head[a:] and cache.sharers(entry, b + 1) == {slot}
                   and cache.pins.get(slot, 0) <= (1 if job.pinned == slot else 0)
                   and not any(common_prefix((s.job.tokens + s.out)[: s.pos], entry) > b for s in active.values()))
        if not movable:
            self.ctx.kv_cache_seq_cp(slot, sid, 0, a)
            return a
        self.ctx.kv_cache_seq_cp(slot, sid, 0, len(entry))  # every cell of the entry, shared for a moment
        self.ctx.kv_cache_seq_rm(sid, a, b)  # this sequence lets go of the cut span
        cache.take(slot)
        self.ctx.kv_cache_seq_rm(slot, -1, -1)  # the entry goes: [b, end) is now this sequence's alone
        if job.pinned == slot:
            job.pinned = None
        self.ctx.kv_cache_seq_shift(sid, b, len(entry), a - b)  # positions b.. become a..
        self.stats["shifted_cuts"] += 1
        self.stats["shifted_tokens"] += len(entry) - b
        return len(head)

    def _cut_in_place(self, seq: _Seq) -> str | None:
        """Ask the job's prune hook which spans of the generation to forget, before the newest token is read:
        their cells leave this sequence (seq_rm, no shift: every other position is kept — prune-agnostic). The
        last cell read stays whatever the span says, because llama.cpp wants the next position right after the
        sequence's highest (an empty result keeps its [SOLUTION] cell). Cells shared with other sequences or the
        prefix cache are untouched (seq_rm drops only this sequence's hold), and from the first cut on the
        sequence is no longer offered as a prefix to others or kept in the prefix cache past that point."""
        job = seq.job
        prompt = len(job.tokens)
        read = len(seq.out) - 1  # generated tokens whose cells exist (the newest is fed next)
        try:
            spans = job.prune(job.index, job.sample, list(seq.out))  # type: ignore[misc]
        except Exception as err:  # noqa: BLE001 - reported on this sequence's Generation
            return f"prune hook: {type(err).__name__}: {err}"
        for start, end in spans:
            start, end = max(0, start), min(end, read - 1)
            if end <= start:
                continue
            self.ctx.kv_cache_seq_rm(seq.sid, prompt + start, prompt + end)
            seq.intact = min(seq.intact, prompt + start)
            self.stats["cut_cells"] += end - start
        return None
