"""The hcot policy: a generated [RETURN] prunes its block from the live context (which shrinks), generation goes on
from the pruned ids, and the whole unpruned trace, the prunes and the statistics are kept."""

from __future__ import annotations

import pytest

from reasonlab.answers import Verifier
from reasonlab.data import Problem
from reasonlab.engines import Engine, Generation, SamplingParams
from reasonlab.engines.base import PositionedIds
from reasonlab.errors import ConfigError
from reasonlab.strategies import Budget, get_template, make_strategy

TH, SO, RE, EOS = 3, 4, 5, 0
WORDS = {TH: "[THOUGHT]", SO: "[SOLUTION]", RE: "[RETURN]"}
PROMPT = [1, 2]


class ScriptedHcotEngine(Engine):
    """A scripted engine (not a model) over a toy vocabulary (id t spells "w{t} ", markers spell themselves) that
    writes ``script`` — the planned generation — one call at a time, stopping at a [RETURN] as a stop string does
    (text and ids cut before it). It records the live ids of every call."""

    backend = "scripted"

    def __init__(self, script: list[int]) -> None:
        super().__init__("scripted-hcot")
        self.script, self.pos = script, 0
        self.calls: list[list[int]] = []
        self.positions: list[list[int] | None] = []  # what each call was told the positions are (prune=agnostic)
        self.min_tokens: list[int] = []  # what each call was asked to hold off the end for

    def render_chat(self, messages) -> str:
        return "<q>"

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def tokenize(self, text: str, prompt: bool = False) -> list[int]:
        inv = {v: k for k, v in WORDS.items()}
        if text in inv:
            return [inv[text]]
        return PROMPT if prompt else [int(w[1:]) for w in text.split()]

    def detokenize(self, ids, special: bool = False) -> str:
        return "".join(WORDS.get(t, f"w{t} ") for t in ids)

    def generate(self, prompts, params: SamplingParams, cancel=None) -> list[Generation]:
        p = prompts[0]
        self.calls.append(list(p.ids) if isinstance(p, PositionedIds) else list(p))
        self.positions.append(list(p.positions) if isinstance(p, PositionedIds) else None)
        self.min_tokens.append(params.min_tokens)
        out: list[int] = []
        stop = None
        while self.pos < len(self.script) and len(out) < params.max_tokens:
            t = self.script[self.pos]
            self.pos += 1
            if t == EOS:
                break
            if t == RE and "[RETURN]" in params.stop:
                stop = "[RETURN]"
                break
            out.append(t)
        finish = "stop" if stop or (self.pos <= len(self.script) and len(out) < params.max_tokens) else "length"
        return [Generation(text=self.detokenize(out), token_ids=out, completion_tokens=len(out) + (stop is not None),
                           prompt_tokens=len(self.calls[-1]), finish_reason=finish, stop_reason=stop)]


#        a  [TH] b  c  d  [SO] e  [RE] f  [TH] g  h  [SO] i  [RE] answer
SCRIPT = [10, TH, 11, 12, 13, SO, 14, RE, 15, TH, 16, 17, SO, 18, RE, 19, EOS]


class ScriptedPositionsEngine(ScriptedHcotEngine):
    """The scripted engine, claiming to take positions (as hf does)."""

    takes_positions = True


def run(script, engine_class=ScriptedHcotEngine, **options):
    engine = engine_class(script)
    with Verifier() as v:
        s = make_strategy("hcot", options, get_template("boxed"), SamplingParams(max_tokens=100), v)
        return s.solve(Problem(id="p", question="q", answer="1"), engine, Budget()).traces[0], engine


def test_the_live_context_shrinks_after_each_return() -> None:
    trace, engine = run(SCRIPT)
    # call 1 reads the prompt; call 2 the prompt + a [TH] e [RE] (b c d [SO] pruned); call 3 both blocks pruned
    assert engine.calls == [PROMPT, PROMPT + [10, TH, 14, RE], PROMPT + [10, TH, 14, RE, 15, TH, 18, RE]]
    assert trace.token_ids == [t for t in SCRIPT if t != EOS]  # the whole unpruned generation is kept
    assert "w11 w12 w13 [SOLUTION]" in trace.text
    prunes = [e for e in trace.events if e["type"] == "prune"]
    assert [(e["live_before"], e["live_after"]) for e in prunes] == [(10, 6), (13, 10)]
    assert prunes[0]["removed_text"] == "w11 w12 w13 [SOLUTION]"
    stats = next(e for e in trace.events if e["type"] == "hcot")
    assert stats == {"type": "hcot", "prunes": 2, "generated": 16, "retained": 9, "peak_live": 13,
                     "prompt_tokens": 2, "open_thoughts": 0, "well_formed": True, "problems": [], "runaway": False}


def test_agnostic_pruning_keeps_the_original_positions() -> None:
    trace, engine = run(SCRIPT, ScriptedPositionsEngine, prune="agnostic")
    # the same cuts as prune=continue, but the kept tokens keep the positions they were written at
    assert engine.calls == [PROMPT, PROMPT + [10, TH, 14, RE], PROMPT + [10, TH, 14, RE, 15, TH, 18, RE]]
    #            prompt a  [TH]   e  [RE]   f  [TH]   i  [RE]      (b c d [SO] were 4-7, g h [SO] 12-14)
    assert engine.positions == [[0, 1], [0, 1, 2, 3, 8, 9], [0, 1, 2, 3, 8, 9, 10, 11, 15, 16]]
    assert trace.token_ids == [t for t in SCRIPT if t != EOS]
    with pytest.raises(ConfigError, match="prune=agnostic needs an engine that takes token positions"):
        run(SCRIPT, prune="agnostic")  # the plain scripted engine, as llama.cpp and servers, takes none


class ScriptedInPlaceEngine(ScriptedHcotEngine):
    """The scripted engine, pruning in place as llamacpp does: one generation, the hook asked after every token,
    the spans it returns recorded (clamped as the engine clamps: the last token read keeps its cell)."""

    prunes_in_place = True

    def generate_pruning(self, prompts, params, prune, cancel=None):
        self.calls.append(list(prompts[0]))
        self.spans: list[tuple[int, int]] = []
        out: list[int] = []
        for t in self.script:
            if t == EOS:
                break
            out.append(t)
            self.spans += [(a, min(b, len(out) - 2)) for a, b in prune(0, 0, list(out))]
            if cancel is not None and cancel(0, 0, len(out), None):
                return [Generation(text=self.detokenize(out), token_ids=out, completion_tokens=len(out),
                                   finish_reason="cancelled")]
        return [Generation(text=self.detokenize(out), token_ids=out, completion_tokens=len(out),
                           finish_reason="stop")]


def test_agnostic_in_place_cuts_the_same_blocks_in_one_generation() -> None:
    trace, engine = run(SCRIPT, ScriptedInPlaceEngine, prune="agnostic", agnostic_by="cache")
    assert engine.calls == [PROMPT]  # one generation, nothing read twice
    assert engine.spans == [(2, 6), (10, 13)]  # b c d [SO], then g h [SO]: in generated-token indices
    prunes = [e for e in trace.events if e["type"] == "prune"]
    assert [(e["live_before"], e["live_after"]) for e in prunes] == [(10, 6), (13, 10)]  # as prune=continue
    assert prunes[0]["removed_text"] == "w11 w12 w13 [SOLUTION]"
    stats = next(e for e in trace.events if e["type"] == "hcot")
    assert (stats["prunes"], stats["generated"], stats["retained"], stats["peak_live"]) == (2, 16, 9, 13)
    capped, _ = run(SCRIPT, ScriptedInPlaceEngine, prune="agnostic", agnostic_by="cache", max_live=16)
    assert capped.finish_reason == "stop"  # pruned, it fits; unpruned it would not:
    with pytest.raises(ConfigError, match="prunes in place"):
        run(SCRIPT, ScriptedPositionsEngine, prune="agnostic", agnostic_by="cache")


def test_nested_blocks_prune_inner_then_outer() -> None:
    #         [TH] a  [TH] b  [SO] c  [RE] d  [SO] e  [RE] f
    script = [TH, 10, TH, 11, SO, 12, RE, 13, SO, 14, RE, 15, EOS]
    trace, engine = run(script)
    assert engine.calls[1] == PROMPT + [TH, 10, TH, 12, RE]  # the inner body and [SO] gone
    assert engine.calls[2] == PROMPT + [TH, 14, RE]  # then the outer one, inner shell included


def test_no_pruning_is_the_reference_and_max_live_caps() -> None:
    trace, engine = run(SCRIPT, prune="none")
    assert engine.calls[2] == PROMPT + SCRIPT[:15]  # nothing forgotten
    assert next(e for e in trace.events if e["type"] == "hcot")["prunes"] == 0
    trace, engine = run(SCRIPT, prune="none", max_live=16)
    assert trace.finish_reason == "length"  # the unpruned context outgrew the cap
    assert next(e for e in trace.events if e["type"] == "hcot")["runaway"]
    trace, engine = run(SCRIPT, max_live=16)
    assert trace.finish_reason == "stop"  # pruned, the same generation fits


def test_markers_must_be_single_tokens() -> None:
    class NoMarkers(ScriptedHcotEngine):
        def tokenize(self, text: str, prompt: bool = False) -> list[int]:
            return [7, 8] if text.startswith("[") else super().tokenize(text, prompt)

    with Verifier() as v:
        s = make_strategy("hcot", {}, get_template("boxed"), SamplingParams(), v)
        with pytest.raises(ConfigError, match=r"\[THOUGHT\] is 2 tokens"):
            s.solve(Problem(id="p", question="q", answer="1"), NoMarkers(SCRIPT), Budget())


def test_continuing_a_cut_by_ids_matches_a_fresh_prefill(smol_path) -> None:
    """The prune-aware cut on llama.cpp: continuing the cut ids on the batched engine, whose prefix cache serves the
    kept head, gives the greedy tokens a fresh engine gives after prefilling the same ids from scratch."""
    from reasonlab.engines.llamacpp import LlamaCppEngine

    with LlamaCppEngine(smol_path, n_ctx=1024, name="smol", n_parallel=2) as eng, \
            LlamaCppEngine(smol_path, n_ctx=1024, name="smol-ref", n_parallel=1) as ref:
        prompt = eng.tokenize(eng.render_chat([{"role": "user", "content": "Explain how to add fractions with "
                                                                           "different denominators."}]), prompt=True)
        written = eng.generate([prompt], SamplingParams(max_tokens=40))[0].token_ids
        live = prompt + written[:8] + written[24:]  # a block's body cut out of the middle
        cut = eng.generate([live], SamplingParams(max_tokens=24))[0]
        fresh = ref.generate([live], SamplingParams(max_tokens=24))[0]
    assert cut.cached_tokens >= len(prompt) + 8 and cut.prefilled_tokens <= len(live) - len(prompt) - 8
    assert cut.token_ids == fresh.token_ids


def test_a_run_reports_pruning(tmp_path) -> None:
    import json

    from reasonlab.evaluate import EvalConfig, evaluate

    cfg = EvalConfig.from_layers({"dataset": {"name": "gsm8k", "limit": 1}, "strategy": "hcot"})
    summary = evaluate(cfg, out=tmp_path / "r", engine=ScriptedHcotEngine(SCRIPT))
    assert summary["hcot"]["prunes"] == 2.0 and summary["hcot"]["peak_generated_live"] == 11.0
    rec = json.loads((tmp_path / "r" / "results.jsonl").read_text())
    assert [e["type"] for e in rec["traces"][0]["events"]] == ["prune", "prune", "hcot"]


def test_report_shows_what_was_pruned(tmp_path) -> None:
    from reasonlab.evaluate import EvalConfig, evaluate
    from reasonlab.evaluate.report import write_report

    cfg = EvalConfig.from_layers({"dataset": {"name": "gsm8k", "limit": 1}, "strategy": "hcot"})
    evaluate(cfg, out=tmp_path / "r", engine=ScriptedHcotEngine(SCRIPT))
    html = write_report([tmp_path / "r"], tmp_path / "rep").read_text()
    assert "2 prunes, peak live 13" in html and "prune 1: 4 tokens" in html and "w11 w12 w13 [SOLUTION]" in html


def test_min_tokens_counts_over_the_whole_trace() -> None:
    trace, engine = run(SCRIPT, min_tokens=10)
    assert engine.min_tokens == [10, 2, 0]  # the first call wrote 8 tokens ([RETURN] included), the second 7


def test_llamacpp_cuts_cells_out_of_a_live_sequence(smol_path) -> None:
    """generate_pruning on llama.cpp: the hook's span leaves the sequence's KV cells mid-generation (positions kept),
    decoding goes on, and the prefix cache keeps only what precedes the cut — a later continuation of the same ids
    is served at most that much and prefills the rest."""
    from reasonlab.engines.llamacpp import LlamaCppEngine

    asked = []

    def hook(i, s, out):
        asked.append(len(out))
        return [(5, 20)] if len(out) == 30 else []

    with LlamaCppEngine(smol_path, n_ctx=1024, name="smol", n_parallel=2) as eng, \
            LlamaCppEngine(smol_path, n_ctx=1024, name="smol-ref", n_parallel=1) as ref:
        prompt = eng.tokenize(eng.render_chat([{"role": "user", "content": "Explain how to add fractions with "
                                                                           "different denominators."}]), prompt=True)
        g = eng.generate_pruning([prompt], SamplingParams(max_tokens=40, ignore_eos=True), hook)[0]
        assert g.error is None and g.completion_tokens == 40 and asked[:3] == [1, 2, 3]
        assert eng._decoder.stats["cut_cells"] == 15
        assert list(eng._decoder.cache.entries.values()) == [tuple(prompt + g.token_ids[:5])]  # up to the cut
        again = eng.generate([prompt + g.token_ids], SamplingParams(max_tokens=16))[0]
        assert again.error is None and again.cached_tokens <= len(prompt) + 5  # never the cut cells
        with pytest.raises(ConfigError, match="batched path"):
            ref.generate_pruning([prompt], SamplingParams(max_tokens=4), hook)


def test_hcot_on_llamacpp_needs_and_finds_the_markers(tmp_path, smol_path) -> None:
    """On a GGUF without the markers the policy refuses in one line; with them (train add-tokens) it runs on
    llama.cpp and the run reports its statistics (an untrained model writes no blocks: nothing pruned)."""
    import json
    import subprocess
    import sys

    cli = [sys.executable, "-m", "reasonlab.cli"]
    base = ["eval", "-d", "gsm8k", "-n", "2", "-s", "hcot", "--max-tokens", "16", "--parallel", "2", "--no-progress"]
    bad = subprocess.run(cli + base + ["-m", "smollm2-135m", "--out", str(tmp_path / "bad")], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "[THOUGHT] is" in bad.stderr and "add-tokens" in bad.stderr
    gguf = tmp_path / "models" / "smol-hcot.gguf"  # a directory that does not exist yet
    made = subprocess.run(cli + ["train", "add-tokens", "--base", "smollm2-135m", "--slots", "3,4,5", "--out",
                                 str(gguf)], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    assert [p.name for p in gguf.parent.iterdir()] == ["smol-hcot.gguf"]  # written whole, then renamed: no .part
    ok = subprocess.run(cli + base + ["-m", str(gguf), "--out", str(tmp_path / "ok")],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    summary = json.loads((tmp_path / "ok" / "summary.json").read_text())
    assert summary["hcot"]["traces"] == 2 and summary["hcot"]["prunes"] == 0


def test_a_cut_in_place_moves_the_cells_instead_of_prefilling(smol_path) -> None:
    """kv_shift: the continuation of a cached sequence with a span cut out takes its cells and shifts the ones after
    the cut (seq_rm + seq_add), prefilling nothing but the token fed next. Re-rotated keys are not bit-identical to
    a prefill: the greedy tokens are compared up to the first divergence, which is reported."""
    from reasonlab.engines.llamacpp import LlamaCppEngine

    with LlamaCppEngine(smol_path, n_ctx=1024, name="smol", n_parallel=2, kv_shift=True) as eng, \
            LlamaCppEngine(smol_path, n_ctx=1024, name="smol-ref", n_parallel=1) as ref:
        prompt = eng.tokenize(eng.render_chat([{"role": "user", "content": "Explain how to add fractions with "
                                                                           "different denominators."}]), prompt=True)
        written = eng.generate([prompt], SamplingParams(max_tokens=60))[0].token_ids
        assert len(written) == 60
        live = prompt + written[:10] + written[30:]  # a block's body cut out of the middle
        moved = eng.generate([live], SamplingParams(max_tokens=24))[0]
        fresh = ref.generate([live], SamplingParams(max_tokens=24))[0]
        stats = eng._decoder.stats
    assert stats["shifted_cuts"] == 1 and stats["shifted_tokens"] == 29  # 30 kept, the last one is fed, not cached
    assert moved.prefilled_tokens == 1  # only the token fed next: nothing re-read
    first = next((i for i, (x, y) in enumerate(zip(moved.token_ids, fresh.token_ids)) if x != y), None)
    print(f"in place vs fresh prefill: first greedy divergence at token {first}")
    assert first is None or first >= 8
