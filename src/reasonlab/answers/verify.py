"""The verifier: ``extract(text)`` and ``equivalent(pred, gold)``, thread-safe, no signals.

Numbers are compared directly (most GSM8K/AIME answers never reach sympy); anything else goes to
math-verify running in a small pool of worker processes, each killed and replaced when it exceeds
``timeout_s``, so a pathological expression costs one timeout, not a hung run.

    >>> v = Verifier()
    >>> v.equivalent("18.00", "18"), v.equivalent("025", 25), v.equivalent("17", "18")
    (True, True, False)
    >>> v.grade("... so she makes \\\\boxed{\\\\$18}.", "18").correct
    True
"""

from __future__ import annotations

import json
import math
import os
import queue
import re
import select
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Any

from reasonlab.answers.extract import DEFAULT_FALLBACKS, Fallback, extract_answer
from reasonlab.answers.normalize import AnswerType, normalize, to_number
from reasonlab.errors import ReasonlabError


_BOXED = re.compile(r"\\(?:boxed|fbox)\b")
_DELIMITERS = re.compile(r"(?<!\\)\$|\\\(|\\\[|\\boxed|\\fbox")  # an escaped \$ (dollars) is not one


def has_delimiters(text: str) -> bool:
    """Does ``text`` mark its own math (``$…$``, ``\\(…\\)``, ``\\[…\\]``, ``\\boxed{}``)? Then math-verify
    gets it as written; otherwise the whole text is one formula and is wrapped in ``$…$``.

    >>> has_delimiters("Therefore $x \\\\geq 5$."), has_delimiters("x \\\\geq 5")
    (True, False)
    """
    return _DELIMITERS.search(text) is not None


@dataclass(frozen=True)
class VerifierConfig:
    """How answers are found and compared."""

    fallbacks: tuple[Fallback, ...] = DEFAULT_FALLBACKS  # tried in order when there is no \boxed{}
    answer_type: AnswerType = "auto"  # default normalisation when a call does not name one
    rel_tol: float = 1e-6  # numeric equality tolerance (relative) for non-integer answers
    symbolic: bool = True  # send non-numeric answers to math-verify
    timeout_s: float = 5.0  # wall-clock limit for one symbolic comparison
    workers: int = 1  # math-verify worker processes (each ~150 MB once sympy is loaded)
    cache_size: int = 100_000  # remembered (pred, gold) verdicts; votes repeat the same pairs


@dataclass(frozen=True)
class Grade:
    answer: str | None  # extracted answer, None if the text gives none
    correct: bool
    note: str = ""  # e.g. "symbolic timeout"


class _Worker:
    """A math-verify process. It answers on a private pipe, not on its stdout: sympy and latex2sympy
    print now and then, and a stray line read as a reply would be a wrong (and cached) verdict."""

    def __init__(self) -> None:
        read_fd, write_fd = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "reasonlab.answers._worker", str(write_fd)],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                text=True,
                bufsize=1,
                pass_fds=(write_fd,),
            )
        finally:
            os.close(write_fd)  # the child holds its end; ours would keep the pipe open after it dies
        self.replies = os.fdopen(read_fd, "r", buffering=1, encoding="utf-8")
        if self._read(timeout=120.0) is None:  # importing sympy is the slow part, once
            self.kill()
            raise ReasonlabError("the math-verify worker did not start (is math-verify installed? pip install math-verify)")

    def _read(self, timeout: float) -> dict[str, Any] | None:
        ready, _, _ = select.select([self.replies], [], [], timeout)
        if not ready:
            return None
        line = self.replies.readline()
        return json.loads(line) if line else None

    def ask(self, gold: str, pred: str, timeout: float) -> dict[str, Any] | None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"gold": gold, "pred": pred}) + "\n")
        self.proc.stdin.flush()
        return self._read(timeout)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.replies.close()


class _Pool:
    """Worker processes handed out one per call; a worker that times out or dies is replaced."""

    def __init__(self, size: int) -> None:
        self._idle: queue.Queue[_Worker | None] = queue.Queue()
        for _ in range(size):
            self._idle.put(None)  # spawned lazily: grading numbers never pays for sympy
        self._all: list[_Worker] = []
        self._lock = threading.Lock()

    def verify(self, gold: str, pred: str, timeout: float) -> tuple[bool, str]:
        worker = self._idle.get()
        try:
            if worker is None:
                worker = _Worker()
                with self._lock:
                    self._all.append(worker)
            try:
                reply = worker.ask(gold, pred, timeout)
            except (BrokenPipeError, OSError, ValueError):
                reply = None
            if reply is None:
                worker.kill()
                worker = None
                return False, "symbolic timeout"
            return bool(reply.get("ok")), str(reply.get("error", ""))
        finally:
            self._idle.put(worker)

    def close(self) -> None:
        with self._lock:
            for w in self._all:
                if w.proc.poll() is None:
                    w.kill()
            self._all.clear()


class Verifier:
    """Extraction policy + equivalence; one instance per run, safe to share between threads."""

    def __init__(self, config: VerifierConfig | None = None) -> None:
        self.config = config or VerifierConfig()
        self._pool = _Pool(self.config.workers)
        self._cache: dict[tuple[str, str, str], tuple[bool, str]] = {}
        self._cache_lock = threading.Lock()

    def extract(self, text: str) -> str | None:
        return extract_answer(text, self.config.fallbacks)

    def check(self, pred: object, gold: object, answer_type: AnswerType | None = None) -> tuple[bool, str]:
        """(equivalent, note). ``gold`` is the reference: math-verify's verify is not symmetric.

        ``pred`` may be a bare answer or a whole completion. A completion with a ``\\boxed{}`` is graded by
        its last one (reasonlab's extraction policy; math-verify would join several boxed answers into a
        set, so "\\boxed{1} ... \\boxed{2}" would match a gold {1, 2}). Anything else goes to math-verify
        as it is: wrapped in ``$…$`` only when it has no math delimiters of its own, so relations,
        matrices and intervals written inside sentences parse.
        """
        if pred is None or str(pred).strip() == "":
            return False, "no answer"
        pred_text, gold_text = str(pred), str(gold)
        if _BOXED.search(pred_text):
            extracted = self.extract(pred_text)
            if extracted is None:
                return False, "no answer"
            pred_text = extracted
        kind = answer_type or self.config.answer_type
        p, g = normalize(pred_text, kind), normalize(gold_text, kind)
        if p == g:
            return True, ""
        comma = kind != "latex"
        vp, vg = to_number(p, comma), to_number(g, comma)
        if vp is not None and vg is not None:
            if kind in ("int", "mod1000") or (vg == int(vg) and vp == int(vp)):
                return vp == vg, ""
            return math.isclose(vp, vg, rel_tol=self.config.rel_tol, abs_tol=1e-12), ""
        if kind in ("int", "mod1000") or not self.config.symbolic:
            return False, ""
        # math-verify gets each side as written: normalising is for the cheap checks above (it strips a "$" at
        # each end only, and spacing commands that LaTeX environments need)
        sp, sg = pred_text.strip(), gold_text.strip()
        key = (sp, sg, kind)
        with self._cache_lock:
            hit = self._cache.get(key)
        if hit is not None:
            return hit
        verdict = self._pool.verify(sg, sp, self.config.timeout_s)
        with self._cache_lock:
            if len(self._cache) >= self.config.cache_size:
                self._cache.clear()
            self._cache[key] = verdict
        return verdict

    def equivalent(self, pred: object, gold: object, answer_type: AnswerType | None = None) -> bool:
        return self.check(pred, gold, answer_type)[0]

    def grade(self, text: str, gold: object, answer_type: AnswerType | None = None) -> Grade:
        answer = self.extract(text)
        ok, note = self.check(answer, gold, answer_type)
        return Grade(answer=answer, correct=ok, note=note)

    def reward(self, completions: list[Any], answer: list[Any], answer_type: list[Any] | None = None,
               **_: Any) -> list[float | None]:
        """TRL reward function (GRPOTrainer ``reward_funcs``): 1.0 for a correct final answer, else 0.0, and
        None where the gold answer itself cannot be graded (empty, or not a number where one is expected), so
        TRL leaves that row out, as its own accuracy reward does.

        ``completions`` are strings or chat messages (the last message's content is graded); ``answer`` is the
        dataset column of gold answers, ``answer_type`` an optional column of their types.

            >>> Verifier().reward(["so \\\\boxed{4}", "\\\\boxed{5}", "\\\\boxed{1}"], ["4", "4", ""])
            [1.0, 0.0, None]
        """
        texts = [c[-1]["content"] if isinstance(c, list) else str(c) for c in completions]
        kinds = answer_type or [None] * len(texts)
        out: list[float | None] = []
        for text, gold, kind in zip(texts, answer, kinds):
            if not self.gradable(gold, kind):
                out.append(None)
            else:
                out.append(1.0 if self.grade(text, gold, kind).correct else 0.0)
        return out

    def gradable(self, gold: object, answer_type: AnswerType | None = None) -> bool:
        """Can ``gold`` be graded at all? (Not when empty, nor a non-number where the type wants a number.)"""
        if gold is None or str(gold).strip() == "":
            return False
        kind = answer_type or self.config.answer_type
        if kind in ("number", "int", "mod1000"):
            return to_number(normalize(str(gold), kind), True) is not None
        return True

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> Verifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
