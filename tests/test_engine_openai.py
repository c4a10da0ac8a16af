"""The OpenAI-compatible engine against a live llama.cpp server on 127.0.0.1, and against bad servers."""

from __future__ import annotations

import http.server
import json
import threading

import pytest

from reasonlab.engines import SamplingParams, load_engine
from reasonlab.engines.openai import OpenAIEngine
from reasonlab.errors import EngineError

from conftest import free_port


def test_completions_and_chat(llama_server) -> None:
    eng = OpenAIEngine(llama_server, concurrency=2)
    assert eng.model == "smollm2"  # the first id the server lists
    params = SamplingParams(max_tokens=8, temperature=0.0)
    gens = eng.generate(["1, 2, 3, 4,", "a, b, c, d,"], params)
    assert [g.index for g in gens] == [0, 1]
    assert gens[0].text.strip().startswith("5") and gens[0].completion_tokens > 0
    chat = eng.chat([[{"role": "user", "content": "Say hello."}]], params)[0]
    assert chat.text.strip() and chat.finish_reason in ("stop", "length")
    eng.close()


def test_n_samples_filled_when_server_ignores_n(llama_server) -> None:
    eng = load_engine(llama_server)  # a URL as the model picks the openai engine
    gens = eng.generate(["Once upon a time"], SamplingParams(n=3, temperature=1.0, max_tokens=6, seed=1))
    assert len(gens) == 3 and [g.sample for g in gens] == [0, 1, 2]
    eng.close()


def test_stop_and_max_tokens(llama_server) -> None:
    eng = OpenAIEngine(llama_server)
    g = eng.generate(["1, 2, 3, 4, 5, 6, 7, 8,"], SamplingParams(max_tokens=30, stop=["10"]))[0]
    assert g.text.strip() == "9," and g.finish_reason == "stop"
    g = eng.generate(["1, 2, 3, 4, 5, 6, 7, 8,"], SamplingParams(max_tokens=4))[0]
    assert g.finish_reason == "length" and g.completion_tokens == 4
    eng.close()


def test_chat_template_and_token_count_from_server(llama_server, smol_engine) -> None:
    eng = OpenAIEngine(llama_server)
    assert eng.count_tokens("hello world, how are you?") == smol_engine.count_tokens("hello world, how are you?")
    eng.close()


def test_dead_server_is_one_clear_error() -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(EngineError, match=rf"127\.0\.0\.1:{port}.*did not answer after 2 tries"):
        OpenAIEngine(f"http://127.0.0.1:{port}", max_retries=1, backoff_s=0.01)


class _Handler(http.server.BaseHTTPRequestHandler):
    mode = "garbage"
    hits = 0

    def log_message(self, *args) -> None:
        pass

    def _send(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._send(200, json.dumps({"data": [{"id": "fake"}]}).encode())

    def do_POST(self) -> None:
        type(self).hits += 1
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.mode == "garbage" or self.mode == "garbage-once" and type(self).hits == 1:
            self._send(200, b"<html>definitely not json</html>")
        elif self.mode == "too-long":
            self._send(400, b'{"error": {"message": "the request exceeds the available context size"}}')
        elif self.mode == "no-choices":
            self._send(200, json.dumps({"object": "text_completion"}).encode())
        elif self.mode == "flaky" and type(self).hits < 3:
            self._send(503, b"busy")
        else:
            body = {"choices": [{"text": " ok", "finish_reason": "stop"}], "usage": {"completion_tokens": 1}}
            self._send(200, json.dumps(body).encode())


@pytest.fixture
def fake_server():
    servers = []

    def start(mode: str) -> str:
        handler = type("H", (_Handler,), {"mode": mode, "hits": 0})
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}/v1"

    yield start
    for srv in servers:
        srv.shutdown()


@pytest.mark.parametrize("mode", ["garbage", "no-choices"])
def test_garbage_replies_are_retried_like_a_5xx(fake_server, mode: str) -> None:
    url = fake_server(mode)
    eng = OpenAIEngine(url, max_retries=2, backoff_s=0.01)
    with pytest.raises(EngineError, match="after 3 tries: a reply that is not the JSON the API promises") as info:
        eng.generate(["x"], SamplingParams(max_tokens=2))
    assert info.value.retryable


def test_a_garbage_reply_then_a_good_one_succeeds(fake_server) -> None:
    eng = OpenAIEngine(fake_server("garbage-once"), max_retries=2, backoff_s=0.01)
    assert eng.generate(["x"], SamplingParams(max_tokens=2))[0].text == " ok"


def test_a_prompt_over_the_context_fails_for_good(fake_server) -> None:
    eng = OpenAIEngine(fake_server("too-long"), max_retries=3, backoff_s=0.01)
    with pytest.raises(EngineError, match="HTTP 400") as info:
        eng.generate(["x"], SamplingParams(max_tokens=2))
    assert not info.value.retryable


def test_retries_through_503(fake_server) -> None:
    eng = OpenAIEngine(fake_server("flaky"), max_retries=3, backoff_s=0.01)
    assert eng.generate(["x"], SamplingParams(max_tokens=2))[0].text == " ok"


def test_budget_forcing_through_the_completions_endpoint(llama_server) -> None:
    """Budget forcing is raw continuation: it works against a live OpenAI-compatible server too."""
    from reasonlab.answers import Verifier
    from reasonlab.data import Problem
    from reasonlab.strategies import Budget, get_template, make_strategy

    eng = OpenAIEngine(llama_server)
    with Verifier() as v:
        # llama-cpp-python's server has no template endpoint: the raw completion prompt, as for a base model
        s = make_strategy("forced", {"max_thinking": 12}, get_template("completion"),
                          SamplingParams(temperature=0.0, max_tokens=64), v)
        t = s.solve(Problem(id="p", question="What is 6 times 7?", answer="42"), eng, Budget()).traces[0]
    assert t.finish_reason == "cut" and "Final Answer: \\boxed{" in t.text and t.answer is not None
    assert t.completion_tokens >= 12
