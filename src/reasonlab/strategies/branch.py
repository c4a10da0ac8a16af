"""Branching tree search: fork a trace at chosen points into children that continue differently,
keep forking while the budget lasts, vote over the leaves.

A stem is written first (up to the first paragraph break, or ``split_tokens`` tokens); then at each of
``depth`` levels every unfinished node forks ``width`` children, child c continuing after the
continuation text ``continuations[c % len]`` (plain; "Let me verify this with another approach.";
with ``code_fork`` one child opens a ```python block, which the tir policy would run — here it is a
prompt to compute). Children of one level are decoded together (a batching engine runs them as one
batch). When every child of a node has finished with the same answer the search stops early; otherwise
the nodes left after the last level run to the end. Tokens of a shared segment are counted once.
"""

from __future__ import annotations

import itertools
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from reasonlab.data import Problem
from reasonlab.engines import Engine, Generation
from reasonlab.strategies.base import Attempt, Budget, Continuation, Strategy, Trace, error_event
from reasonlab.strategies.vote import tally, winner


class BranchConfig(BaseModel):
    """Branching tree search over plain continuations."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["branch"] = "branch"
    width: int = Field(2, ge=1, description="children per fork")
    depth: int = Field(2, ge=1, description="fork levels after the stem")
    split: Literal["paragraph", "tokens"] = Field("paragraph", description="where a segment ends and a fork may come")
    split_tokens: int = Field(96, ge=1, description="most tokens of a segment")
    continuations: tuple[str, ...] = Field(("", "Let me verify this with another approach.\n"), min_length=1,
                                           description="text child c starts with (cycled)")
    code_fork: bool = Field(False, description="the last child of each fork opens a ```python block")
    max_leaves: int = Field(8, ge=1, description="most leaves (caps the tree's width)")
    agree_stop: bool = Field(True, description="stop when every child of a node finished with one answer")


@dataclass
class _Node:
    text: str
    path: str
    tokens: int = 0  # tokens generated for this node's own segment
    total: int = 0  # tokens along the path (the trace's length)
    done: bool = False
    finish: str = "stop"
    answer: str | None = None  # extracted once the node is finished
    counted: bool = False  # segment tokens already given to a trace
    parent: _Node | None = None
    children: list[_Node] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)  # engine errors of its segments
    prefilled: int = 0  # prompt tokens evaluated / served from the prefix cache for its segments
    cached: int = 0
    cont: Continuation | None = None  # the token ids that spell prompt + text (children start from a copy)

    def lineage(self) -> list[_Node]:
        """This node and its ancestors, root first."""
        out, up = [], self
        while up is not None:
            out.append(up)
            up = up.parent
        return out[::-1]


class Branch(Strategy):
    name = "branch"
    continues_raw = True
    Config = BranchConfig

    def _segment(self, engine: Engine, prompt: str, node: _Node, to_end: bool, seed: int | None,
                 limit: int, cancel: Any) -> None:
        cfg: BranchConfig = self.config  # type: ignore[assignment]
        room = max(1, limit - node.total)
        stop = self.params.stop + (("\n\n",) if cfg.split == "paragraph" and not to_end else ())
        max_tokens = room if to_end else min(room, cfg.split_tokens)
        p = self.params.model_copy(update={"n": 1, "seed": seed, "max_tokens": max_tokens, "stop": stop})
        if node.cont is None:
            node.cont = Continuation(engine, prompt)
        gen: Generation = engine.generate([node.cont.send(node.text)], p, cancel=cancel)[0]
        node.cont.take(gen)
        node.text += gen.text
        node.tokens += gen.completion_tokens
        node.total += gen.completion_tokens
        node.cached += gen.cached_tokens
        node.prefilled += gen.prefilled_tokens
        if gen.error:
            node.events.append(error_event(gen))
        split_here = gen.stop_reason == "\n\n" or (gen.finish_reason == "length" and node.total < limit)
        if split_here and not to_end:
            node.text += "\n\n" if gen.stop_reason == "\n\n" else ""
        else:
            node.done, node.finish = True, gen.finish_reason
            node.answer = self.verifier.extract(node.text)

    def _trace(self, node: _Node, prompt: str) -> Trace:
        own = cached = prefilled = 0  # segments no earlier trace was given: their tokens count once
        for up in node.lineage():
            if not up.counted:
                own, cached, prefilled = own + up.tokens, cached + up.cached, prefilled + up.prefilled
                up.counted = True
        events = [e for up in node.lineage() for e in up.events]
        prompt_ids, ids, injected = node.cont.final(node.text) if node.cont is not None else (None, None, [])
        return Trace(text=node.text, answer=node.answer, completion_tokens=own,
                     prompt_token_ids=prompt_ids, token_ids=ids, injected=injected,
                     finish_reason=node.finish, tags={"path": node.path}, events=events, prompt=prompt,
                     cached_tokens=cached, prefilled_tokens=prefilled)

    def solve(self, problem: Problem, engine: Engine, budget: Budget) -> Attempt:
        cfg: BranchConfig = self.config  # type: ignore[assignment]
        start = time.perf_counter()
        deadline = budget.deadline(start)
        limit = self.params.max_tokens
        prompt = self.prompts_for(engine, problem)
        seeds = itertools.count()

        def seed() -> int | None:
            return None if self.params.seed is None else self.params.seed + next(seeds)

        def cancel(_i: int, _s: int, _n: int, _lp: float | None) -> bool:
            return deadline is not None and time.perf_counter() > deadline

        spent = lambda: sum(n.tokens for n in nodes)  # noqa: E731
        root = _Node(text="", path="0")
        nodes = [root]
        self._segment(engine, prompt, root, False, seed(), limit, cancel)
        frontier = [] if root.done else [root]
        reason, leaves = "done", [root] if root.done else []
        for _level in range(cfg.depth):
            if not frontier:
                break
            room = cfg.max_leaves - len(leaves)
            if budget.max_tokens is not None and spent() >= budget.max_tokens:
                reason = "budget_tokens"
                break
            if deadline is not None and time.perf_counter() > deadline:
                reason = "budget_time"
                break
            width = max(1, min(cfg.width, room // max(1, len(frontier))))
            kids: list[_Node] = []
            for node in frontier:
                for c in range(width):
                    lead = cfg.continuations[c % len(cfg.continuations)]
                    if cfg.code_fork and c == width - 1 and width > 1:
                        lead = "Let me compute this in Python.\n```python\n"
                    kid = _Node(text=node.text + lead, path=f"{node.path}.{c}", total=node.total, parent=node,
                                cont=node.cont.copy() if node.cont is not None else None)
                    node.children.append(kid)
                    kids.append(kid)
            nodes += kids
            jobs = [(k, seed()) for k in kids]
            with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="branch") as pool:
                list(pool.map(lambda j: self._segment(engine, prompt, j[0], False, j[1], limit, cancel), jobs))
            leaves += [k for k in kids if k.done]
            frontier = [k for k in kids if not k.done]
            if cfg.agree_stop and self._agreeing_fork(kids):
                reason = "children_agree"
                break
        else:
            if frontier:  # the last level's open nodes run to the end
                jobs = [(k, seed()) for k in frontier]
                with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="branch") as pool:
                    list(pool.map(lambda j: self._segment(engine, prompt, j[0], True, j[1], limit, cancel), jobs))
                leaves += frontier
                frontier = []
        traces = [self._trace(n, prompt).model_copy(update={"sample": i}) for i, n in enumerate(leaves)]
        for n in frontier:  # open nodes the early stop abandoned: their tokens were spent, they do not vote
            t = self._trace(n, prompt)
            traces.append(t.model_copy(update={"valid": False, "dropped": "abandoned", "answer": None}))
        groups = tally([(t.answer, 1.0, t.sample) for t in traces if t.valid and t.answer is not None],
                       self.verifier, problem.answer_type)
        return Attempt(answer=winner(groups), traces=traces, votes={g.answer: g.weight for g in groups},
                       stop_reason=reason,
                       seconds=time.perf_counter() - start, meta={"nodes": len(nodes), "leaves": len(leaves)})

    def _agreeing_fork(self, kids: list[_Node]) -> bool:
        """Some node's children all finished, with one answer."""
        by_parent: dict[int, list[_Node]] = {}
        for k in kids:
            by_parent.setdefault(id(k.parent), []).append(k)
        for group in by_parent.values():
            if len(group) > 1 and all(k.done for k in group):
                answers = {k.answer for k in group}
                if len(answers) == 1 and None not in answers:
                    return True
        return False
