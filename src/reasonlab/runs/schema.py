"""The run record: what a run directory keeps for every problem, typed once.

One ``ProblemRecord`` per finished problem (a line of ``results.jsonl``), one ``ErrorRecord`` per failed
attempt at a problem (a line of ``errors.jsonl``, kept apart: a failure is not a wrong answer). Later work
reads these back — training turns traces with their verdicts into data, data generation continues a
trace from the prompt exactly as the model saw it — so a record keeps that prompt, every trace's text,
events and verdict.

Fields added later get defaults, and unknown fields are kept (``extra="allow"``), so run directories
written by older versions still read.

    >>> r = ProblemRecord(id="7", question="1+1?", gold="2", answer="2", correct=True, prompt="<q>1+1?",
    ...                   traces=[TraceRecord(text="so \\\\boxed{2}", answer="2", correct=True)])
    >>> r.trace_prompt(r.traces[0]), ProblemRecord.model_validate_json(r.model_dump_json()) == r
    ('<q>1+1?', True)
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class TraceRecord(BaseModel):
    """One trace as stored: the strategy's ``Trace`` plus its verdict."""

    model_config = ConfigDict(extra="allow")

    text: str = Field("", description="what the model wrote after the prompt, injected text included")
    answer: str | None = Field(None, description="the answer extracted from text, None if none")
    correct: bool = Field(False, description="the verifier's verdict on answer against the gold answer")
    completion_tokens: int = 0
    prompt_tokens: int = 0
    finish_reason: str = "stop"
    seconds: float = 0.0
    events: list[dict[str, Any]] = Field(default_factory=list, description="tool calls, waits, cuts, reminders")
    sample: int = Field(0, description="which sample of the problem (its seed offset)")
    tags: dict[str, Any] = Field(default_factory=dict, description="prompt variant, model, branch path, vote key")
    token_logprobs: list[float] | None = None
    confidence: float | None = None
    score: float | None = Field(None, description="the outcome verifier's P(correct), when a run scored traces")
    valid: bool = Field(True, description="False: the trace did not vote")
    dropped: str | None = Field(None, description="why it did not vote")
    prefilled_tokens: int = Field(0, description="prompt tokens the engine evaluated, over all the trace's calls")
    cached_tokens: int = Field(0, description="prompt tokens served from the engine's prefix cache instead")
    prompt: str | None = Field(None, description="the raw prompt this trace continued, when it differs from the "
                                                 "record's (prompt variants, mixtures); None: the record's prompt")
    prompt_token_ids: list[int] | None = Field(None, description="that prompt's token ids, when it differs from the "
                                                                 "record's; None: the record's")
    token_ids: list[int] | None = Field(None, description="the ids after the prompt as the model read them: what it "
                                                          "sampled, and injected text; None without a vocabulary")
    injected: list[tuple[int, int]] = Field(default_factory=list,
                                            description="spans [start, end) of token_ids a policy added (tool output, "
                                                        "waits), tokenised on their own: not sampled")


class ProblemRecord(BaseModel):
    """One finished problem: the graded attempt with every trace (a line of results.jsonl)."""

    model_config = ConfigDict(extra="allow")

    id: str
    question: str = ""
    gold: Any = None
    answer: str | None = None
    correct: bool = False
    grade_note: str = ""
    tokens: int = Field(0, description="generated tokens, all traces")
    prompt_tokens: int = 0
    seconds: float = Field(0.0, description="wall time of the problem")
    finish_reason: str = "stop"
    stop_reason: str = "done"
    votes: dict[str, float] = Field(default_factory=dict)
    strategy_meta: dict[str, Any] = Field(default_factory=dict)
    prompt: str | None = Field(None, description="the raw text the model continued, exactly as rendered (chat "
                                                 "template applied); None in runs made before it was kept")
    prompt_token_ids: list[int] | None = Field(None, description="the prompt's token ids as the model read them "
                                                                 "(BOS included); None without a vocabulary")
    messages: list[dict[str, str]] | None = Field(None, description="the chat messages, when the server rendered "
                                                                    "them itself and no rendered prompt exists")
    budget_seconds: float | None = None
    traces: list[TraceRecord] = Field(default_factory=list)
    meta: dict[str, Any] = Field(default_factory=dict, description="the problem's own metadata")

    def trace_prompt(self, trace: TraceRecord) -> str | None:
        """The raw prompt ``trace`` continued: its own when it had one, else the record's."""
        return trace.prompt if trace.prompt is not None else self.prompt

    def trace_prompt_ids(self, trace: TraceRecord) -> list[int] | None:
        """The token ids of the prompt ``trace`` continued."""
        return trace.prompt_token_ids if trace.prompt_token_ids is not None else self.prompt_token_ids


class ErrorRecord(BaseModel):
    """A problem that failed (a line of errors.jsonl): not an answer, retried by the next run unless permanent."""

    model_config = ConfigDict(extra="allow")

    id: str
    error: str = Field(..., description="why, in one line")
    retryable: bool = Field(True, description="False: retrying cannot help (a prompt longer than the context)")
    attempts: int = Field(1, description="failed attempts at this problem so far, across runs of the directory")
    time: str = Field("", description="when it failed (UTC, ISO 8601)")
