"""The hierarchical CoT format: validator table, statistics, what a prune removes, unwrap, training stages and the
prune-agnostic visibility on hand-made id sequences (the notebook's cases, numbered here)."""

from __future__ import annotations

import pytest

from reasonlab.strategies.hcot_format import (PruneRule, find_blocks, hidden, id_kind, prune_text, stages, unwrap,
                                              validate)

TH, SO, RE = 100, 101, 102
KIND = id_kind(TH, SO, RE)


@pytest.mark.parametrize("text, well_formed, problem", [
    ("plain text, no thoughts", True, None),
    ("[THOUGHT] x [SOLUTION] 1 [RETURN] [THOUGHT] y [SOLUTION] 2 [RETURN]", True, None),
    ("[THOUGHT] a [THOUGHT] b [SOLUTION] 1 [RETURN] [SOLUTION] 2 [RETURN]", True, None),
    ("[THOUGHT] x [SOLUTION] 1", False, "1 thought(s) never returned"),
    ("[THOUGHT] x [RETURN]", False, "[RETURN] before the thought's [SOLUTION] at item 2"),
    ("x [RETURN]", False, "[RETURN] outside any thought at item 1"),
    ("[THOUGHT] x [SOLUTION] 1 [SOLUTION] 2 [RETURN]", False, "second [SOLUTION] in one thought at item 4"),
    ("[THOUGHT] x [SOLUTION] \n [RETURN]", False, "empty solution in the thought closing at item 4"),
])
def test_validator_table(text, well_formed, problem) -> None:
    r = validate(text)
    assert r.well_formed is well_formed
    if problem is not None:
        assert problem in r.problems


def test_depth_limit_and_statistics() -> None:
    deep = "[THOUGHT] " * 3 + "x" + " [SOLUTION] y [RETURN]" * 3
    assert validate(deep).max_depth == 3 and validate(deep).well_formed
    assert "nested deeper than 2 at item 4" in validate(deep, max_depth=2).problems
    r = validate("[THOUGHT] 0123456789 [SOLUTION] ab [RETURN] done")
    assert (r.blocks, r.thought_chars, r.solution_chars) == (1, 10, 2) and r.solution_ratio == 0.2


@pytest.mark.parametrize("rule, want", [
    (PruneRule(), "Q [THOUGHT] 5 [RETURN] A"),
    (PruneRule(keep_thought=False), "Q  5 [RETURN] A"),
    (PruneRule(keep_return=False), "Q [THOUGHT] 5  A"),
])
def test_what_a_prune_removes(rule, want) -> None:
    assert prune_text("Q [THOUGHT] 2 plus 3 [SOLUTION] 5 [RETURN] A", rule) == want


def test_unwrap_gives_the_original_chain_back() -> None:
    original = "First, 2 + 3 = 5. Then 5 * 4 = 20."
    wrapped = "[THOUGHT]First, 2 + 3 = 5.[SOLUTION] 5 [RETURN] [THOUGHT]Then 5 * 4 = 20.[SOLUTION] 20[RETURN]"
    assert " ".join(unwrap(wrapped).split()) == original


def test_stages_single_block() -> None:
    #      0   1   2   3   4   5   6   7   8   9
    ids = [10, 11, TH, 12, 13, SO, 14, RE, 15, 16]
    got = [([ids[i] for i in keep], loss) for keep, loss in stages(len(ids), find_blocks(ids, KIND).blocks)]
    assert got == [([10, 11, TH, 12, 13, SO, 14, RE], [True] * 8),
                   ([10, 11, TH, 14, RE, 15, 16], [False] * 5 + [True] * 2)]


def test_stages_nested_blocks() -> None:
    #      0   1   2   3   4   5   6   7   8   9   10  11  12
    ids = [10, TH, 12, TH, 13, SO, 14, RE, 15, SO, 16, RE, 17]
    got = [([ids[i] for i in keep], loss) for keep, loss in stages(len(ids), find_blocks(ids, KIND).blocks)]
    assert got == [
        ([10, TH, 12, TH, 13, SO, 14, RE], [True] * 8),                                  # up to the inner return
        ([10, TH, 12, TH, 14, RE, 15, SO, 16, RE], [False] * 6 + [True] * 4),           # inner pruned
        ([10, TH, 16, RE, 17], [False] * 4 + [True]),                                    # both pruned
    ]
    # every item is trained exactly once
    trained = sorted(i for keep, loss in stages(len(ids), find_blocks(ids, KIND).blocks)
                     for i, on in zip(keep, loss) if on)
    assert trained == list(range(len(ids)))


def test_no_stage_after_a_final_return() -> None:
    ids = [10, TH, 12, SO, 13, RE]
    assert len(stages(len(ids), find_blocks(ids, KIND).blocks)) == 1


def test_hidden_columns_are_exactly_the_pruned_ones() -> None:
    #      0   1   2   3   4   5   6   7   8   9   10  11  12
    ids = [10, TH, 12, SO, 13, RE, 11, TH, 14, SO, 15, RE, 16]
    h = hidden(len(ids), find_blocks(ids, KIND).blocks)
    assert h[4] == set()  # the solution text was written seeing the body
    # [RETURN] is read after the prune (generation stops when it is sampled): its row lacks the body already
    assert h[5] == {2, 3} and h[6] == {2, 3} and h[10] == {2, 3}
    assert h[11] == {2, 3, 8, 9} and h[12] == {2, 3, 8, 9}
