"""The sandbox worker: a long-lived Python process that runs untrusted cells, one at a time.

Started by ``PythonSandbox`` as ``python -I .../_worker.py TMPDIR MEMORY_MB`` (by path and isolated: it
imports nothing of reasonlab, only the standard library and the math stack). It talks over
two private pipes whose descriptors it is given on its command line (its stdout/stderr go nowhere, so
a cell that writes to fd 1 cannot corrupt the protocol). Before the first cell it locks itself down, in order:

1. imports the math stack a cell is expected to use (so ``import sympy`` inside a cell is a cache hit);
2. rlimits: address space, file size, open files, core dumps, processes;
3. a new network namespace where the kernel allows one (root, or unprivileged user namespaces);
4. drops root to ``nobody`` (then RLIMIT_NPROC applies and file permissions protect the user's files);
5. a Python audit hook that refuses sockets, process creation, signals to other processes, ctypes,
   setrlimit, and any file access outside the private temp dir (reads also allowed under Python's
   own library directories, for imports); signal-handler changes are refused too.

What it does not guarantee is written in ``reasonlab/sandbox/__init__.py``.
"""

from __future__ import annotations

import io
import json
import os
import resource
import signal
import sys
import time
import traceback
from typing import Any

PRELOAD = ("math", "fractions", "itertools", "functools", "collections", "decimal", "statistics", "random",
           "numpy", "sympy")
BLOCKED_EVENTS = {
    "socket.__new__", "socket.bind", "socket.connect", "socket.getaddrinfo", "socket.sendto", "socket.gethostbyname",
    "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "pty.spawn",
    "os.kill", "os.killpg", "signal.pthread_kill", "resource.setrlimit", "resource.prlimit", "sys.addaudithook",
    "ctypes.dlopen", "ctypes.dlsym", "ctypes.call_function", "ctypes.addressof", "ctypes.cdata",
    "ctypes.string_at", "ctypes.wstring_at", "os.chroot", "os.setuid", "os.setgid", "mmap.__new__",
    "webbrowser.open", "urllib.Request", "ftplib.connect", "smtplib.connect", "http.client.connect",
}
WRITE_EVENTS = {"os.remove", "os.rmdir", "os.rename", "os.chmod", "os.chown", "os.truncate", "os.mkdir",
                "os.symlink", "os.link", "os.utime", "shutil.rmtree"}
LIST_EVENTS = {"os.listdir", "os.scandir", "glob.glob"}
BLOCKED_MODULES = {"_posixsubprocess", "_ctypes", "ctypes", "_socket", "socket", "pty", "multiprocessing",
                   "_multiprocessing", "subprocess", "asyncio", "ssl", "_ssl"}


class _Capped(io.TextIOBase):
    """A text sink that keeps at most ``limit`` characters (an output flood cannot exhaust memory)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.parts, self.size, self.truncated = limit, [], 0, False

    def write(self, s: str) -> int:
        room = self.limit - self.size
        if room > 0:
            self.parts.append(s[:room])
            self.size += min(len(s), room)
        if len(s) > room:
            self.truncated = True
        return len(s)

    def getvalue(self) -> str:
        return "".join(self.parts)


def _unshare_network() -> bool:
    import ctypes  # imported here and dropped from sys.modules below: a cell must not reach it
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    CLONE_NEWNET, CLONE_NEWUSER = 0x40000000, 0x10000000
    if libc.unshare(CLONE_NEWNET) == 0:
        return True
    return libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0


def _lock_down(tmp: str, memory_mb: int) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    for name in PRELOAD:
        try:
            __import__(name)
        except ImportError:
            pass
    limit = memory_mb << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 20, 64 << 20))
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    facts["network_namespace"] = _unshare_network()
    if os.geteuid() == 0:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)  # nobody: from here RLIMIT_NPROC counts, root's files are root's
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0)) if os.geteuid() != 0 else None
    facts["uid"] = os.geteuid()
    os.chdir(tmp)
    os.environ.clear()
    os.environ.update({"HOME": tmp, "TMPDIR": tmp, "PATH": "/usr/bin:/bin"})
    for mod in list(sys.modules):
        if mod.split(".")[0] in BLOCKED_MODULES:
            del sys.modules[mod]
    # handlers for signals: a cell may not install or change them (the parent's SIGKILL cannot be caught anyway)
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError("the sandbox does not allow changing signal handling")

    import _signal

    for mod in (signal, _signal):
        for fn in ("signal", "setitimer", "alarm", "pthread_kill", "pthread_sigmask", "siginterrupt", "sigwait"):
            if hasattr(mod, fn):
                setattr(mod, fn, refuse)
    readable = tuple({os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, *sys.path) if p}
                     | {"/usr/lib", "/usr/share/zoneinfo", "/dev/null", "/dev/urandom", "/proc/self",
                        "/sys/devices/system/cpu", "/etc/localtime"})
    tmp_real = os.path.realpath(tmp)

    def inside(path: Any, roots: tuple[str, ...]) -> bool:
        if isinstance(path, int):  # an already open descriptor
            return True
        if isinstance(path, bytes):
            path = path.decode(errors="replace")
        real = os.path.realpath(os.path.join(tmp_real, str(path)))
        return any(real == r or real.startswith(r.rstrip("/") + "/") for r in roots)

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event in BLOCKED_EVENTS:
            raise PermissionError(f"the sandbox does not allow {event}")
        if event == "import" and args[0].split(".")[0] in BLOCKED_MODULES:
            raise PermissionError(f"the sandbox does not allow importing {args[0]}")
        if event == "open":
            path, mode = args[0], args[1] or "r"
            writing = any(c in str(mode) for c in "wax+") or (isinstance(args[2], int) and args[2] & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
            if path is not None and not inside(path, (tmp_real,) if writing else (tmp_real, *readable)):
                raise PermissionError(f"the sandbox does not allow opening {path} ({'write' if writing else 'read'})")
        elif event in WRITE_EVENTS or event in LIST_EVENTS:
            roots = (tmp_real,) if event in WRITE_EVENTS else (tmp_real, *readable)
            for p in args[:2]:
                if isinstance(p, (str, bytes, os.PathLike)) and not inside(os.fspath(p), roots):
                    raise PermissionError(f"the sandbox does not allow {event} on {p}")

    sys.addaudithook(hook)
    return facts


def _tail(exc: BaseException, lines: int = 4) -> str:
    tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
    text = "".join(tb).rstrip().splitlines()
    return "\n".join(text[-lines:])


def main() -> None:
    tmp, memory_mb, req_fd, rep_fd = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    requests = os.fdopen(req_fd, "r", encoding="utf-8")
    replies = os.fdopen(rep_fd, "w", encoding="utf-8")
    facts = _lock_down(tmp, memory_mb)
    namespace: dict[str, Any] = {"__name__": "__main__"}
    replies.write(json.dumps({"ready": True, **facts}) + "\n")
    replies.flush()
    for line in requests:
        req = json.loads(line)
        if req["op"] == "reset":
            namespace = {"__name__": "__main__"}
            for entry in os.scandir(tmp):  # the hook allows the private dir
                (os.remove if entry.is_file() else _rmtree)(entry.path)
            replies.write('{"ok": true}\n')
            replies.flush()
            continue
        out = _Capped(req["max_output"])
        start = time.perf_counter()
        error = None
        saved = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = out
        try:
            exec(compile(req["code"], "<cell>", "exec"), namespace)
        except MemoryError:
            error = "MemoryError: the cell exceeded the sandbox's memory limit"
        except BaseException as exc:  # SystemExit, KeyboardInterrupt from the cell included
            error = _tail(exc)
        finally:
            sys.stdout, sys.stderr = saved
        replies.write(json.dumps({"stdout": out.getvalue(), "error": error, "truncated": out.truncated,
                                  "duration_s": time.perf_counter() - start}) + "\n")
        replies.flush()


def _rmtree(path: str) -> None:
    for entry in os.scandir(path):
        (os.remove if entry.is_file() else _rmtree)(entry.path)
    os.rmdir(path)


if __name__ == "__main__":
    main()
