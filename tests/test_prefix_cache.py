"""The radix tree of cached token sequences: pure logic (no model)."""

from __future__ import annotations

from reasonlab.engines.prefix_cache import RadixCache


def test_longest_match_across_a_split_edge() -> None:
    c = RadixCache(slots=[10, 11, 12], max_tokens=1000)
    assert c.store([1, 2, 3, 4, 5]) == (10, [])
    assert c.store([1, 2, 3, 9, 9]) == (11, [])  # splits the edge after (1, 2, 3)
    inner = c.root.children[1]
    assert inner.edge == (1, 2, 3) and inner.slots == {10, 11} and set(inner.children) == {4, 9}
    assert c.match([1, 2, 3, 4, 5, 6]) == (5, 10)
    assert c.match([1, 2, 3, 9, 7]) == (4, 11)
    assert c.match([1, 2, 7])[0] == 2 and c.match([5, 5]) == (0, None)


def test_a_continued_sequence_replaces_the_entry_it_extends() -> None:
    c = RadixCache(slots=[0, 1], max_tokens=1000)
    c.store([1, 2, 3])
    assert c.store([1, 2, 3, 4, 5]) == (0, [])  # a TIR trace after a tool call: same slot, no new entry
    assert list(c.entries) == [0] and c.entries[0] == (1, 2, 3, 4, 5)
    assert c.store([1, 2, 3]) is None  # held already, as a prefix of an entry


def test_ref_counts_keep_shared_nodes_until_the_last_entry_goes() -> None:
    c = RadixCache(slots=[0, 1], max_tokens=1000)
    c.store([1, 2, 3, 4])
    c.store([1, 2, 7, 7])
    shared = c.root.children[1]
    assert shared.slots == {0, 1}
    assert c.evict_until(4) == [0]  # the least recently used entry goes; the shared node stays for the other
    assert shared.slots == {1} and c.match([1, 2, 3]) == (2, 1) and c.match([1, 2, 7, 7]) == (4, 1)
    assert c.clear() == [1] and c.root.children == {} and c.match([1, 2]) == (0, None)


def test_lru_eviction_under_pressure_and_slot_reuse() -> None:
    c = RadixCache(slots=[0, 1, 2], max_tokens=10)
    c.store([1] * 4)
    c.store([2] * 4)
    c.match([1, 1])  # touch the first: the second is now least recently used
    slot, evicted = c.store([3] * 4)  # 12 tokens > 10: the LRU entry goes
    assert evicted == [1] and slot == 2 and set(c.entries) == {0, 2} and c.tokens_held == 8
    slot, evicted = c.store([4] * 3)  # no free slot left after that: evict again
    assert evicted == [0] and slot in (0, 1) and c.tokens_held <= 10
    assert c.store([5] * 11) is None  # longer than the whole cache: never kept


def test_pinned_entries_survive_pressure_until_unpinned() -> None:
    c = RadixCache(slots=[0, 1], max_tokens=10)
    c.store([1] * 4)  # slot 0: a trace waiting for its continuation to be admitted
    c.store([2] * 4)  # slot 1
    c.pin(0)
    c.match([2, 2])  # slot 1 is now the most recently used; slot 0 would go first, but it is pinned
    assert c.store([3] * 4) == (1, [1])  # the unpinned entry goes instead
    assert c.evict_until(0) == [1] and list(c.entries) == [0]  # eviction stops at pinned entries
    c.store([5] * 5)
    assert c.store([6] * 7) is None  # only room if the pinned entry went: this one is dropped instead
    assert c.store([1] * 6) == (0, [1])  # an extension of the pinned entry takes its slot; the pin stays
    assert c.pins == {0: 1}
    c.pin(0)
    c.unpin(0)
    assert 0 in c.pins  # counted: two waiting jobs, one admitted
    c.unpin(0)
    assert c.pins == {} and c.evict_until(0) == [0]


def test_pins_when_every_slot_is_pinned() -> None:
    c = RadixCache(slots=[0], max_tokens=100)
    c.store([1, 2])
    c.pin(0)
    assert c.store([3, 4]) is None  # no slot can be freed: nothing is stored, nothing evicted
    assert c.entries[0] == (1, 2) and c.clear() == [0] and c.pins == {}
