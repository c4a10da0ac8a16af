"""The mul-tokens study (issue 15): injector tables, export equality on non-symmetric random weights (the
notebook's missed square transpose fails it), HellaSwag scoring on authored examples with hand-computed answers,
a few steps lower the loss, a killed run resumes to the same weights, the shaped reward."""

from __future__ import annotations

import json

import pytest
import torch

from reasonlab.experiments.multokens.facts import FAMILIES, count_tokens, inject

MUL = FAMILIES["mul"]()


@pytest.mark.parametrize("text, mode, want", [
    ("6 * 9 = 54", "strict", "<MUL_6_9_54>"),
    ("9 × 6 = 54", "strict", "<MUL_6_9_54>"),           # commutative: one token for both orders
    ("6 x 9 = 54", "strict", "<MUL_6_9_54>"),
    ("6x9=54", "strict", "<MUL_6_9_54>"),
    ("6 * 9 = 55", "strict", "6 * 9 = 55"),             # a wrong fact is left alone
    ("6 * 9", "strict", "6 * 9"),                       # strict needs "= c"
    ("6 * 9 dollars", "weak", "<MUL_6_9_54> dollars"),  # weak: the bare product too
    ("6 * 9 = 55", "weak", "6 * 9 = 55"),               # ... but never a wrong result
    ("3 xylophones", "weak", "3 xylophones"),           # x with a letter after it is a word
    ("16 * 9 = 144", "strict", "16 * 9 = 144"),         # not single-digit facts
    ("1.5 * 4 = 6", "strict", "1.5 * 4 = 6"),           # decimals are not whole operands
    ("6 * 9 = 54.5", "strict", "6 * 9 = 54.5"),
    ("6 * 9 = 540", "strict", "6 * 9 = 540"),
    ("1 * 1 = 1 and 9*9=81", "strict", "<MUL_1_1_1> and <MUL_9_9_81>"),
])
def test_injector(text, mode, want) -> None:
    assert inject(text, MUL, mode) == want


def test_families_are_pluggable() -> None:
    assert inject("7 + 5 = 12", FAMILIES["add"]()) == "<ADD_5_7_12>"
    assert inject("56 / 8 = 7", FAMILIES["div"]()) == "<DIV_56_8_7>"
    assert inject("8 / 56 = 7", FAMILIES["div"]()) == "8 / 56 = 7"  # division is not commutative
    assert inject("12 × 12 = 144", FAMILIES["mul"](upto=12)) == "<MUL_12_12_144>"
    assert count_tokens("<MUL_6_9_54> then <MUL_1_2_2>", MUL) == 2


def _tiny_gpt():
    from reasonlab.experiments.multokens.model import GPT, GPTConfig
    from reasonlab.experiments.multokens.tokenizer import as_hf, train_tokenizer

    tok = train_tokenizer(["the cat sat on the mat. 6 * 9 = 54, so 54 cats."] * 40, 400, MUL.tokens)
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=tok.get_vocab_size(), block_size=32, n_layer=2, n_head=2, n_embd=32)), tok, as_hf(tok)


def test_export_gives_equal_logits_and_a_missed_square_transpose_does_not(tmp_path, monkeypatch) -> None:
    from reasonlab.experiments.multokens import export

    model, _, hf_tok = _tiny_gpt()
    w = model.transformer.h[0].attn.c_proj.weight
    assert not torch.allclose(w, w.T)  # random weights: the square matrix is not symmetric
    hf = export.to_hf(model, hf_tok, tmp_path / "hf")
    assert export.verify(model, hf) < 1e-4
    # the notebook's bug: attn.c_proj (C x C) not transposed — it loads without complaint and computes garbage
    monkeypatch.setattr(export, "TRANSPOSED", ("attn.c_attn.weight", "mlp.c_fc.weight", "mlp.c_proj.weight"))
    buggy = export.to_hf(model, hf_tok, tmp_path / "bug")
    assert export.verify(model, buggy) > 1e-3
    compiled = {"_orig_mod." + k: v for k, v in model.state_dict().items()}
    assert set(export.hf_state_dict(compiled, model.cfg.vocab_size)) == set(export.hf_state_dict(
        model.state_dict(), model.cfg.vocab_size))  # torch.compile's prefix is dropped
    assert hf.get_input_embeddings().weight.shape[0] == model.cfg.vocab_size < model.cfg.padded_vocab


class ScriptedScoringEngine:
    """A scripted engine (not a model): fixed log-likelihoods per continuation, tokens = words."""

    def __init__(self, table: dict[str, float]) -> None:
        self.table = table

    def loglikelihood(self, requests):
        return [(self.table[cont], False) for _, cont in requests]

    def tokenize(self, text, prompt=False):
        return text.split()


def test_hellaswag_acc_and_acc_norm_by_hand(tmp_path) -> None:
    from reasonlab.experiments.multokens.hellaswag import evaluate, load_items

    rows = [  # authored, in build-nanogpt's format
        {"ctx": "A man pours water", "endings": ["into a glass.", "into the glass and it overflows fast.", "up.",
                                                 "sideways into nothing at all"], "label": 1},
        {"ctx": "She ties her shoes", "endings": ["and runs.", "and then starts to run down the road.", "twice.",
                                                  "with a fish"], "label": 0},
    ]
    f = tmp_path / "hs.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    # sums: ending 0 best for both rows; per token: row 1's 6-token ending 1 (-4.2/6 = -0.7) beats -2.0/3
    table = {" into a glass.": -2.0, " into the glass and it overflows fast.": -4.2, " up.": -3.0,
             " sideways into nothing at all": -9.0, " and runs.": -1.0, " and then starts to run down the road.": -7.6,
             " twice.": -2.5, " with a fish": -6.0}
    got = evaluate(ScriptedScoringEngine(table), load_items(str(f)))
    assert got == {"n": 2, "acc": 0.5, "acc_norm": 1.0}


def test_the_exported_model_scores_through_the_hf_engine(tmp_path) -> None:
    """The engine seam's loglikelihood on the exported model equals log-softmax read off our own GPT."""
    from reasonlab.engines.hf import HFEngine
    from reasonlab.experiments.multokens import export

    model, tok, hf_tok = _tiny_gpt()
    export.to_hf(model, hf_tok, tmp_path / "hf")
    ctx, cont = "the cat sat", " on the mat."
    with HFEngine(str(tmp_path / "hf")) as eng:
        (lp, _), = eng.loglikelihood([(ctx, cont)])
    ids = tok.encode(ctx + cont).ids
    n_ctx = len(tok.encode(ctx).ids)
    model.eval()
    with torch.no_grad():
        logits, _ = model(torch.tensor([ids]))
    logp = torch.log_softmax(logits[0, :, : model.cfg.vocab_size], -1)
    want = sum(float(logp[i - 1, ids[i]]) for i in range(n_ctx, len(ids)))
    assert lp == pytest.approx(want, abs=1e-3)


def _cfg(**kw):
    from reasonlab.experiments.multokens.config import MulTokensConfig

    base = dict(budget_tokens=16 * 2 * 32 * 8, n_layer=1, n_head=2, n_embd=32, block_size=32, batch_size=16,
                grad_accum=2, vocab_size=400, eval_every=4, checkpoint_every=4, eval_batches=2, lr=3e-3)
    return MulTokensConfig(**{**base, **kw})


def test_conditions_share_the_vocabulary_and_differ_only_in_the_facts(tmp_path) -> None:
    from reasonlab.experiments.multokens.train import prepare

    tb, base_ids, _, base = prepare(_cfg(condition="baseline"), tmp_path / "b")
    tm, mul_ids, _, mul = prepare(_cfg(condition="multokens"), tmp_path / "m")
    assert tb.get_vocab() == tm.get_vocab()  # identical tokenizer, so identical architecture
    assert base["fact_tokens_in_train"] == 0 < mul["fact_tokens_in_train"]
    assert mul["documents"] == base["documents"]  # the same documents, injected or not


def test_bits_per_char_charges_the_same_characters_in_both_conditions(tmp_path) -> None:
    """A model that predicts uniformly pays log2(V) bits per token: bits/char = log2(V) * tokens / characters.
    The mul-token stream is shorter over the same characters, so it pays fewer bits for them."""
    import math

    from reasonlab.experiments.multokens import corpus
    from reasonlab.experiments.multokens.model import GPT, GPTConfig
    from reasonlab.experiments.multokens.train import bits_per_char, ids_of, prepare

    got = {}
    for cond in ("baseline", "multokens"):
        cfg = _cfg(condition=cond, corpus={"shakespeare": 0.0, "gsm8k": 0.0, "drills": 1.0})
        tok, *_ = prepare(cfg, tmp_path / cond)
        model = GPT(GPTConfig(vocab_size=tok.get_vocab_size(), block_size=32, n_layer=1, n_head=2, n_embd=32))
        for w in model.parameters():
            torch.nn.init.zeros_(w)  # logits all zero: uniform over the padded vocabulary
        _, val = corpus.build(cfg.corpus, total_chars=0, seed=cfg.seed)
        ids = ids_of(tok, val["drills"], cfg)
        chars = sum(len(d) + 1 for d in val["drills"])
        bpc = bits_per_char(model, tok, cfg)
        assert set(bpc) == {"drills", "all"}
        assert bpc["drills"] == pytest.approx(math.log2(model.cfg.padded_vocab) * (len(ids) - 1) / chars, rel=1e-5)
        got[cond] = bpc["all"]
    assert got["multokens"] < got["baseline"]  # fewer tokens for the same text


def test_training_lowers_the_loss_and_a_killed_run_resumes_exactly(tmp_path) -> None:
    from reasonlab.experiments.multokens.train import run

    pytest.importorskip("transformers")
    part = run(_cfg(), tmp_path / "split", until=4, progress_on=False)
    assert not part["finished"] and "probes" not in part
    whole = run(_cfg(), tmp_path / "whole", progress_on=False)
    rest = run(_cfg(), tmp_path / "split", progress_on=False)
    a = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    h = whole["history"]
    assert h[-1]["train_loss"] < h[0]["train_loss"] and h[-1]["val_loss"] < h[0]["val_loss"]
    assert whole["export_max_abs_diff"] < 1e-3 and whole["probes"]["forced"]["of"] == 45
    assert rest["val_loss"] == whole["val_loss"]


def test_composed_init_is_the_mean_of_the_parts() -> None:
    from reasonlab.experiments.multokens.train import compose_init

    model, tok, _ = _tiny_gpt()
    compose_init(model, tok, MUL)
    wte = model.transformer.wte.weight
    parts = [i for n in (6, 9, 54) for i in tok.encode(str(n)).ids]
    assert torch.allclose(wte[tok.token_to_id("<MUL_6_9_54>")], wte[parts].mean(0))


def test_shaped_reward_table() -> None:
    from reasonlab.experiments.multokens.reward import shaped

    assert shaped([[{"role": "assistant", "content": "#### 54"}]], answer=["54"]) == [1.2]
    assert shaped(["the answer is 100", "the answer is 101"], answer=["91", "91"]) == [0.4, 0.1]  # 10 %: 9.1


def test_the_study_scores_hellaswag_and_runs_sft_after_pretraining(tmp_path) -> None:
    from reasonlab.experiments import EXPERIMENTS
    from reasonlab.experiments.multokens.train import run

    hs = tmp_path / "hs.jsonl"
    hs.write_text(json.dumps({"ctx": "the cat", "endings": ["sat on the mat.", "6 * 9 = 54", "so", "the"],
                              "label": 0}) + "\n")
    result = run(_cfg(hellaswag=str(hs), sft_steps=2, sft_eval=4, block_size=128), tmp_path / "r", progress_on=False)
    assert result["hellaswag"]["n"] == 1 and result["hellaswag"]["acc"] in (0.0, 1.0)
    assert result["sft"]["steps"] == 2 and result["sft"]["rows"] > 100
    cols = EXPERIMENTS.get("multokens").columns(result)
    assert cols["forced_rank"] >= 1 and cols["hellaswag_acc_norm"] in (0.0, 1.0) and "gsm8k_after_sft" in cols


def test_drill_sft_rows_are_injected_only_for_the_mul_condition() -> None:
    from reasonlab.experiments.multokens.post import sft_rows

    mul = sft_rows(_cfg(sft_data="drills", condition="multokens"), MUL, 256)
    base = sft_rows(_cfg(sft_data="drills", condition="baseline"), MUL, 256)
    assert len(mul) == len(base) == 5000
    assert "<MUL_" in "".join(r["completion"] for r in mul) and "<MUL_" not in "".join(r["completion"] for r in base)
    assert [r["prompt"] for r in mul] == [r["prompt"] for r in base]


def test_grpo_with_the_shaped_reward_on_the_exported_model(tmp_path) -> None:
    """A3: any GRPO run takes the notes' shaped reward by import path; here on the study's exported GPT-2 (no chat
    template: plain-text prompts), fully fine-tuned, rolled out by transformers."""
    from reasonlab.experiments.multokens import export
    from reasonlab.train import TrainConfig, train

    model, _, hf_tok = _tiny_gpt()
    export.to_hf(model, hf_tok, tmp_path / "hf")
    problems = tmp_path / "p.jsonl"
    problems.write_text("".join(json.dumps({"question": f"What is 6 times {b}?", "answer": str(6 * b)}) + "\n"
                                for b in range(1, 5)))
    summary = train(TrainConfig(method="grpo", model=str(tmp_path / "hf"), out=str(tmp_path / "g"), max_steps=2,
                                batch_size=2, lora=None, logging_steps=1, save_steps=2, max_length=32,
                                grpo={"dataset": str(problems), "prompt": "plain", "num_generations": 2,
                                      "max_completion_length": 8, "rollout": "transformers",
                                      "rewards": ["reasonlab.experiments.multokens.reward:shaped"]}))
    history = [json.loads(x) for x in (tmp_path / "g" / "log_history.jsonl").read_text().splitlines()]
    assert summary["steps"] == 2 and any("reward" in h for h in history)
