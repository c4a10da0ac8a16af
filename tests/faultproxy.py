"""A fault-injecting HTTP proxy on 127.0.0.1 for reliability tests: it stands in front of a live
OpenAI-compatible server and, per request, forwards it or answers with one of the faults a flaky
server produces: HTTP 500, a dropped connection, a delay, a 200 whose body is not JSON. It can also
go down (refuse connections) and come back.

Faults are deterministic per prompt, so a test knows which problems fail: a *poisoned* prompt fails
every time while ``poisoned`` is on; every other prompt fails its first ``flaky`` attempts (cycling
through the fault kinds) and then goes through.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

FAULTS = ("500", "drop", "garbage", "delay")


class FaultProxy:
    def __init__(self, upstream: str, poison: set[int] | None = None, flaky: int = 1, delay_s: float = 1.0) -> None:
        self.upstream = upstream.rstrip("/")
        self.poison = poison or set()  # indices (in order of first sight) of prompts that always fail
        self.poisoned = True
        self.flaky = flaky
        self.delay_s = delay_s
        self.lock = threading.Lock()
        self.seen: dict[str, int] = {}  # prompt -> index of first sight
        self.tries: dict[str, int] = {}  # prompt -> requests so far
        self.faults: dict[str, int] = {k: 0 for k in FAULTS}
        self.forwarded = 0
        self.client = httpx.Client(timeout=300)
        self._server: ThreadingHTTPServer | None = None
        self.port = 0
        self._start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _start(self) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self._forward(None)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self._forward(body)

            def _send(self, status: int, payload: bytes, ctype: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _forward(self, body: bytes | None) -> None:
                # only generation requests are numbered and faulted: probes (templates, tokenizers) pass
                fault = proxy.decide(body) if self.path.endswith("completions") else None
                if fault == "drop":
                    self.connection.shutdown(socket.SHUT_RDWR)  # the client sees a reset / closed connection
                    self.close_connection = True
                    return
                if fault == "500":
                    self._send(500, b'{"error": "injected"}')
                    return
                if fault == "garbage":
                    self._send(200, b"<html>bad gateway</html>", "text/html")
                    return
                if fault == "delay":
                    time.sleep(proxy.delay_s)
                url = proxy.upstream.removesuffix("/v1") + self.path
                resp = proxy.client.request(self.command, url, content=body,
                                            headers={"Content-Type": "application/json"})
                self._send(resp.status_code, resp.content, resp.headers.get("content-type", "application/json"))

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def decide(self, body: bytes | None) -> str | None:
        """The fault for this request (None: forward it)."""
        if not body:
            return None
        try:
            req = json.loads(body)
        except ValueError:
            return None
        prompt = json.dumps(req.get("prompt", req.get("messages")))
        with self.lock:
            idx = self.seen.setdefault(prompt, len(self.seen))
            tries = self.tries[prompt] = self.tries.get(prompt, 0) + 1
            if self.poisoned and idx in self.poison:
                fault = FAULTS[tries % 2]  # 500 and drop: a problem that never gets through
            elif tries <= self.flaky:
                fault = FAULTS[(idx + tries) % len(FAULTS)]
            else:
                fault = None
            if fault is None:
                self.forwarded += 1
            else:
                self.faults[fault] += 1
            return fault

    def outage(self, seconds: float) -> None:
        """Go down (connections refused) for ``seconds``, then come back on the same port."""
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

        def back() -> None:
            time.sleep(seconds)
            self._start()

        threading.Thread(target=back, daemon=True).start()

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        self.client.close()
