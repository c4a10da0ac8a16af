"""Token-id prompts: generations carry their ids, policies continue a trace by the ids the model sampled.

The continuation logic runs on a scripted fake engine with a toy vocabulary (named as such: it replays
canned texts); the engine side runs on smollm2 (llama.cpp, both paths), the tiny hf model and live servers.
"""

from __future__ import annotations

import pytest

from reasonlab.answers import Verifier
from reasonlab.data import Problem
from reasonlab.engines import Engine, Generation, SamplingParams
from reasonlab.engines.base import spelled_ids
from reasonlab.strategies import Budget, get_template, make_strategy
from reasonlab.strategies.base import Continuation
from reasonlab.strategies.tir import FENCE_END

MERGED = 256  # the toy vocabulary: one id per byte, plus "ab" as one token


class ToyVocabEngine(Engine):
    """Scripted fake engine with a toy vocabulary: its tokenizer merges "ab" into one id, while its canned
    samples spell "ab" as two ids (as a model may), so re-tokenising a sample would change its ids."""

    backend = "toy"

    def __init__(self, script: list[tuple[str, str | None]]) -> None:
        super().__init__("toy")
        self.script = list(script)
        self.prompts: list[list[int] | str] = []

    def tokenize(self, text: str, prompt: bool = False) -> list[int]:
        out, i = [], 0
        while i < len(text):
            if text.startswith("ab", i):
                out.append(MERGED)
                i += 2
            else:
                out.append(ord(text[i]))
                i += 1
        return out

    def detokenize(self, ids: list[int], special: bool = False) -> str:
        return "".join("ab" if t == MERGED else chr(t) for t in ids)

    def generate(self, prompts, params: SamplingParams, cancel=None) -> list[Generation]:
        self.prompts.append(prompts[0])
        text, stop = self.script.pop(0) if self.script else ("", None)
        sampled = [ord(c) for c in text]  # "ab" sampled as two tokens
        return [Generation(text=text, completion_tokens=len(sampled), stop_reason=stop,
                           prompt_token_ids=list(prompts[0]), token_ids=sampled)]

    def render_chat(self, messages) -> str:
        return "Q:" + messages[-1]["content"] + "\nA:"

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text))


@pytest.mark.parametrize("ids, text, kept", [
    ([1, 2, 3], "abc", 3),  # all of them spell it
    ([1, 2, 3], "ab", 2),  # a stop string cut after the second
    ([1, 2, 3], "a", 1),
    ([1, 2, 3], "", 0),
    ([1, 4, 3], "abc", 1),  # only the head that spells a prefix
])
def test_spelled_ids(ids: list[int], text: str, kept: int) -> None:
    alphabet = {1: "a", 2: "b", 3: "c", 4: "x"}
    assert spelled_ids(lambda xs: "".join(alphabet[x] for x in xs), ids, text) == ids[:kept]


def test_continuation_keeps_sampled_ids_and_tokenises_only_what_was_added() -> None:
    eng = ToyVocabEngine([("ab", None)])
    cont = Continuation(eng, "Q")
    assert cont.send("") == [ord("Q")]
    gen = eng.generate([cont.send("")], SamplingParams())[0]
    cont.take(gen)
    sent = cont.send("ab" + "ab!")  # the sample, then text a policy added
    assert sent == [ord("Q"), ord("a"), ord("b"), MERGED, ord("!")]  # sampled ids kept, the added part merged
    prompt_ids, ids, injected = cont.final("ab" + "ab!")
    assert prompt_ids == [ord("Q")] and ids == sent[1:] and injected == [(2, 4)]


def test_continuation_cuts_back_when_the_policy_edits_the_text() -> None:
    eng = ToyVocabEngine([("xy  ", None)])
    cont = Continuation(eng, "P")
    cont.take(eng.generate([cont.send("")], SamplingParams())[0])
    # budget forcing strips the trailing spaces and writes its wait text: the sampled head stays
    sent = cont.send("xy" + " Wait")
    assert sent == [ord("P"), ord("x"), ord("y")] + [ord(c) for c in " Wait"]
    assert cont.final("xy Wait")[2] == [(3, 7)]  # the sampled space that still fits stays sampled
    # an edit inside an added piece keeps what still fits and re-tokenises the rest
    assert cont.send("xy Wa") == [ord("P")] + [ord(c) for c in "xy Wa"]


def test_continuation_falls_back_to_text_without_a_vocabulary() -> None:
    from conftest import ScriptedEngine

    eng = ScriptedEngine(["x"])  # no tokenizer (as a server without one): text in, text out
    cont = Continuation(eng, "P")
    assert cont.send("so far") == "Pso far" and cont.final("so far") == (None, None, [])
    # an engine with a vocabulary whose generations carry no ids: text from then on
    toy = ToyVocabEngine([])
    cont = Continuation(toy, "P")
    cont.take(Generation(text="ab", token_ids=None))
    assert cont.send("ab") == "Pab"


def test_tir_continues_by_ids_with_tool_output_injected() -> None:
    """TIR on the toy engine with the real sandbox: each continuation is the previous ids plus the ids
    of the injected output; the trace records them with the injected spans."""
    code_turn = "ab\n```python\nprint(6 * 7)\n"
    eng = ToyVocabEngine([(code_turn, FENCE_END), ("so \\boxed{42}", None)])
    strat = make_strategy("tir", {}, get_template("tir"), SamplingParams(max_tokens=64), Verifier())
    problem = Problem(id="p", question="6*7?", answer="42")
    try:
        attempt = strat.solve(problem, eng, Budget())
    finally:
        strat.close()
    trace = attempt.traces[0]
    assert trace.answer == "42"
    first, second = eng.prompts
    assert isinstance(second, list) and second[: len(first)] == first
    assert second[len(first): len(first) + len(code_turn)] == [ord(c) for c in code_turn]  # as sampled
    assert eng.detokenize(trace.prompt_token_ids) == strat.prompts_for(eng, problem)
    assert eng.detokenize(trace.token_ids) == trace.text
    (start, end), = trace.injected
    assert eng.detokenize(trace.token_ids[start:end]) == f"{FENCE_END}```output\n42\n{FENCE_END}"


# -- real engines -----------------------------------------------------------------------------------------

def _count_prompt(eng: Engine) -> str:
    return eng.render_chat([{"role": "user", "content": "Count from 1 to 30, separated by commas."}])


@pytest.mark.slow
@pytest.mark.parametrize("n_parallel", [1, 2])
def test_continuation_by_ids_reproduces_the_uninterrupted_generation(smol_path, n_parallel: int) -> None:
    """Greedy, batch 1: 17 tokens, then 23 more continuing from the ids, equal the 40 tokens of one call,
    token for token, on the sequential and the batched path."""
    from reasonlab.engines.llamacpp import LlamaCppEngine

    eng = LlamaCppEngine(smol_path, n_ctx=1024, n_parallel=n_parallel)
    try:
        prompt = _count_prompt(eng)
        full = eng.generate([prompt], SamplingParams(max_tokens=40))[0]
        head = eng.generate([prompt], SamplingParams(max_tokens=17))[0]
        rest = eng.generate([head.prompt_token_ids + head.token_ids], SamplingParams(max_tokens=23))[0]
        assert len(full.token_ids) == 40 and head.prompt_token_ids == eng.tokenize(prompt, prompt=True)
        assert head.token_ids + rest.token_ids == full.token_ids
        assert head.text + rest.text == full.text == eng.detokenize(full.token_ids)
        assert rest.cached_tokens >= len(head.prompt_token_ids)  # the head's cells served the continuation
    finally:
        eng.close()


@pytest.mark.slow
def test_stop_string_inside_a_token_leaves_that_token_out(smol_engine) -> None:
    prompt = _count_prompt(smol_engine)
    full = smol_engine.generate([prompt], SamplingParams(max_tokens=30))[0]
    # a stop string that starts inside a token: the last character of the first line
    stop = full.text.split("\n")[0][-1:] + "\n"
    gen = smol_engine.generate([prompt], SamplingParams(max_tokens=30, stop=[stop]))[0]
    assert gen.stop_reason == stop
    spelled = smol_engine.detokenize(gen.token_ids)
    assert gen.text.startswith(spelled) and gen.token_ids == full.token_ids[: len(gen.token_ids)]


@pytest.mark.slow
def test_forced_policy_continues_by_ids_on_smollm2(smol_path) -> None:
    """Budget forcing on a real model: every "Wait," continuation is the previous call's ids plus what
    the model sampled plus the wait text, and the trace's ids spell its prompt and text."""
    from reasonlab.engines.llamacpp import LlamaCppEngine

    class Recording(LlamaCppEngine):
        sent: list = []

        def generate(self, prompts, params, cancel=None):
            out = super().generate(prompts, params, cancel)
            self.sent.append((prompts[0], out[0]))
            return out

    eng = Recording(smol_path, n_ctx=2048, n_parallel=2)
    try:
        strat = make_strategy("forced", {"min_thinking": 200, "max_waits": 2}, get_template("boxed"),
                              SamplingParams(max_tokens=256), Verifier())
        attempt = strat.solve(Problem(id="p", question="What is 2 + 3?", answer="5"), eng, Budget())
        trace = attempt.traces[0]
        assert [e["type"] for e in trace.events].count("wait") >= 1
        for (p0, g0), (p1, _) in zip(eng.sent, eng.sent[1:]):
            assert isinstance(p1, list) and p1[: len(p0) + len(g0.token_ids)] == list(p0) + g0.token_ids
        assert eng.detokenize(trace.prompt_token_ids, special=True) == trace.prompt
        assert eng.detokenize(trace.token_ids) == trace.text
        waits = [eng.detokenize(trace.token_ids[a:b]) for a, b in trace.injected]
        assert all(w.endswith("Wait,") for w in waits) and len(waits) == len(eng.sent) - 1
        assert trace.cached_tokens > 0
    finally:
        eng.close()


@pytest.mark.slow
def test_hf_generations_carry_ids_and_take_id_prompts(tiny_hf_dir) -> None:
    from reasonlab.engines.hf import HFEngine

    eng = HFEngine(str(tiny_hf_dir))
    text = "the answer is"
    by_text = eng.generate([text], SamplingParams(max_tokens=6, ignore_eos=True))[0]
    ids = eng.tokenize(text, prompt=True)
    assert by_text.prompt_token_ids == ids == eng.tokenizer(text)["input_ids"]
    by_ids = eng.generate([ids, ids[:-1]], SamplingParams(max_tokens=6, ignore_eos=True))
    assert by_ids[0].token_ids == by_text.token_ids and len(by_text.token_ids) == 6
    assert by_ids[1].prompt_token_ids == ids[:-1]  # left padding is not part of a prompt's ids
    assert eng.detokenize(by_text.token_ids) == by_text.text


@pytest.mark.slow
def test_llama_server_takes_id_prompts(llamacpp_server, smol_path) -> None:
    from reasonlab.engines.openai import OpenAIEngine

    eng = OpenAIEngine(llamacpp_server, tokenizer=str(smol_path))
    try:
        prompt = _count_prompt(eng)
        by_text = eng.generate([prompt], SamplingParams(max_tokens=16))[0]
        ids = eng.tokenize(prompt, prompt=True)
        by_ids = eng.generate([ids], SamplingParams(max_tokens=16))[0]
        assert eng._takes_ids is True
        assert by_ids.text == by_text.text and by_ids.prompt_token_ids == ids == by_text.prompt_token_ids
        assert eng.detokenize(by_ids.token_ids) == by_ids.text
    finally:
        eng.close()


@pytest.mark.slow
def test_llama_cpp_python_server_gets_text_for_id_prompts(llama_server, smol_path) -> None:
    """llama-cpp-python's server takes text only: an id prompt goes as the text it spells, special
    tokens written out, and gives what the text prompt gives."""
    from reasonlab.engines.openai import OpenAIEngine

    eng = OpenAIEngine(llama_server, tokenizer=str(smol_path))
    try:
        prompt = _count_prompt(eng)
        by_text = eng.generate([prompt], SamplingParams(max_tokens=12))[0]
        by_ids = eng.generate([eng.tokenize(prompt, prompt=True)], SamplingParams(max_tokens=12))[0]
        assert eng._takes_ids is False and by_ids.text == by_text.text
    finally:
        eng.close()
