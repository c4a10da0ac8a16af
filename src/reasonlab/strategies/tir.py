"""Tool-integrated reasoning (ToRA, NuminaMath TIR): the model writes Python, the sandbox runs it,
the output goes back into the trace, and generation continues.

Generation stops at the fence that closes a ```python block (the stop string "```\\n", which the
opening "```python" does not match); the engines report which stop string fired (``stop_reason``).
The block is dedented and run in a warm sandbox that keeps its state across the calls of one trace;
its output — or the traceback's last lines plus an optional nudge — is injected as an ```output block
and the model continues the same raw text. A block left open when generation ends is never run.

    >>> split_code("Let me compute.\\n```python\\n    print(6 * 7)\\n")
    'print(6 * 7)\\n'
    >>> split_code("no code here") is None
    True
"""

from __future__ import annotations

import re
import textwrap
import threading
from contextlib import ExitStack
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from reasonlab.data import Problem
from reasonlab.engines import Engine, SamplingParams
from reasonlab.strategies.base import Trace, TraceCancel, TracePolicy, TraceWriter

FENCE_END = "```\n"  # stops at a closing fence (and at a plain opening one), never at "```python"
CODE_OPEN = re.compile(r"```(?:python3?|py)[ \t]*\n")


class TIRConfig(BaseModel):
    """Tool-integrated reasoning with a Python sandbox."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["tir"] = "tir"
    max_calls: int = Field(4, ge=0, description="code executions per trace; after that the model must finish")
    timeout_s: float = Field(5.0, gt=0, description="wall-clock limit per code cell")
    memory_mb: int = Field(1536, ge=256, description="the sandbox worker's address-space limit")
    max_output_chars: int = Field(600, ge=16, description="output injected back per call (truncated beyond)")
    error_nudge: str | None = Field("The code raised an error; let me fix it.\n",
                                    description="text added after an error output; None adds nothing")
    force_code: bool = Field(False, description="open a ```python block after the first paragraph")
    max_sandboxes: int | None = Field(None, ge=1, description="most sandbox workers alive at once (~100 MB each); "
                                                             "None: 4 per core, within a quarter of free memory")


def split_code(text: str) -> str | None:
    """The (dedented) code of the python block ``text`` ends inside, or None if it ends outside one."""
    opens = list(CODE_OPEN.finditer(text))
    if not opens:
        return None
    body = text[opens[-1].end():]
    if "```" in body:  # that block was closed already
        return None
    return textwrap.dedent(body)


class TIR(TracePolicy):
    name = "tir"
    continues_raw = True
    Config = TIRConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pool: Any = None
        self._pool_lock = threading.Lock()

    def _sandboxes(self) -> Any:
        from reasonlab.sandbox import SandboxPool

        with self._pool_lock:  # warm sandboxes, created on first use, more started while all are busy
            if self._pool is None:
                cfg: TIRConfig = self.config  # type: ignore[assignment]
                self._pool = SandboxPool(size=1, max_size=cfg.max_sandboxes, timeout_s=cfg.timeout_s,
                                         memory_mb=cfg.memory_mb,
                                         max_output_chars=cfg.max_output_chars)
            return self._pool

    def trace(self, problem: Problem, engine: Engine, prompt: str, params: SamplingParams, sample: int,
              cancel: TraceCancel | None = None) -> Trace:
        cfg: TIRConfig = self.config  # type: ignore[assignment]
        limit = params.max_tokens
        w = TraceWriter(engine, prompt, params, sample, cancel)
        with ExitStack() as stack:
            sb = None  # a sandbox is taken only when the trace first runs code
            if cfg.force_code:
                w.more(min(limit, 256), ("\n\n",))
                w.text += "\n\n```python\n"
                w.events.append({"type": "forced_code"})
            while True:
                if w.used >= limit:
                    w.finish = "length"
                    break
                tools_open = tool_calls_in(w.events) < cfg.max_calls
                gen = w.more(limit - w.used, params.stop + ((FENCE_END,) if tools_open else ()))
                if gen.error:
                    break
                code = split_code(w.text) if tools_open and gen.finish_reason == "stop" else None
                # engines that cannot say which stop fired (some servers) report None: an open block means the fence
                at_fence = gen.stop_reason == FENCE_END or (gen.stop_reason is None and code is not None)
                if not at_fence:
                    break  # the model finished, hit the token limit, was cancelled, or hit a caller's stop string
                if code is None:
                    w.text += FENCE_END  # a plain fence, not a python block's end: give it back, go on
                    if gen.completion_tokens == 0:
                        break
                    continue
                if sb is None:
                    sb = stack.enter_context(self._sandboxes().sandbox())
                res = sb.run(code)
                shown = (res.stdout if res.ok else res.stdout + (res.error or ""))[: cfg.max_output_chars].rstrip("\n")
                w.text += f"{FENCE_END}```output\n{shown}\n{FENCE_END}"
                if not res.ok and cfg.error_nudge:
                    w.text += cfg.error_nudge
                w.events.append({"type": "tool", "code": code, "output": res.stdout, "error": res.error,
                                 "timed_out": res.timed_out, "crashed": res.crashed,
                                 "duration_s": round(res.duration_s, 4)})
        return w.trace(self.verifier)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None


def tool_calls_in(events: list[dict[str, Any]]) -> int:
    """Code cells the sandbox ran, of a trace's events."""
    return sum(1 for e in events if e.get("type") == "tool")


def tool_calls(trace: Trace) -> int:
    """Code cells the sandbox ran for ``trace``."""
    return tool_calls_in(trace.events)


def invented_outputs(trace: Trace) -> int:
    """```output blocks in the text that the sandbox did not write (the model made them up)."""
    return max(0, trace.text.count("```output") - tool_calls(trace))
