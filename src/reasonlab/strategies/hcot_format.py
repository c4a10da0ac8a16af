"""The hierarchical chain-of-thought format (research notebook 002; anujjamwal/cognitive-compression): a solution
reasons in nested sub-thoughts, each closed by a short result, and a finished sub-thought's body can be forgotten.

    ... [THOUGHT] a sub-problem, worked out at length [SOLUTION] its short result [RETURN] ...

Blocks nest (a body may open further blocks). A *prune* of a finished block removes its body and the ``[SOLUTION]``
marker — what the notebook's fixed code removes — so the live text keeps ``[THOUGHT]``, the result and ``[RETURN]``:

    ... [THOUGHT] its short result [RETURN] ...

(``PruneRule`` says which markers stay.) The same rules serve text (for validation, statistics, data) and token ids
(for pruning during generation and for training stages): ``find_blocks`` works on any sequence whose items are
classified as a marker or not.

    >>> report = validate("A [THOUGHT] add 2 and 3 [SOLUTION] 5 [RETURN] so 5.")
    >>> report.well_formed, report.blocks, report.max_depth
    (True, 1, 1)
    >>> prune_text("A [THOUGHT] add 2 and 3 [SOLUTION] 5 [RETURN] so 5.")
    'A [THOUGHT] 5 [RETURN] so 5.'
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Literal, Sequence, TypeVar

from pydantic import BaseModel, ConfigDict, Field

THOUGHT, SOLUTION, RETURN = "[THOUGHT]", "[SOLUTION]", "[RETURN]"
MARKERS = (THOUGHT, SOLUTION, RETURN)
Kind = Literal["thought", "solution", "return"]
T = TypeVar("T")


class PruneRule(BaseModel):
    """What a prune of a finished block removes. The default is the notebook's fixed rule: the body and the
    ``[SOLUTION]`` marker go; ``[THOUGHT]``, the result and ``[RETURN]`` stay (so the model still sees that a
    sub-thought happened and what it gave)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    keep_thought: bool = Field(True, description="keep the [THOUGHT] marker")
    keep_return: bool = Field(True, description="keep the [RETURN] marker")


@dataclass(frozen=True)
class Block:
    """One closed block: indices of its three markers in the sequence, its depth (1 = top level)."""

    thought: int
    solution: int
    ret: int
    depth: int

    def removed(self, rule: PruneRule = PruneRule()) -> list[tuple[int, int]]:
        """The [start, end) spans of items a prune removes: the body and [SOLUTION] (from [THOUGHT] on when the
        rule drops that marker), and [RETURN] when the rule drops it."""
        spans = [(self.thought + (1 if rule.keep_thought else 0), self.solution + 1)]
        return spans if rule.keep_return else spans + [(self.ret, self.ret + 1)]


@dataclass
class Parse:
    """The blocks of a sequence and what is wrong with it."""

    blocks: list[Block] = field(default_factory=list)  # closed blocks, in the order they closed
    problems: list[str] = field(default_factory=list)  # one line per defect, in order
    open_depth: int = 0  # blocks still open at the end (a trace cut mid-thought)
    max_depth: int = 0


def find_blocks(seq: Sequence[T], kind: Callable[[T], Kind | None], max_depth: int = 8) -> Parse:
    """Walk ``seq`` with a stack: ``[THOUGHT]`` opens a block, ``[SOLUTION]`` ends its body, ``[RETURN]`` closes it.
    Defects (a marker out of place, a block left open, nesting beyond ``max_depth``) are reported, not raised."""
    out = Parse()
    stack: list[list[int]] = []  # per open block: [thought index, solution index or -1]
    for i, item in enumerate(seq):
        k = kind(item)
        if k == "thought":
            stack.append([i, -1])
            out.max_depth = max(out.max_depth, len(stack))
            if len(stack) == max_depth + 1:
                out.problems.append(f"nested deeper than {max_depth} at item {i}")
        elif k == "solution":
            if not stack:
                out.problems.append(f"[SOLUTION] outside any thought at item {i}")
            elif stack[-1][1] >= 0:
                out.problems.append(f"second [SOLUTION] in one thought at item {i}")
            else:
                stack[-1][1] = i
        elif k == "return":
            if not stack:
                out.problems.append(f"[RETURN] outside any thought at item {i}")
            elif stack[-1][1] < 0:
                out.problems.append(f"[RETURN] before the thought's [SOLUTION] at item {i}")
                stack.pop()
            else:
                t, s = stack.pop()
                out.blocks.append(Block(t, s, i, len(stack) + 1))
    out.open_depth = len(stack)
    if stack:
        out.problems.append(f"{len(stack)} thought(s) never returned")
    return out


# --- text ---------------------------------------------------------------------------------------------------------

_SPLIT = re.compile("(" + "|".join(re.escape(m) for m in MARKERS) + ")")
_KIND: dict[str, Kind] = {THOUGHT: "thought", SOLUTION: "solution", RETURN: "return"}


def pieces(text: str) -> list[str]:
    """``text`` as alternating text and marker pieces (markers are pieces of their own)."""
    return [p for p in _SPLIT.split(text) if p]


def _kind(piece: str) -> Kind | None:
    return _KIND.get(piece)


@dataclass(frozen=True)
class Report:
    """Validation and statistics of one hCoT text."""

    well_formed: bool
    problems: tuple[str, ...]
    blocks: int
    max_depth: int
    empty_solutions: int
    thought_chars: int  # characters inside bodies (each character counted once, at its innermost block)
    solution_chars: int  # characters of the results
    open_thoughts: int

    @property
    def solution_ratio(self) -> float | None:
        """Result length over body length: how much a prune keeps (small is the point)."""
        return self.solution_chars / self.thought_chars if self.thought_chars else None


def validate(text: str, max_depth: int = 8) -> Report:
    """Well-formed = every thought returns, markers in order, depth within ``max_depth``, no empty result.

    >>> validate("[THOUGHT] x [SOLUTION]  [RETURN]").problems
    ('empty solution in the thought closing at item 4',)
    >>> validate("[SOLUTION] y [THOUGHT] x").problems
    ('[SOLUTION] outside any thought at item 0', '1 thought(s) never returned')
    """
    ps = pieces(text)
    parse = find_blocks(ps, _kind, max_depth)
    problems = list(parse.problems)
    empty = 0
    thought_chars = solution_chars = 0
    inner: set[int] = set()  # pieces inside a nested block's span, counted there
    for b in sorted(parse.blocks, key=lambda b: -b.depth):
        result = "".join(ps[b.solution + 1: b.ret])
        if not result.strip():
            empty += 1
            problems.append(f"empty solution in the thought closing at item {b.ret}")
        solution_chars += len(result.strip())
        for j in range(b.thought + 1, b.solution):
            if j not in inner and _kind(ps[j]) is None:
                thought_chars += len(ps[j].strip())
                inner.add(j)
    return Report(well_formed=not problems, problems=tuple(problems), blocks=len(parse.blocks),
                  max_depth=parse.max_depth, empty_solutions=empty, thought_chars=thought_chars,
                  solution_chars=solution_chars, open_thoughts=parse.open_depth)


def prune_text(text: str, rule: PruneRule = PruneRule()) -> str:
    """``text`` with every closed block pruned (what the live context holds once all of them have returned);
    malformed parts are left as written.

    >>> prune_text("[THOUGHT] a [THOUGHT] b [SOLUTION] c [RETURN] d [SOLUTION] e [RETURN] f")
    '[THOUGHT] e [RETURN] f'
    """
    ps = pieces(text)
    drop = removed_items(find_blocks(ps, _kind).blocks, rule)
    return "".join(p for i, p in enumerate(ps) if i not in drop)


def unwrap(text: str) -> str:
    """The chain of thought without the format: markers and results removed, bodies kept in place — what a
    segmenter must give back (the check that it wrapped the original text without rewording it).

    >>> unwrap("A [THOUGHT] add 2 and 3 [SOLUTION] 5 [RETURN] so 5.")
    'A  add 2 and 3  so 5.'
    """
    ps = pieces(text)
    results: set[int] = set()
    for b in find_blocks(ps, _kind).blocks:
        results.update(range(b.solution + 1, b.ret))
    return "".join(p for i, p in enumerate(ps) if _kind(p) is None and i not in results)


# --- token ids ----------------------------------------------------------------------------------------------------

def removed_items(blocks: list[Block], rule: PruneRule = PruneRule()) -> set[int]:
    """Indices a prune of all ``blocks`` removes (nested spans fall inside their parent's)."""
    out: set[int] = set()
    for b in blocks:
        for start, end in b.removed(rule):
            out.update(range(start, end))
    return out


def id_kind(thought: int, solution: int, ret: int) -> Callable[[int], Kind | None]:
    """The classifier ``find_blocks`` needs for token ids with the markers' ids."""
    table: dict[int, Kind] = {thought: "thought", solution: "solution", ret: "return"}
    return table.get


def stages(n: int, blocks: list[Block], rule: PruneRule = PruneRule()) -> list[tuple[list[int], list[bool]]]:
    """Prune-aware training stages of a sequence of ``n`` items (the notebook's final method): stage k runs up to
    and including the k-th ``[RETURN]`` with every block closed before it pruned, and trains only the items since
    the previous stage; a last stage covers what follows the last ``[RETURN]`` (omitted when nothing does). So each
    item is trained once, with the context it will have at generation. Per stage: (kept item indices in order,
    which of them carry the loss).

    >>> T, S, R = "TSR"
    >>> seq = ["a", T, "b", S, "c", R, "d"]
    >>> [[seq[i] for i in keep] for keep, _ in stages(len(seq), find_blocks(seq, {T: "thought", S: "solution", R: "return"}.get).blocks)]
    [['a', 'T', 'b', 'S', 'c', 'R'], ['a', 'T', 'c', 'R', 'd']]
    """
    out: list[tuple[list[int], list[bool]]] = []
    closed: list[Block] = []
    start = 0
    for b in [*sorted(blocks, key=lambda b: b.ret), None]:
        end = b.ret + 1 if b is not None else n
        if end > start:
            drop = removed_items(closed, rule)
            keep = [i for i in range(end) if i not in drop]
            out.append((keep, [start <= i < end for i in keep]))
        if b is not None:
            closed.append(b)
            start = end
    return out


def pruned_spans(blocks: list[Block], rule: PruneRule = PruneRule()) -> list[tuple[int, int, int]]:
    """Prune-agnostic attention, compactly: (first query that no longer sees it, start, end) per pruned span. The
    first such query is the block's ``[RETURN]`` itself: generation stops when ``[RETURN]`` is sampled, the block is
    pruned, and ``[RETURN]`` is read after the prune (so its row, as every later one, lacks the body)."""
    return [(b.ret, start, end) for b in sorted(blocks, key=lambda b: b.ret) for start, end in b.removed(rule)]


def hidden(n: int, blocks: list[Block], rule: PruneRule = PruneRule()) -> list[set[int]]:
    """Prune-agnostic attention (one sequence, original positions): per query item, the earlier items it must not
    see — the pruned spans of every block returned at or before it (``pruned_spans``). A training mask puts -inf
    exactly there (and on the future).

    >>> T, S, R = "TSR"
    >>> seq = ["a", T, "b", S, "c", R, "d"]
    >>> h = hidden(len(seq), find_blocks(seq, {T: "thought", S: "solution", R: "return"}.get).blocks)
    >>> h[4], h[5], h[6]
    (set(), {2, 3}, {2, 3})
    """
    spans = pruned_spans(blocks, rule)
    return [{i for q0, start, end in spans if q0 <= q for i in range(start, end)} for q in range(n)]
