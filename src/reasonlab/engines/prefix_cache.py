"""Which token sequences still have their KV cells, and where: a radix tree over cached sequences with
LRU eviction. Pure bookkeeping — the batched decoder makes the llama.cpp calls it asks for.

A finished sequence's cells (prompt and generated tokens alike) are kept under a *cache slot*, a spare
llama.cpp sequence id, instead of being freed. In llama.cpp's unified KV cache a cell carries the set
of sequence ids that hold it, so a new job that shares a cached prefix copies those cells to its own id
(``seq_cp``, no data moves) and prefills only the rest; evicting an entry (``seq_rm`` of its slot)
never touches a cell another sequence still holds. Hence no reference counts on cells are needed for
correctness: a node's ``slots`` (the entries through it) are its reference count, and a node lives as
long as one entry passes through it.

An entry a waiting job is about to continue is *pinned* (``pin``/``unpin``, counted): eviction skips it,
so a trace queued behind fresh samples after a tool call still finds its cells when a slot frees up.

    >>> c = RadixCache(slots=[8, 9], max_tokens=100)
    >>> c.store((1, 2, 3, 4)), c.match((1, 2, 3, 7))
    ((8, []), (3, 8))
    >>> c.store((1, 2, 3, 4, 5)), c.match((1, 2, 3, 4, 5, 6))     # extends the entry: same slot, replaced
    ((8, []), (5, 8))
    >>> c.store((1, 2)), c.store((6, 6)), c.store((7, 7))        # covered: nothing to do; then a full cache evicts
    (None, (9, []), (8, [8]))
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Iterable, Sequence

Tokens = tuple[int, ...]


@dataclass(eq=False)
class _Node:
    edge: Tokens  # the tokens on the edge into this node
    parent: _Node | None
    children: dict[int, _Node] = field(default_factory=dict)  # by the first token of the child's edge
    slots: set[int] = field(default_factory=set)  # entries passing through or ending here (the ref count)
    ends: set[int] = field(default_factory=set)  # entries ending exactly here


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class RadixCache:
    """Cached token sequences, one per slot, at most ``max_tokens`` tokens in all (counted per entry, so a
    shared prefix counts once per entry: a bound that errs towards keeping fewer)."""

    def __init__(self, slots: Iterable[int], max_tokens: int) -> None:
        self.root = _Node((), None)
        self.free = list(slots)
        self.max_tokens = max_tokens
        self.entries: OrderedDict[int, Tokens] = OrderedDict()  # slot -> tokens, least recently used first
        self.pins: dict[int, int] = {}  # slot -> waiting jobs that will copy its cells (never evicted meanwhile)

    @property
    def tokens_held(self) -> int:
        return sum(len(t) for t in self.entries.values())

    # -- lookups ---------------------------------------------------------------------------------------
    def _walk(self, tokens: Sequence[int]) -> tuple[int, _Node | None, list[_Node]]:
        """(tokens matched, the last node entered, the nodes fully matched along the way)."""
        node, i, last, full = self.root, 0, None, []
        while i < len(tokens):
            child = node.children.get(tokens[i])
            if child is None:
                break
            k = common_prefix(child.edge, tokens[i:])
            i += k
            last = child
            if k < len(child.edge):
                break
            full.append(child)
            node = child
        return i, last, full

    def match(self, tokens: Sequence[int]) -> tuple[int, int | None]:
        """The longest prefix of ``tokens`` some entry holds: (its length, a slot holding it), or (0, None).
        The entry becomes the most recently used."""
        i, last, _ = self._walk(tokens)
        if last is None or i == 0:
            return 0, None
        slot = self._newest(last.slots)
        self.entries.move_to_end(slot)
        return i, slot

    def sharers(self, tokens: Sequence[int], n: int) -> set[int]:
        """Slots of the entries that hold the first ``n`` tokens of ``tokens`` (their cells there are shared)."""
        i, last, _ = self._walk(tokens[:n])
        return set(last.slots) if last is not None and i == n else set()

    def take(self, slot: int) -> None:
        """Drop ``slot``'s entry and free the slot; the caller moves or clears its cells (an in-place cut)."""
        self.pins.pop(slot, None)
        self._remove(slot)
        self.free.append(slot)

    def pin(self, slot: int) -> None:
        """Keep ``slot``'s entry until as many ``unpin`` calls (an extension stored into it keeps the pin)."""
        self.pins[slot] = self.pins.get(slot, 0) + 1

    def unpin(self, slot: int) -> None:
        n = self.pins.pop(slot, 0) - 1
        if n > 0:
            self.pins[slot] = n

    def _evictable(self) -> int:
        return sum(len(t) for s, t in self.entries.items() if s not in self.pins)

    def _newest(self, slots: set[int]) -> int:
        """Of ``slots``, the most recently used entry's."""
        return next(s for s in reversed(self.entries) if s in slots)

    # -- changes: each returns the llama.cpp work to do ------------------------------------------------
    def store(self, tokens: Sequence[int]) -> tuple[int, list[int]] | None:
        """Keep ``tokens`` (a finished sequence). Returns None when an entry already holds them all, else
        (the slot to copy the sequence's cells into — cleared first —, slots evicted to make room: clear them).
        A sequence that extends an entry takes that entry's slot (a trace continued after a tool call)."""
        tokens = tuple(tokens)
        if not tokens or len(tokens) > self.max_tokens:
            return None
        i, last, full = self._walk(tokens)
        if i == len(tokens) and last is not None:  # already held, as an entry or a prefix of one
            self.entries.move_to_end(self._newest(last.slots))
            return None
        evicted: list[int] = []
        prefix_entry = next((next(iter(n.ends)) for n in reversed(full) if n.ends), None)
        replaced = len(self.entries[prefix_entry]) if prefix_entry is not None else 0
        # what eviction can free: unpinned entries (an extended entry's tokens go either way)
        evictable = self._evictable() - (replaced if prefix_entry not in self.pins else 0)
        pinned = self.tokens_held - replaced - evictable
        if pinned + len(tokens) > self.max_tokens or (prefix_entry is None and not self.free and not evictable):
            return None  # pinned entries fill the cache: keep them, drop this one
        if prefix_entry is not None:  # the new sequence extends an entry: it replaces that entry
            self._remove(prefix_entry)
            slot = prefix_entry
        else:
            if not self.free:
                evicted.append(self._evict_lru())
            slot = self.free.pop(0)
        while self.tokens_held + len(tokens) > self.max_tokens:
            evicted.append(self._evict_lru())
        self._insert(tokens, slot)
        return slot, evicted

    def evict_until(self, tokens_held: int) -> list[int]:
        """Evict least recently used entries until at most ``tokens_held`` tokens are kept; their slots."""
        out = []
        while self.tokens_held > tokens_held and self._evictable():
            out.append(self._evict_lru())
        return out

    def clear(self) -> list[int]:
        """Every entry, pinned or not (the decoder drops its waiting jobs' pins with it)."""
        self.pins.clear()
        return self.evict_until(0)

    # -- the tree --------------------------------------------------------------------------------------
    def _evict_lru(self) -> int:
        slot = next(s for s in self.entries if s not in self.pins)
        self._remove(slot)
        self.free.append(slot)
        return slot

    def _insert(self, tokens: Tokens, slot: int) -> None:
        node, i = self.root, 0
        while i < len(tokens):
            child = node.children.get(tokens[i])
            if child is None:
                child = _Node(tokens[i:], node)
                node.children[tokens[i]] = child
            else:
                k = common_prefix(child.edge, tokens[i:])
                if k < len(child.edge):  # split the edge: a new inner node holds the shared part
                    inner = _Node(child.edge[:k], node, slots=set(child.slots))
                    child.edge, child.parent = child.edge[k:], inner
                    inner.children[child.edge[0]] = child
                    node.children[tokens[i]] = inner
                    child = inner
            child.slots.add(slot)
            i += len(child.edge)
            node = child
        node.ends.add(slot)
        self.entries[slot] = tokens

    def _remove(self, slot: int) -> None:
        tokens = self.entries.pop(slot)
        _, _, path = self._walk(tokens)
        path[-1].ends.discard(slot)
        for node in reversed(path):
            node.slots.discard(slot)
            if not node.slots:  # no entry passes here any more
                assert node.parent is not None
                del node.parent.children[node.edge[0]]
