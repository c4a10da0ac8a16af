"""Models in conversation: a solver with a critic, or a debate among agents (Du et al. 2023).

``mode: critic`` — the solver answers; a critic (the same model or another) checks the solution and either agrees
(its reply ends "VERDICT: CORRECT") or names an error ("VERDICT: WRONG"); the solver, shown the critique, revises.
The conversation ends when the critic agrees or after ``rounds`` revisions; the answer is the solver's last one
(a revision without an answer keeps the one before).

``mode: debate`` — ``agents`` answer independently; then for ``rounds`` rounds each agent sees the others' latest
solutions and writes its own again; the answer is the majority of the last round (equivalent answers pooled,
ties to the earlier agent). Agents sample with the run's temperature and seeds: a greedy debate of one model is
refused, its agents would all write the same words.

Members are models as in ``mixture`` (``model`` + engine options; none: the run's engine), each loaded once per
run. Every turn is a trace, tagged with its ``role`` (solver, critic, agent), ``round`` and ``agent``; only the
turns that hold the final answer vote. ``meta.round_traces`` names, per round, the trace holding the answer at
that point, so the summary reports accuracy after each round (``evaluate.metrics``: ``rounds``).

    reasonlab eval -d gsm8k -n 50 -s conversation -t 0.7 -O critic.model=qwen2.5-coder-1.5b
    reasonlab eval -d gsm8k -n 50 -s conversation -t 0.7 -O mode=debate -O agents=3 -O rounds=2
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from reasonlab.data import Problem
from reasonlab.engines import Engine, Message
from reasonlab.errors import ConfigError
from reasonlab.strategies.base import Attempt, Budget, Strategy, Trace
from reasonlab.strategies.variants import Member, MemberEngines
from reasonlab.strategies.vote import tally, winner

CRITIC = ("Here is a math problem and a proposed solution.\n\nProblem:\n{question}\n\nProposed solution:\n{solution}"
          "\n\nCheck the solution step by step. If you find an error, name the first one and say how to fix it. End "
          "your reply with the line 'VERDICT: CORRECT' if the solution and its final answer are right, or "
          "'VERDICT: WRONG' if not.")
REVISE = ("A reviewer checked your solution and wrote:\n\n{critique}\n\nTaking the review into account, solve the "
          "problem again step by step, and put your final answer within \\boxed{{}}.")
DEBATE = ("Here are solutions to the problem from other agents:\n\n{others}\n\nUsing their reasoning as additional "
          "information, examine your own solution and theirs, then give your updated solution step by step, with "
          "the final answer within \\boxed{{}}.")
VERDICT = re.compile(r"VERDICT:\s*\**\s*(CORRECT|WRONG|INCORRECT)", re.IGNORECASE)
# Without the asked-for line, a verdict in the forms reviewers use instead (the 1.5B ends 22 of 50 reviews so):
# a boxed word, or "the solution (and its final answer) is/are correct" — the last one said counts
VERDICT_BOXED = re.compile(r"\\boxed\{\s*(?:\\text(?:bf)?\{)?\s*(CORRECT|WRONG|INCORRECT)\s*\}?\s*\}", re.IGNORECASE)
VERDICT_SAID = re.compile(r"\b(?:solution|answer)\b[^.\n]{0,40}?\b(?:is|are)\s+(?:(not)\s+)?(correct|right|incorrect|wrong)\b",
                          re.IGNORECASE)


class ConversationConfig(BaseModel):
    """A solver and a critic, or a debate; every option has the published protocol's default."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["conversation"] = "conversation"
    mode: Literal["critic", "debate"] = Field("critic", description="critic: solve, check, revise; debate: agents "
                                                                    "answer, read each other, answer again")
    rounds: int = Field(2, ge=1, description="critic: most revisions; debate: rounds after the first answers")
    agents: int = Field(3, ge=2, description="debate: agents")
    solver: Member = Field(default_factory=Member, description="critic: the solving model (default: the run's)")
    critic: Member | None = Field(None, description="critic: the checking model (None: the solver's)")
    members: tuple[Member, ...] = Field((), description="debate: agent i is members[i mod len] (empty: the run's)")
    critic_max_tokens: int = Field(384, ge=16, description="critic: the longest review")
    on_unclear: Literal["stop", "revise"] = Field("stop", description="critic: a review without a verdict line ends "
                                                                      "the conversation (no error named) or asks "
                                                                      "for a revision anyway")
    others_chars: int = Field(2000, ge=100, description="debate: each other agent's solution is shown up to its "
                                                        "last this many characters (its conclusion)")
    critic_prompt: str = Field(CRITIC, description="the critic's request: {question}, {solution}")
    revise_prompt: str = Field(REVISE, description="the solver's next turn: {critique}")
    debate_prompt: str = Field(DEBATE, description="an agent's next turn: {others}")


def verdict(review: str) -> bool | None:
    """The critic's verdict: True (agrees), False (names an error), None (none found); the last one counts.

    The asked-for line ``VERDICT: CORRECT|WRONG`` rules; without it, a boxed verdict; then a closing sentence
    such as "The solution and its final answer are correct."

    >>> verdict("Step 2 is wrong.\\nVERDICT: WRONG"), verdict("All fine. VERDICT: **CORRECT**"), verdict("hmm")
    (False, True, None)
    """
    if found := VERDICT.findall(review):
        return found[-1].upper() == "CORRECT"
    if found := VERDICT_BOXED.findall(review):
        return found[-1].upper() == "CORRECT"
    if said := VERDICT_SAID.findall(review):
        negated, word = said[-1]
        return (word.lower() in ("correct", "right")) != bool(negated)
    return None


def fill(template: str, **slots: str) -> str:
    """Plain substitution ({name} slots; {{ and }} for literal braces), safe for LaTeX-heavy slot values."""
    out = template.replace("{{", "\x00").replace("}}", "\x01")
    for k, v in slots.items():
        out = out.replace("{" + k + "}", v.replace("{", "\x02").replace("}", "\x03"))
    return out.replace("\x00", "{").replace("\x01", "}").replace("\x02", "{").replace("\x03", "}")


class Conversation(Strategy):
    name = "conversation"
    Config = ConversationConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cfg: ConversationConfig = self.config  # type: ignore[assignment]
        if not self.prompt.chat:
            raise ConfigError("strategy 'conversation' talks in chat turns: use a chat prompt template (boxed, "
                              "plain, tir or your own), not completion")
        if cfg.mode == "critic":
            self._members = (cfg.solver, cfg.critic or cfg.solver)
        else:
            self._members = cfg.members or (Member(),)
            if self.params.greedy and len({m.model for m in self._members}) < 2:
                raise ConfigError("strategy 'conversation': a greedy debate of one model has identical agents: set "
                                  "--temperature above 0, or give members different models")
        self._engines = MemberEngines(self._members)

    def close(self) -> None:
        self._engines.close()

    # --- one turn -------------------------------------------------------------------------------------------
    def _turn(self, engine: Engine, messages: list[Message], sample: int, max_tokens: int | None,
              tags: dict[str, Any]) -> Trace:
        prompt = engine.render_chat(messages)
        seed = None if self.params.seed is None else self.params.seed + sample
        update: dict[str, Any] = {"n": 1, "seed": seed}
        if max_tokens is not None:
            update["max_tokens"] = min(max_tokens, self.params.max_tokens)
        gen = engine.generate([prompt], self.params.model_copy(update=update))[0]
        answer = None if tags["role"] == "critic" else self.verifier.extract(gen.text)
        trace = Trace.from_generation(gen, answer, sample=sample)
        return trace.model_copy(update={"prompt": prompt, "tags": tags})

    def _opening(self) -> list[Message]:
        return [{"role": "system", "content": self.prompt.system}] if self.prompt.system else []

    def _ask(self, problem: Problem) -> Message:
        return {"role": "user", "content": self.prompt.user.replace("{question}", problem.question)}

    # --- the two protocols ------------------------------------------------------------------------------------
    def solve(self, problem: Problem, engine: Engine, budget: Budget) -> Attempt:
        cfg: ConversationConfig = self.config  # type: ignore[assignment]
        start = time.perf_counter()
        deadline = budget.deadline(start)
        spent = lambda traces: sum(t.completion_tokens for t in traces)  # noqa: E731

        def out_of_budget(traces: list[Trace]) -> bool:
            return ((deadline is not None and time.perf_counter() > deadline)
                    or (budget.max_tokens is not None and spent(traces) >= budget.max_tokens))

        if cfg.mode == "critic":
            attempt = self._critic(problem, engine, out_of_budget)
        else:
            attempt = self._debate(problem, engine, out_of_budget)
        attempt.seconds = time.perf_counter() - start
        return attempt

    def _critic(self, problem: Problem, engine: Engine, out_of_budget: Any) -> Attempt:
        cfg: ConversationConfig = self.config  # type: ignore[assignment]
        solver, critic = self._engines.get(0, engine), self._engines.get(1, engine)
        names = {"solver": self._engines.name(0, engine), "critic": self._engines.name(1, engine)}
        messages = self._opening() + [self._ask(problem)]
        traces = [self._turn(solver, messages, 0, None, {"role": "solver", "round": 0, "model": names["solver"]})]
        holder = 0  # the trace whose answer stands
        round_traces = [holder]
        verdicts: list[bool | None] = []
        stop = "done"
        for r in range(1, cfg.rounds + 1):
            if traces[holder].finish_reason == "error":
                stop = "error"
                break
            if out_of_budget(traces):
                stop = "budget"
                break
            solution = traces[-1].text
            review = self._turn(critic, self._opening() + [{"role": "user", "content": fill(
                cfg.critic_prompt, question=problem.question, solution=solution)}], len(traces),
                cfg.critic_max_tokens, {"role": "critic", "round": r, "model": names["critic"]})
            traces.append(review)
            v = verdict(review.text)
            verdicts.append(v)
            if v is True or (v is None and cfg.on_unclear == "stop"):
                stop = "agreed" if v else "unclear review"
                break
            messages = messages + [{"role": "assistant", "content": solution},
                                   {"role": "user", "content": fill(cfg.revise_prompt, critique=review.text.strip())}]
            traces.append(self._turn(solver, messages, len(traces), None,
                                     {"role": "solver", "round": r, "model": names["solver"]}))
            if traces[-1].answer is not None:
                holder = len(traces) - 1
            round_traces.append(holder)
        else:
            stop = "rounds"
        for i, t in enumerate(traces):  # only the turn holding the final answer votes
            if i != holder:
                t.valid, t.dropped = False, "critique" if t.tags["role"] == "critic" else "revised"
        final = traces[holder].answer
        return Attempt(answer=final, traces=traces, votes={final: 1.0} if final is not None else {}, stop_reason=stop,
                       meta={"mode": "critic", "round_traces": round_traces, "verdicts": verdicts,
                             "revisions": len(round_traces) - 1})

    def _debate(self, problem: Problem, engine: Engine, out_of_budget: Any) -> Attempt:
        cfg: ConversationConfig = self.config  # type: ignore[assignment]
        n = cfg.agents
        who = [i % len(self._members) for i in range(n)]
        engines = [self._engines.get(m, engine) for m in who]
        opening = self._opening() + [self._ask(problem)]
        histories: list[list[Message]] = [list(opening) for _ in range(n)]
        traces: list[Trace] = []
        latest: list[int] = []  # per agent, its newest trace
        round_traces: list[int | None] = []
        stop = "rounds"
        with ThreadPoolExecutor(max_workers=n, thread_name_prefix="debate") as pool:  # a round decodes together
            for r in range(cfg.rounds + 1):
                if r and out_of_budget(traces):
                    stop = "budget"
                    break
                if r:
                    for i in range(n):
                        others = "\n\n".join(f"Agent {j + 1}:\n{traces[latest[j]].text[-cfg.others_chars:].strip()}"
                                             for j in range(n) if j != i)
                        histories[i] = histories[i] + [{"role": "assistant", "content": traces[latest[i]].text},
                                                       {"role": "user", "content": fill(cfg.debate_prompt,
                                                                                        others=others)}]
                first = len(traces)
                turns = list(pool.map(lambda i: self._turn(
                    engines[i], histories[i], first + i, None,
                    {"role": "agent", "round": r, "agent": i, "model": self._engines.name(who[i], engine)}), range(n)))
                traces += turns
                latest = [first + i for i in range(n)]
                round_traces.append(self._majority_trace(problem, traces, latest))
                if any(t.finish_reason == "error" for t in turns):
                    stop = "error"
                    break
        last = set(latest)
        for i, t in enumerate(traces):
            if i not in last or t.answer is None:
                t.valid, t.dropped = False, "earlier round" if i not in last else "no answer"
        groups = tally([(traces[i].answer, 1.0, i) for i in latest if traces[i].answer is not None], self.verifier,
                       problem.answer_type)
        return Attempt(answer=winner(groups), traces=traces, votes={g.answer: g.weight for g in groups},
                       stop_reason=stop, meta={"mode": "debate", "round_traces": round_traces,
                                               "agents": n, "rounds_run": len(round_traces) - 1})

    def _majority_trace(self, problem: Problem, traces: list[Trace], ids: list[int]) -> int | None:
        """The first of ``ids`` whose answer is the round's majority (None: no agent answered)."""
        voters = [(traces[i].answer, 1.0, i) for i in ids if traces[i].answer is not None]
        best = winner(tally(voters, self.verifier, problem.answer_type))  # type: ignore[arg-type]
        return next((i for i in ids if traces[i].answer is not None and
                     self.verifier.equivalent(traces[i].answer, best, problem.answer_type)), None)
