"""The Python sandbox against hostile cells: each contained, nothing outside its temp dir changed,
the harness still running (the next cell works)."""

from __future__ import annotations

import os
import socket

import pytest

from reasonlab.sandbox import PythonSandbox, SandboxPool


@pytest.fixture(scope="module")
def sb():
    with PythonSandbox(timeout_s=3.0, memory_mb=1536) as box:
        yield box


def alive(box: PythonSandbox) -> None:
    res = box.run("print(6 * 7)")
    assert (res.stdout, res.error) == ("42\n", None)


def test_state_persists_and_reset_clears(sb) -> None:
    assert sb.run("x = 41\nimport sympy").ok
    assert sb.run("print(x + 1, sympy.sqrt(8))").stdout == "42 2*sqrt(2)\n"
    sb.reset()
    res = sb.run("print(x)")
    assert "NameError" in res.error and not res.crashed


def test_error_gives_traceback_tail(sb) -> None:
    res = sb.run("def f():\n    return 1 / 0\nf()")
    assert res.error.splitlines()[-1] == "ZeroDivisionError: division by zero"
    alive(sb)


def test_output_is_truncated(sb) -> None:
    res = sb.run("print('y' * 100000)")
    assert res.truncated and len(res.stdout) == sb.max_output_chars
    alive(sb)


HOSTILE = [
    # (category, code, what the error must say)
    ("infinite-loop", "while True:\n    pass", "TimeoutError"),
    ("memory-bomb", "x = bytearray(8 * 1024 ** 3)", "MemoryError"),
    ("fork-bomb", "import os\nwhile True:\n    os.fork()", "PermissionError"),
    ("subprocess", "import os\nos.system('touch /tmp/pwned-by-cell')", "PermissionError"),
    ("subprocess-module", "import subprocess", "PermissionError"),
    ("kill-parent", "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)", "PermissionError"),
    ("signal-tampering", "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)", "PermissionError"),
    ("alarm-tampering", "import signal\nsignal.alarm(1)", "PermissionError"),
    ("socket", "import socket\nsocket.create_connection(('127.0.0.1', 22))", "PermissionError"),
    ("ctypes", "import ctypes\nctypes.string_at(0)", "PermissionError"),
    ("raise-rlimit", "import resource\nresource.setrlimit(resource.RLIMIT_AS, (-1, -1))", "PermissionError"),
    ("read-user-file", "print(open('/etc/passwd').read())", "PermissionError"),
    ("write-outside", "open('/tmp/pwned-by-cell', 'w').write('x')", "PermissionError"),
    ("list-outside", "import os\nprint(os.listdir('/root'))", "PermissionError"),
    ("exit", "import os\nos._exit(3)", "crashed"),
    ("segfault", "import faulthandler\nfaulthandler._sigsegv()", "crashed"),
    ("system-exit", "raise SystemExit(1)", "SystemExit"),
]


@pytest.mark.parametrize("category,code,expect", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_cell_is_contained(sb, category: str, code: str, expect: str) -> None:
    res = sb.run(code)
    assert not res.ok and expect in res.error
    if category == "infinite-loop":
        assert res.timed_out
    if expect == "crashed":
        assert res.crashed
    assert not os.path.exists("/tmp/pwned-by-cell")
    alive(sb)  # the harness goes on, with a fresh worker where one was lost


def test_files_outside_are_untouched(sb, tmp_path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("do not read or delete")
    for code in (f"open({str(secret)!r}).read()", f"import os\nos.remove({str(secret)!r})",
                 f"import os\nos.rename({str(secret)!r}, 'stolen.txt')", f"open({str(secret)!r}, 'a').write('x')"):
        res = sb.run(code)
        assert "PermissionError" in res.error, code
    assert secret.read_text() == "do not read or delete"


def test_private_temp_dir_is_writable_and_cleared(sb) -> None:
    assert sb.run("open('notes.txt', 'w').write('hello')").ok
    assert sb.run("print(open('notes.txt').read())").stdout == "hello\n"
    sb.reset()
    assert "FileNotFoundError" in sb.run("open('notes.txt').read()").error


def test_no_network_even_without_the_hook(sb) -> None:
    # with a network namespace there is no interface to reach; the hook refuses sockets regardless
    if sb.facts.get("network_namespace"):
        assert "PermissionError" in sb.run("import _socket").error
    with socket.socket() as s:  # the parent's own network is unaffected
        s.bind(("127.0.0.1", 0))


def test_pool_reuses_and_resets() -> None:
    with SandboxPool(size=1, timeout_s=3.0) as pool:
        with pool.sandbox() as box:
            box.run("secret = 1")
            first = box
        with pool.sandbox() as box:
            assert box is first  # warm: the same worker, reused
            assert "NameError" in box.run("print(secret)").error


def test_pool_is_capped_and_stops_idle_workers() -> None:
    import threading

    peak, lock, gate = [0], threading.Lock(), threading.Barrier(2)

    def use(pool: SandboxPool) -> None:
        with pool.sandbox() as box:
            with lock:
                peak[0] = max(peak[0], pool.alive)
            try:
                gate.wait(timeout=2)  # the first two hold their sandboxes together; the others queue
            except threading.BrokenBarrierError:
                pass
            assert box.run("print(6 * 7)").stdout == "42\n"

    with SandboxPool(size=1, max_size=2, idle_s=0.0, timeout_s=5.0) as pool:
        threads = [threading.Thread(target=use, args=(pool,)) for _ in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert peak[0] == 2  # five traces at once, never more than two workers
        with pool.sandbox():
            pass
        assert pool.alive == 1  # the extra worker, idle past idle_s, was stopped; the warm one stays


def test_default_cap_comes_from_the_machine() -> None:
    from reasonlab.sandbox import default_pool_cap

    assert 2 <= default_pool_cap() <= 4 * len(__import__("os").sched_getaffinity(0))
