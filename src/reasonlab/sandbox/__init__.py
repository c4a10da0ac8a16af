"""A warm, locked-down Python sandbox for model-written code (tool-integrated reasoning).

    >>> with PythonSandbox(timeout_s=5) as sb:                      # doctest: +SKIP
    ...     sb.run("x = 6 * 7").error, sb.run("print(x)").stdout
    (None, '42\\n')

Every cell is treated as hostile. A cell runs in a long-lived worker process (state persists across
cells like a Jupyter kernel until ``reset()``); the worker imported sympy/numpy before locking itself
down, so cells start in milliseconds. A cell that hangs is killed at ``timeout_s`` (SIGKILL to the
worker's process group — nothing in the cell can catch it); a cell that kills or crashes its worker
is reported as ``crashed``; either way a fresh worker takes its place and the caller goes on.

What is guaranteed (Linux):
- the worker is a separate process in its own session; the caller's memory and state are unreachable;
- wall-clock limit per cell (parent-enforced SIGKILL), address-space limit (MemoryError inside the
  cell), file-size limit, open-file limit, no core dumps, output kept to ``max_output_chars``;
- when started as root the worker drops to ``nobody`` (so RLIMIT_NPROC forbids new processes and the
  user's files are protected by their permissions), and it enters a new network namespace when the
  kernel allows (root or unprivileged user namespaces): then there is no network at all;
- a Python audit hook refuses: sockets, subprocess/os.system/exec/spawn/fork, os.kill, changing
  rlimits, ctypes, mmap, signal-handler changes, opening files for writing outside the private temp
  dir, reading or listing files outside it and Python's own library directories, deleting or renaming
  anything outside it.
What is not: a Python-level sandbox is not a virtual machine. The audit hook is defeated by a bug
in CPython or in a C extension the cell can reach (numpy, sympy); without root or user namespaces
the network namespace and the privilege drop are unavailable and only the audit hook stands
between a cell and the network; CPU time inside the limit and memory up to ``memory_mb`` are the
cell's to use. Run untrusted models' code in a container or VM when that matters.
"""

from __future__ import annotations

import json
import os
import threading
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from reasonlab.errors import ReasonlabError

WORKER = Path(__file__).with_name("_worker.py")


@dataclass(frozen=True)
class CellResult:
    """What one cell did."""

    stdout: str  # printed output (stdout and stderr together), at most max_output_chars
    error: str | None  # the traceback's last lines, or why the cell was stopped
    timed_out: bool = False
    crashed: bool = False  # the worker died (os._exit, segfault, killed): its state is gone
    truncated: bool = False
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


class PythonSandbox:
    """One warm worker. Use as a context manager, or call ``close()``.

    Args:
        timeout_s: wall-clock limit per cell.
        memory_mb: address-space limit of the worker (the math stack itself takes ~300 MB of it).
        max_output_chars: printed output kept per cell.
    """

    def __init__(self, timeout_s: float = 10.0, memory_mb: int = 1536, max_output_chars: int = 4000) -> None:
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.max_output_chars = max_output_chars
        self.facts: dict[str, Any] = {}
        self.restarts = 0
        self._proc: subprocess.Popen | None = None
        self._start()

    # -- worker lifecycle -----------------------------------------------------------------------
    def _start(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix="reasonlab-sandbox-")
        if os.geteuid() == 0:
            os.chown(self.tmp, 65534, 65534)  # the worker runs as nobody
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        env = {"PATH": "/usr/bin:/bin", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "LANG": "C.UTF-8"}
        # pass_fds keeps the pipe ends' numbers in the worker; it is told them on its command line
        self._proc = subprocess.Popen(
            [sys.executable, "-I", str(WORKER), self.tmp, str(self.memory_mb), str(req_r), str(rep_w)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=(req_r, rep_w), start_new_session=True, env=env, cwd=self.tmp,
        )
        os.close(req_r)
        os.close(rep_w)
        self._req = os.fdopen(req_w, "w", encoding="utf-8")
        self._rep = os.fdopen(rep_r, "r", encoding="utf-8")
        ready = self._read(timeout=120.0)
        if not ready or not ready.get("ready"):
            self._kill()
            raise ReasonlabError("the Python sandbox worker did not start (are numpy and sympy installed?)")
        self.facts = {k: v for k, v in ready.items() if k != "ready"}

    def _read(self, timeout: float) -> dict[str, Any] | None:
        ready, _, _ = select.select([self._rep], [], [], timeout)
        if not ready:
            return None
        line = self._rep.readline()
        if not line:
            return None
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            return None  # a cell scribbled on the protocol pipe: treat the worker as lost

    def _kill(self) -> None:
        proc = self._proc
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the whole session: anything it managed to start goes too
        except ProcessLookupError:
            pass
        proc.wait()
        for fh in (getattr(self, "_req", None), getattr(self, "_rep", None)):
            try:
                fh and fh.close()
            except OSError:
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)
        self._proc = None

    def _replace(self) -> None:
        self._kill()
        self.restarts += 1
        self._start()

    # -- public ---------------------------------------------------------------------------------
    def run(self, code: str) -> CellResult:
        """Run one cell in this sandbox's persistent namespace."""
        if self._proc is None:
            self._start()
        start = time.perf_counter()
        try:
            self._req.write(json.dumps({"op": "run", "code": code, "max_output": self.max_output_chars}) + "\n")
            self._req.flush()
            reply = self._read(self.timeout_s)
        except (BrokenPipeError, OSError, ValueError):
            reply = None
        elapsed = time.perf_counter() - start
        if reply is not None:
            return CellResult(stdout=reply["stdout"], error=reply["error"], truncated=reply["truncated"],
                              duration_s=reply["duration_s"])
        timed_out = self._proc is not None and self._proc.poll() is None and elapsed >= self.timeout_s * 0.99
        self._replace()
        if timed_out:
            return CellResult(stdout="", error=f"TimeoutError: the cell ran longer than {self.timeout_s:g} s and was "
                              "stopped; the sandbox was restarted (its variables are gone)", timed_out=True,
                              duration_s=elapsed)
        return CellResult(stdout="", error="the cell crashed the Python worker (exit, fatal signal or killed); "
                          "the sandbox was restarted (its variables are gone)", crashed=True, duration_s=elapsed)

    def reset(self) -> None:
        """Forget every variable and file of earlier cells (a fresh trace gets a clean kernel)."""
        if self._proc is None:
            self._start()
            return
        try:
            self._req.write('{"op": "reset"}\n')
            self._req.flush()
            ok = self._read(self.timeout_s)
        except (BrokenPipeError, OSError):
            ok = None
        if not ok:
            self._replace()

    def close(self) -> None:
        self._kill()

    def __enter__(self) -> PythonSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


WORKER_MB = 100  # measured: a warm worker with numpy and sympy imported holds 64 MB RSS; ~100 MB after real cells


def default_pool_cap(cpus: int | None = None, available_mb: int | None = None) -> int:
    """Most sandbox workers alive at once: 4 per core (a trace holds its sandbox while the model writes,
    so a few per core keep the cores busy), and never more than a quarter of available memory allows.

    >>> default_pool_cap(2, 24_000), default_pool_cap(64, 8_000), default_pool_cap(1, 100)
    (8, 20, 2)
    """
    cpus = cpus or len(os.sched_getaffinity(0))
    if available_mb is None:
        available_mb = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // (1 << 20)
    return max(2, min(4 * cpus, available_mb // 4 // WORKER_MB))


class SandboxPool:
    """Warm sandboxes reused across traces; each is reset when returned.

    ``size`` workers start warm; more start on demand while all are busy, up to ``max_size`` (default:
    ``default_pool_cap()``, from the machine's cores and free memory), and then callers wait for one to
    come back. Workers beyond ``size`` that sat idle for ``idle_s`` are stopped when the pool is next used.

        >>> pool = SandboxPool(size=2)                               # doctest: +SKIP
        >>> with pool.sandbox() as sb:                                # doctest: +SKIP
        ...     sb.run("print(1 + 1)").stdout
        '2\\n'
    """

    def __init__(self, size: int = 2, max_size: int | None = None, idle_s: float = 60.0, **options: Any) -> None:
        self.options = options
        self.size = size
        self.max_size = max(size, max_size if max_size is not None else default_pool_cap())
        self.idle_s = idle_s
        self._idle: list[tuple[PythonSandbox, float]] = []  # most recently returned last
        self._alive = 0
        self._all: set[PythonSandbox] = set()  # idle or in use: close() stops them all
        self._closed = False
        self._cv = threading.Condition()
        for _ in range(size):
            sb = PythonSandbox(**options)
            self._all.add(sb)
            self._idle.append((sb, time.monotonic()))
            self._alive += 1

    @property
    def alive(self) -> int:
        """Workers alive now (idle or in use)."""
        with self._cv:
            return self._alive

    def _take(self) -> PythonSandbox:
        with self._cv:
            while True:
                if self._idle:
                    return self._idle.pop()[0]
                if self._alive < self.max_size:
                    self._alive += 1
                    break
                self._cv.wait()
        try:
            sb = PythonSandbox(**self.options)
            with self._cv:
                self._all.add(sb)
            return sb
        except BaseException:
            with self._cv:
                self._alive -= 1
                self._cv.notify()
            raise

    def _give_back(self, sb: PythonSandbox) -> None:
        now = time.monotonic()
        with self._cv:
            if self._closed:
                self._all.discard(sb)
                sb.close()
                return
            self._idle.append((sb, now))
            # the oldest idle workers beyond the warm ones go once idle for idle_s
            stale = [w for w, t in self._idle[: max(0, len(self._idle) - self.size)] if now - t >= self.idle_s]
            self._idle = [(w, t) for w, t in self._idle if w not in stale]
            self._alive -= len(stale)
            self._all.difference_update(stale)
            self._cv.notify()
        for w in stale:
            w.close()

    @contextmanager
    def sandbox(self) -> Iterator[PythonSandbox]:
        sb = self._take()
        try:
            yield sb
        finally:
            sb.reset()
            self._give_back(sb)

    def close(self) -> None:
        with self._cv:
            self._closed = True
            every, self._all, self._idle, self._alive = list(self._all), set(), [], 0
        for sb in every:
            sb.close()

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
