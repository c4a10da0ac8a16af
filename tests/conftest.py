"""Shared fixtures: real engines on tiny local models, a live llama.cpp server on loopback."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from reasonlab.engines.base import Engine, Generation, Message, SamplingParams


@pytest.fixture(scope="session")
def smol_path() -> Path:
    from reasonlab.engines.models import ensure

    return ensure("smollm2-135m")  # `make test` pulls it; a clear ModelError otherwise


@pytest.fixture(scope="session")
def smol_engine(smol_path: Path):
    from reasonlab.engines.llamacpp import LlamaCppEngine

    eng = LlamaCppEngine(smol_path, n_ctx=2048, name="smollm2-135m")
    yield eng
    eng.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def llama_server(smol_path: Path, tmp_path_factory):
    """A real `python -m llama_cpp.server` serving smollm2 on 127.0.0.1."""
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    with log.open("w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(smol_path), "--model_alias", "smollm2",
             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "2"],
            stdout=fh, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/v1"
    wait_ready(proc, url, log, "llama_cpp.server")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


LLAMA_SERVER_BIN = Path(__file__).resolve().parents[1] / ".cache" / "llama-server" / "llama-server"


def wait_ready(proc: subprocess.Popen, url: str, log: Path, what: str) -> None:
    deadline = time.monotonic() + 180  # readiness wait, not a timing assertion
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"{what} did not become ready")
        time.sleep(0.3)


@pytest.fixture(scope="session")
def llamacpp_server(smol_path: Path, tmp_path_factory):
    """llama.cpp's own `llama-server` (continuous batching over 4 slots, /apply-template, /tokenize) serving
    smollm2 on 127.0.0.1; `make test` builds it (`make llama-server`)."""
    if not LLAMA_SERVER_BIN.exists():
        pytest.fail(f"{LLAMA_SERVER_BIN} is missing: `make llama-server` builds it (`make test` does)")
    port = free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with log.open("w") as fh:
        proc = subprocess.Popen(
            [str(LLAMA_SERVER_BIN), "-m", str(smol_path), "--host", "127.0.0.1", "--port", str(port),
             "-c", "8192", "-np", "4", "-t", "2", "--no-webui"],
            stdout=fh, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/v1"
    wait_ready(proc, url, log, "llama-server")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="session")
def tiny_hf_dir(tmp_path_factory) -> Path:
    """A randomly initialised 2-layer Llama with a word-level tokenizer built here, saved to disk."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = "the answer is one two three four five six seven eight nine zero plus minus equals boxed".split()
    specials = ["<pad>", "<s>", "</s>", "<unk>", "<|user|>", "<|assistant|>"]
    vocab = {w: i for i, w in enumerate(specials + words + list("0123456789{}\\+=.?"))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")
    fast.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} {% endfor %}"
                          "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      bos_token_id=1, eos_token_id=2, pad_token_id=0)
    model = LlamaForCausalLM(cfg)
    out = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(out)
    fast.save_pretrained(out)
    return out


class ScriptedEngine(Engine):
    """A scripted fake engine for pure logic tests (runner, store): returns canned texts in order.

    Not a model: it only replays ``script`` (cycling), so what is under test is the code around it.
    """

    backend = "scripted"

    def __init__(self, script: list[str], max_concurrency: int = 1, fail_on: set[int] | None = None) -> None:
        super().__init__("scripted")
        self.script = script
        self.max_concurrency = max_concurrency
        self.calls = 0
        self.fail_on = fail_on or set()

    def generate(self, prompts: list[str], params: SamplingParams, cancel=None) -> list[Generation]:
        from reasonlab.errors import EngineError

        out = []
        for i, _ in enumerate(prompts):
            for s in range(params.n):
                k = self.calls
                self.calls += 1
                if k in self.fail_on:
                    raise EngineError(f"scripted failure on call {k}")
                out.append(Generation(text=self.script[k % len(self.script)], index=i, sample=s,
                                      completion_tokens=10, prompt_tokens=5, seconds=0.01))
        return out

    def render_chat(self, messages: list[Message]) -> str:
        return "\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\nassistant:"

    def count_tokens(self, text: str) -> int:
        return len(text.split())


WORDS = ("what is one two three four five six seven eight nine plus minus times equals the answer boxed so "
         "yes no good bad").split()


@pytest.fixture(scope="session")
def tiny_qwen(tmp_path_factory) -> Path:
    """A 2-layer Qwen2 (random weights) with a byte-level BPE tokenizer trained here on a few words and a ChatML
    template, saved to disk. (transformers 5 loads a qwen2 directory's tokenizer as Qwen2Tokenizer whatever
    tokenizer.json holds, so the tokenizer must be a byte-level BPE like Qwen's.)"""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([" ".join(WORDS)] * 50 + [" the answer is \\boxed{4} ?"] * 20 + [str(i) for i in range(100)],
                            trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      tie_word_embeddings=False, eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id,
                      bos_token_id=None,
                      initializer_range=0.5)  # a frozen head of the usual 0.02 scale leaves LoRA no room to be sure
    out = tmp_path_factory.mktemp("tiny-qwen2")
    Qwen2ForCausalLM(cfg).save_pretrained(out)
    fast.save_pretrained(out)
    return out
