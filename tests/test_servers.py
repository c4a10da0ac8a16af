"""The default prompt, a vote and budget forcing against real servers: llama-cpp-python's server (no
template endpoint) and llama.cpp's own llama-server (template and tokenize endpoints, continuous
batching), both serving smollm2 on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from reasonlab.engines.openai import OpenAIEngine
from reasonlab.errors import ConfigError
from reasonlab.evaluate import EvalConfig, evaluate
from reasonlab.runs import read_run

pytestmark = pytest.mark.slow


def cfg(url: str, **top) -> EvalConfig:
    layers = {"engine": {"model": url}, "dataset": {"limit": 2}, "sampling": {"max_tokens": 24}}
    for key, value in top.items():
        layers.setdefault(key, {}).update(value) if isinstance(value, dict) else layers.__setitem__(key, value)
    return EvalConfig.from_layers(layers)


def test_default_prompt_without_a_template_endpoint_goes_to_the_chat_endpoint(tmp_path, llama_server) -> None:
    s = evaluate(cfg(llama_server), out=tmp_path / "run", progress=False)
    assert s["n"] == 2 and s["failed"] == 0 and s["mean_tokens"] > 0
    rec = read_run(tmp_path / "run").records[0]
    assert rec.prompt is None and rec.messages[-1]["role"] == "user" and "\\boxed{}" in rec.messages[-1]["content"]


def test_default_prompt_rendered_by_the_served_models_gguf(tmp_path, llama_server, smol_path) -> None:
    s = evaluate(cfg(llama_server, engine={"tokenizer": str(smol_path)}), out=tmp_path / "run", progress=False)
    rec = read_run(tmp_path / "run").records[0]
    assert s["n"] == 2 and rec.messages is None and rec.prompt.startswith("<|im_start|>")
    assert rec.prompt.rstrip().endswith("<|im_start|>assistant")


def test_a_served_model_id_that_is_a_gguf_path_is_its_own_tokenizer(llama_server, smol_path, smol_engine) -> None:
    eng = OpenAIEngine(llama_server, model=str(smol_path))  # llama-cpp-python reports the path without an alias
    msgs = [{"role": "user", "content": "What is 2 + 2?"}]
    assert eng.can_render_chat() and eng.render_chat(msgs) == smol_engine.render_chat(msgs)
    eng.close()


def test_raw_continuation_without_a_template_fails_at_once_naming_the_flag(tmp_path, llama_server) -> None:
    with pytest.raises(ConfigError, match="--tokenizer"):
        evaluate(cfg(llama_server, strategy="forced", strategy_options={"max_thinking": 8}), out=tmp_path / "run",
                 progress=False)
    assert not (tmp_path / "run" / "results.jsonl").exists()


def test_vote_over_the_chat_endpoint_and_forced_with_a_tokenizer(tmp_path, llama_server, smol_path) -> None:
    vote = cfg(llama_server, strategy="vote", strategy_options={"samples": 3},
               sampling={"temperature": 0.8, "seed": 1})
    s = evaluate(vote, out=tmp_path / "vote", progress=False)
    assert s["n"] == 2 and s["mean_traces"] == 3
    forced = cfg(llama_server, engine={"tokenizer": str(smol_path)}, strategy="forced",
                 strategy_options={"max_thinking": 12})
    s = evaluate(forced, out=tmp_path / "forced", progress=False)
    traces = [t for r in read_run(tmp_path / "forced").records for t in r.traces]
    assert s["n"] == 2 and all(t.finish_reason == "cut" and "Final Answer: \\boxed{" in t.text for t in traces)


def test_cli_tokenizer_flag(tmp_path, llama_server, smol_path) -> None:
    cmd = [sys.executable, "-m", "reasonlab.cli", "eval", "--model", llama_server, "--tokenizer", str(smol_path),
           "-d", "gsm8k", "-n", "1", "--max-tokens", "16", "-o", str(tmp_path / "run"), "--json", "--no-progress"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["n"] == 1
    assert read_run(tmp_path / "run").config["config"]["engine"]["tokenizer"] == str(smol_path)


# --- llama.cpp's llama-server: it renders templates and tokenizes itself ------------------------------------
def test_llama_server_renders_the_template_and_counts_tokens(llamacpp_server, smol_engine) -> None:
    eng = OpenAIEngine(llamacpp_server)
    msgs = [{"role": "user", "content": "What is 2 + 2?"}]
    assert eng.can_render_chat() and eng._renderer() == "server"
    assert eng.render_chat(msgs) == smol_engine.render_chat(msgs)
    assert eng.count_tokens("hello world, how are you?") == smol_engine.count_tokens("hello world, how are you?")
    eng.close()


def test_default_prompt_vote_and_forcing_against_llama_server(tmp_path, llamacpp_server) -> None:
    s = evaluate(cfg(llamacpp_server, concurrency=4), out=tmp_path / "single", progress=False)
    rec = read_run(tmp_path / "single").records[0]
    assert s["n"] == 2 and rec.prompt.startswith("<|im_start|>") and rec.messages is None
    vote = cfg(llamacpp_server, strategy="vote", strategy_options={"samples": 4}, sampling={"temperature": 0.8,
                                                                                             "seed": 1})
    s = evaluate(vote, out=tmp_path / "vote", progress=False)
    assert s["n"] == 2 and s["mean_traces"] == 4 and "samples" in s
    forced = cfg(llamacpp_server, strategy="forced", strategy_options={"max_thinking": 12})
    s = evaluate(forced, out=tmp_path / "forced", progress=False)
    traces = [t for r in read_run(tmp_path / "forced").records for t in r.traces]
    assert s["n"] == 2 and all(t.finish_reason == "cut" and "Final Answer: \\boxed{" in t.text for t in traces)
