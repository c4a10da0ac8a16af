"""Replay a stored run's samples through any strategy: the same traces, another stopping rule.

A vote run that kept every sample (``-O keep_logprobs=true``) holds, per problem, k traces with their
token log-probs. ``ReplayEngine`` serves them back: sample s of a problem's prompt is the run's trace s
(the strategy's seeds number the samples), and the strategy's cancel hook is asked after each of its
tokens with that token's recorded log-prob — so a rule that would have cut the trace at token 120 is
charged 120 tokens. Every stopping rule is then compared on identical samples (a paired comparison),
by the strategy code a live run uses. A cut trace's text is not recorded token by token: it replays as
empty text, which is what a cut trace contributes to a vote anyway.

It is not a model: prompts it has no record of, or more samples than were kept, raise an error.
"""

from __future__ import annotations

from typing import Any

from reasonlab.engines.base import CancelFn, Engine, Generation, Message, SamplingParams
from reasonlab.errors import EngineError


class ReplayEngine(Engine):
    backend = "replay"

    def __init__(self, records: list[dict[str, Any]], template: Any, base_seed: int = 0, model: str = "replay") -> None:
        super().__init__(model)
        self.base_seed = base_seed
        self._by_prompt: dict[str, list[dict[str, Any]]] = {}
        for rec in records:
            traces = sorted(rec.get("traces", []), key=lambda t: t.get("sample", 0))
            self._by_prompt[template.render(self, rec["question"])] = traces

    def render_chat(self, messages: list[Message]) -> str:
        return "".join(f"<|{m['role']}|>{m['content']}\n" for m in messages) + "<|assistant|>"

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def generate(self, prompts: list[str], params: SamplingParams, cancel: CancelFn | None = None) -> list[Generation]:
        out = []
        for i, prompt in enumerate(prompts):
            traces = self._by_prompt.get(prompt)
            if traces is None:
                raise EngineError("replay: no recorded samples for this prompt (another template or dataset?)")
            first = (params.seed or 0) - self.base_seed
            for s in range(params.n):
                idx = first + s
                if not 0 <= idx < len(traces):
                    raise EngineError(f"replay: sample {idx} asked, the run kept {len(traces)}")
                out.append(self._replay(traces[idx], i, s, params, cancel))
        return out

    @staticmethod
    def _replay(t: dict[str, Any], i: int, s: int, params: SamplingParams, cancel: CancelFn | None) -> Generation:
        n = int(t.get("completion_tokens", 0))
        lps = t.get("token_logprobs") or []
        limit = min(n, params.max_tokens)
        if cancel is not None:
            for j in range(limit):
                if cancel(i, s, j + 1, lps[j] if j < len(lps) else None):
                    secs = t.get("seconds", 0.0) * (j + 1) / max(1, n)
                    return Generation(text="", index=i, sample=s, prompt_tokens=t.get("prompt_tokens", 0),
                                      completion_tokens=j + 1, finish_reason="cancelled", seconds=secs,
                                      token_logprobs=lps[: j + 1] if params.logprobs is not None else None)
        if limit < n:
            raise EngineError(f"replay: max_tokens {params.max_tokens} is below the recorded trace's {n} tokens")
        return Generation(text=t.get("text", ""), index=i, sample=s, prompt_tokens=t.get("prompt_tokens", 0),
                          completion_tokens=n, finish_reason=t.get("finish_reason", "stop"),
                          seconds=t.get("seconds", 0.0),
                          token_logprobs=lps[:n] if params.logprobs is not None else None)
