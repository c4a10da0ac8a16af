"""Quiet-STaR (issue 16): the parallel-thought attention equals the dense 4-D mask, the TRICE baseline and policy
loss on hand-computed numbers, weight groups share exactly what they say, gradients reach only what they should,
a killed run resumes to the same weights, and a sweep tabulates mean ± std over seeds."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from reasonlab.errors import ConfigError, DataError
from reasonlab.experiments.quietstar.config import QuietStarConfig
from reasonlab.experiments.quietstar.gru import ReasonerInterpreterGRU, parameter_count
from reasonlab.experiments.quietstar.loss import advantages, policy_loss, quiet_star_loss
from reasonlab.experiments.quietstar.transformer import ParallelAttention, ThinkingGPT, thought_mask

V = 13  # 10 characters + <pad> <sot> <eot>


def test_thought_mask_is_causal_text_then_one_identity_block_per_step() -> None:
    m = thought_mask(4, 2)  # [L, L * 3]
    assert m.shape == (4, 12)
    for i in range(4):
        assert m[i, :4].tolist() == [k <= i for k in range(4)]  # its context, causally
        for step in (1, 2):  # its own earlier thought tokens only: the same position in each block
            assert m[i, 4 * step: 4 * step + 4].tolist() == [k == i for k in range(4)]


def test_parallel_attention_equals_the_dense_4d_mask() -> None:
    torch.manual_seed(0)
    attn = ParallelAttention(8, 2)
    b, l_ = 2, 5
    text = torch.randn(b, l_, 8)
    steps = [torch.randn(b, l_, 8) for _ in range(3)]
    _, text_kv = attn(text, None, [])
    kvs = []
    for x in steps[:-1]:
        _, kv = attn(x, text_kv, kvs)
        kvs.append(kv)
    fast, (k, v) = attn(steps[-1], text_kv, kvs)
    # dense: every key of the text and of each step, one [L, L*4] mask (thought_mask), plain softmax attention
    q, _, _ = attn.split(steps[-1])
    keys = torch.cat([text_kv[0]] + [kk for kk, _ in kvs] + [k], dim=2)  # [B, H, L*4, hd]
    vals = torch.cat([text_kv[1]] + [vv for _, vv in kvs] + [v], dim=2)
    scores = (q @ keys.transpose(-1, -2)) / math.sqrt(attn.hd)
    scores = scores.masked_fill(~thought_mask(l_, 3), float("-inf"))
    dense = attn.proj((torch.softmax(scores, -1) @ vals).transpose(1, 2).reshape(b, l_, 8))
    assert torch.allclose(fast, dense, atol=1e-5)


def test_trice_baseline_and_policy_loss_by_hand() -> None:
    reward = torch.tensor([[-1.0, -4.0], [-3.0, -4.0], [-2.0, 0.0], [-2.0, -2.0]])  # B=2 windows, K=2, L=2
    assert advantages(reward, trice=2).tolist() == [[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]]
    logp = torch.tensor([[-0.5, -1.0], [-2.0, -1.0], [-1.0, -3.0], [-1.0, -0.25]])
    # -(1*-0.5 + 0 + -1*-2.0 + 0 + 0 + 1*-3.0 + 0 + -1*-0.25) / 8 = -(-0.5 + 2 - 3 + 0.25) / 8
    assert policy_loss(reward, logp, trice=2).item() == pytest.approx(1.25 / 8)
    assert advantages(reward, trice=1).abs().sum() == 0  # one thought per position: no baseline, no signal


@pytest.mark.parametrize("groups,distinct", [("AAAA", 1), ("ABCD", 4), ("AABB", 2), ("ABAB", 2), ("ABCA", 3)])
def test_weight_groups_share_exactly_what_they_say(groups, distinct) -> None:
    m = ReasonerInterpreterGRU(QuietStarConfig(weight_groups=tuple(groups)), V)
    parts = [m.base_lm, m.base_reasoner, m.reasoner, m.interpreter]
    for i in range(4):
        for j in range(4):
            assert (parts[i] is parts[j]) == (groups[i] == groups[j])
    assert len({id(p) for p in parts}) == distinct
    one = sum(p.numel() for p in parts[0].parameters())
    rest = parameter_count(m) - sum(sum(p.numel() for p in part.parameters()) for part in {id(p): p for p in parts}.values())
    assert parameter_count(m) == distinct * one + rest  # a shared part is counted once


def test_shared_parts_need_equal_widths() -> None:
    with pytest.raises(ConfigError, match="reasoner_hidden_dim=16 != interpreter_hidden_dim=32"):
        QuietStarConfig(weight_groups=("A", "B", "C", "C"), reasoner_hidden_dim=16)
    QuietStarConfig(weight_groups=("A", "B", "C", "D"), reasoner_hidden_dim=16)  # nothing shared: any widths
    with pytest.raises(ConfigError, match="GRU model only"):
        QuietStarConfig(model="transformer", variable_len=True)


def _grads(cfg: QuietStarConfig) -> dict[str, float]:
    torch.manual_seed(0)
    m = ReasonerInterpreterGRU(cfg, V)
    x = torch.randint(0, 10, (4, 9)).repeat_interleave(cfg.trice_samples, 0)
    loss, _ = quiet_star_loss(m(x[:, :-1]), x[:, 1:], cfg)
    loss.backward()
    parts = {"reasoner_head": m.reasoner_head, "reasoner": m.reasoner, "interpreter": m.interpreter,
             "base_lm": m.base_lm, "base_reasoner": m.base_reasoner}
    return {k: sum(float(p.grad.abs().sum()) for p in mod.parameters() if p.grad is not None)
            for k, mod in parts.items()}


def test_gradient_reaches_the_thought_only_through_reinforce() -> None:
    cfg = QuietStarConfig(share_lm_head=False, max_reasoning_len=3, trice_samples=2)
    nll_only = _grads(cfg.model_copy(update={"policy_loss_beta": 0.0}))
    # the NLL trains what reads the thought and the text, never what wrote it: sampled tokens are integers
    assert nll_only["reasoner_head"] == 0 and nll_only["reasoner"] == 0
    assert nll_only["interpreter"] > 0 and nll_only["base_lm"] > 0
    # seeds reach the reasoner only through the policy's log p(thought)
    assert nll_only["base_reasoner"] == 0
    both = _grads(cfg)
    assert both["reasoner_head"] > 0 and both["reasoner"] > 0 and both["base_reasoner"] > 0


def test_without_reasoner_is_the_plain_nll_baseline() -> None:
    cfg = QuietStarConfig(use_reasoner=False)
    m = ReasonerInterpreterGRU(cfg, V)
    x = torch.randint(0, 10, (2, 8))
    out = m(x)
    assert out.thoughts.shape == (2, 8, 0) and out.logp.abs().sum() == 0
    assert torch.allclose(out.logits, m.lm_head(m.base_lm(x)[0]))  # the base LM alone
    loss, stats = quiet_star_loss(out, x, cfg)
    assert "policy" not in stats and loss.item() == pytest.approx(stats["nll"], rel=1e-5)


def test_the_gate_starts_closed_and_eases_in() -> None:
    cfg = QuietStarConfig(mix="gate")
    m = ReasonerInterpreterGRU(cfg, V)
    x = torch.randint(0, 10, (2, 8))
    m.mixer.ceiling = 0.0
    out = m(x)
    assert torch.allclose(out.logits, m.lm_head(m.base_lm(x)[0]), atol=1e-6) and out.gate.abs().sum() == 0
    m.mixer.ceiling = 1.0
    assert m(x).gate.mean().item() == pytest.approx(0.5)  # sigmoid(0): the head's last layer starts at zero


def test_variable_length_thoughts_end_at_eot() -> None:
    cfg = QuietStarConfig(variable_len=True, max_reasoning_len=6)
    torch.manual_seed(3)
    m = ReasonerInterpreterGRU(cfg, V)
    with torch.no_grad():
        m.reasoner_head.bias[m.eot] = 3.0  # make ending likely
    out = m(torch.randint(0, 10, (3, 10)))
    eot, pad = m.eot, m.pad
    for row, n, done in zip(out.thoughts.reshape(-1, 6).tolist(), out.length.reshape(-1).tolist(),
                            out.finished.reshape(-1).tolist()):
        assert all(t not in (eot, pad) for t in row[: int(n)])
        if done:
            assert row[int(n)] == eot and all(t == pad for t in row[int(n) + 1:])
    assert out.finished.any()


def test_transformer_thinks_at_every_position() -> None:
    cfg = QuietStarConfig(model="transformer", model_hidden_dim=16, model_n_head=2, max_reasoning_len=3, window=8,
                          add_last_context_token=True, trice_samples=2)
    m = ThinkingGPT(cfg, V)
    x = torch.randint(0, 10, (4, 9))
    out = m(x[:, :-1])
    assert out.thoughts.shape == (4, 8, 3) and (out.thoughts < 10).all()  # characters only
    loss, stats = quiet_star_loss(out, x[:, 1:], cfg)
    loss.backward()
    assert m.wte.weight.grad is not None and stats["policy"] == stats["policy"]  # finite
    base = ThinkingGPT(cfg.model_copy(update={"use_reasoner": False}), V)
    assert base(x[:, :-1]).thoughts.shape == (4, 8, 0)


def _tiny(**kw) -> QuietStarConfig:
    return QuietStarConfig(window=16, steps=6, eval_every=3, checkpoint_every=3, eval_windows=4, batch_size=4,
                           base_lm_hidden_dim=8, reasoner_hidden_dim=8, interpreter_hidden_dim=8,
                           max_reasoning_len=2, **kw)


def test_a_killed_run_resumes_to_the_same_weights(tmp_path) -> None:
    from reasonlab.experiments.quietstar.train import run

    whole = run(_tiny(), tmp_path / "whole", progress=False)
    part = run(_tiny(), tmp_path / "split", until=3, progress=False)
    assert not part["finished"] and part["steps"] == 3
    rest = run(_tiny(), tmp_path / "split", progress=False)  # resumes from the step-3 checkpoint
    assert rest["finished"] and rest["steps"] == 6
    a = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)  # model, optimizer and generator state all came back
    assert rest["val_bpc"] == whole["val_bpc"] and [h["step"] for h in rest["history"]] == [3, 6]
    assert (tmp_path / "whole" / "curves.png").stat().st_size > 0
    with pytest.raises(ConfigError, match="another config"):
        run(_tiny(lr=0.1), tmp_path / "whole", progress=False)


def test_any_text_file_and_a_clear_error_for_too_little(tmp_path) -> None:
    from reasonlab.experiments.quietstar.data import CharText

    f = tmp_path / "t.txt"
    f.write_text("abc ")
    with pytest.raises(DataError, match="too little text"):
        CharText.load(str(f), 0.1)
    f.write_text("the quick brown fox. " * 200)
    text = CharText.load(str(f), 0.1)
    assert text.vocab_size == len(set("the quick brown fox. ")) + 3
    assert torch.equal(text.val_windows(5, 16), text.val_windows(5, 16))  # the same windows every pass
    with pytest.raises(DataError, match="not found"):
        CharText.load(str(tmp_path / "missing.txt"), 0.1)


def test_sweep_cli_runs_the_grid_resumes_and_tabulates(tmp_path) -> None:
    cli = [sys.executable, "-m", "reasonlab.cli", "experiment", "sweep", "quietstar", "window=16", "steps=2",
           "eval_every=2", "eval_windows=2", "batch_size=2", "max_reasoning_len=1", "base_lm_hidden_dim=8",
           "reasoner_hidden_dim=8", "interpreter_hidden_dim=8", "use_reasoner=true,false", "seed=1,2",
           "--out", str(tmp_path / "s")]
    first = subprocess.run(cli, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    cells = sorted(p.name for p in (tmp_path / "s").iterdir() if p.is_dir())
    assert cells == ["use_reasoner=false,seed=1", "use_reasoner=false,seed=2", "use_reasoner=true,seed=1",
                     "use_reasoner=true,seed=2"]
    table = (tmp_path / "s" / "table.md").read_text()
    assert "| use_reasoner | val_bpc mean ± std | seeds | best_val_bpc (mean) |" in table
    assert table.count("| 2 |") == 2
    stamp = (tmp_path / "s" / cells[0] / "result.json").stat().st_mtime_ns
    again = subprocess.run(cli, capture_output=True, text=True)
    assert again.returncode == 0 and "[1/4]" not in again.stderr  # finished cells are not run again
    assert (tmp_path / "s" / cells[0] / "result.json").stat().st_mtime_ns == stamp
    rows = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert len(rows) == 4 and all(r["val_bpc"] > 0 for r in rows)
    bad = subprocess.run(cli[:6] + ["weight_groups=[A,A,B,B]", "reasoner_hidden_dim=8", "--out", str(tmp_path / "b")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "share weights" in bad.stderr


# --- the stretch: the same thinking on a pretrained causal LM through transformers ---------------------------------

def _hf_cfg(tiny_qwen, tmp_path, **kw):
    text = tmp_path / "text.txt"
    text.write_text("the answer is 4 ? one plus two . " * 300)
    return QuietStarConfig(model="hf", hf_model=str(tiny_qwen), data=str(text), window=16, max_reasoning_len=2,
                           batch_size=2, steps=2, eval_every=2, checkpoint_every=2, eval_windows=2, lr=1e-4, **kw)


def test_hf_thoughts_see_their_context_and_own_position_only(tiny_qwen, tmp_path) -> None:
    from transformers import DynamicCache

    from reasonlab.experiments.quietstar.hf import load

    model, text = load(_hf_cfg(tiny_qwen, tmp_path))
    model.eval()
    x = text.train[:12][None]
    y = x.clone()
    y[0, 8] = (y[0, 8] + 1) % 50  # change the text at position 8
    i = torch.arange(12)[None]
    with torch.no_grad():
        hs = []
        for ids in (x, y):
            cache = DynamicCache()
            model.step(ids, i, cache, 0)
            sot = torch.full_like(ids, model.sot)
            first = model.step(sot, i + 1, cache, 1)
            other = sot.clone()
            other[0, 10] = 7  # another position's own thought token differs: nobody else may notice
            hs.append(model.step(other if ids is y else sot, i + 2, cache, 2))
            hs.append(first)
    x2, x1, y2, y1 = hs
    assert torch.allclose(x1[0, :8], y1[0, :8], atol=1e-5) and not torch.allclose(x1[0, 8:], y1[0, 8:], atol=1e-5)
    assert torch.allclose(x2[0, :8], y2[0, :8], atol=1e-5)  # position 10's thought is invisible to 0..7


def test_hf_quiet_star_trains_and_reports_bits_per_character(tiny_qwen, tmp_path) -> None:
    from reasonlab.experiments.quietstar.train import run

    out = run(_hf_cfg(tiny_qwen, tmp_path), tmp_path / "r", progress=False)
    assert out["finished"] and 0 < out["val_bpc"] < 20
    base = run(_hf_cfg(tiny_qwen, tmp_path, use_reasoner=False), tmp_path / "b", progress=False)
    assert base["finished"] and base["val_bpc"] > 0
    with pytest.raises(ConfigError, match="lacks"):
        from reasonlab.experiments.quietstar.hf import load

        load(_hf_cfg(tiny_qwen, tmp_path, sot_token="<nope>"))


def test_a_run_resumes_across_versions_that_add_options(tmp_path) -> None:
    from reasonlab.experiments.loop import open_run

    open_run(tmp_path, _tiny())
    stored = json.loads((tmp_path / "config.json").read_text())
    del stored["temperature"]  # written by a version without the option
    (tmp_path / "config.json").write_text(json.dumps(stored))
    open_run(tmp_path, _tiny())  # the option at its default: the same run
    (tmp_path / "config.json").write_text(json.dumps(stored))
    with pytest.raises(ConfigError, match="temperature"):
        open_run(tmp_path, _tiny(temperature=0.5))


def test_cells_run_side_by_side_give_what_they_give_alone(tmp_path) -> None:
    from reasonlab.experiments import EXPERIMENTS
    from reasonlab.experiments.grid import sweep

    exp = EXPERIMENTS.get("quietstar")
    grid = {"use_reasoner": [True, False], "seed": [1]}
    recipe = {"window": 16, "steps": 2, "eval_every": 2, "eval_windows": 2, "batch_size": 2, "max_reasoning_len": 1,
              "base_lm_hidden_dim": 8, "reasoner_hidden_dim": 8, "interpreter_hidden_dim": 8}
    alone = sweep(exp, grid, tmp_path / "one", recipe, say=lambda _: None, progress=False)
    together = sweep(exp, grid, tmp_path / "two", recipe, say=lambda _: None, progress=False, jobs=2)
    assert [r["val_bpc"] for r in alone] == [r["val_bpc"] for r in together]
    assert [r["dir"] for r in together] == ["use_reasoner=true", "use_reasoner=false"]  # cell order kept
