"""The Quiet-STaR training loop, nanoGPT-style: one readable loop, AdamW with warmup + cosine, gradient clipping,
validation in bits per character on fixed held-out windows, checkpoints a killed run resumes from exactly (model,
optimizer and random-generator state), loss curves as a PNG.

    reasonlab experiment run quietstar use_reasoner=false seed=7 --out runs/qs/nll-7
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch

from reasonlab.experiments.loop import cosine_lr, load_checkpoint, open_run, plot_curves, save_checkpoint, write_json
from reasonlab.experiments.loop import progress as progress_bar
from reasonlab.experiments.quietstar.config import QuietStarConfig
from reasonlab.experiments.quietstar.data import CharText
from reasonlab.experiments.quietstar.gru import ReasonerInterpreterGRU, parameter_count
from reasonlab.experiments.quietstar.loss import quiet_star_loss
from reasonlab.experiments.quietstar.transformer import ThinkingGPT

MODELS = {"gru": ReasonerInterpreterGRU, "transformer": ThinkingGPT}


def build(cfg: QuietStarConfig, vocab_size: int) -> torch.nn.Module:
    return MODELS[cfg.model](cfg, vocab_size)


def lr_at(step: int, cfg: QuietStarConfig) -> float:
    """Linear warmup over the first 5 % of steps, then cosine down to 10 % of the peak."""
    return cosine_lr(step, cfg.steps, cfg.lr, warmup=max(1, cfg.steps // 20))


@torch.no_grad()
def evaluate(model: torch.nn.Module, windows: torch.Tensor, cfg: QuietStarConfig, windows_text: Any = None) -> float:
    """Validation bits per character over ``windows`` [N, W+1], one thought per position (seeded, so the same
    thoughts every pass for the same weights)."""
    was = model.training
    model.eval()
    gen = torch.Generator().manual_seed(1234)
    total, count = 0.0, 0
    for lo in range(0, len(windows), 16):
        batch = windows[lo: lo + 16]
        out = model(batch[:, :-1], generator=gen)
        nll = torch.nn.functional.cross_entropy(out.logits.transpose(1, 2), batch[:, 1:], reduction="sum")
        total, count = total + float(nll), count + batch[:, 1:].numel()
    model.train(was)
    # bits per character: a model reading tokens (hf) spreads each token's bits over its characters
    return total / count / math.log(2) / getattr(windows_text, "chars_per_token", 1.0)


def run(cfg: QuietStarConfig, out: str | Path, until: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Train as ``cfg`` says in ``out`` (resuming from its checkpoint); stop early, with a checkpoint, once
    ``until`` steps are done. Returns result.json's content (``finished`` false when stopped early)."""
    out = Path(out)
    open_run(out, cfg)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    if cfg.model == "hf":  # a pretrained LM thinks in its own tokens
        from reasonlab.experiments.quietstar.hf import load as load_hf

        model, text = load_hf(cfg)
    else:
        text = CharText.load(cfg.data, cfg.val_fraction)
        model = build(cfg, text.vocab_size)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    gen = torch.Generator().manual_seed(cfg.seed)  # windows and thoughts: saved with the checkpoint
    step, history, seconds = 0, [], 0.0
    ckpt = out / "checkpoint.pt"
    state = load_checkpoint(ckpt)
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        gen.set_state(state["gen"])
        step, history, seconds = state["step"], state["history"], state["seconds"]
    val = text.val_windows(cfg.eval_windows, cfg.window)
    stop = min(cfg.steps, until) if until is not None else cfg.steps
    recent: list[dict[str, float]] = []
    bar = progress_bar(progress, stop, step)
    start = time.perf_counter()
    model.train()
    while step < stop:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        model.mixer.ceiling = min(1.0, step / cfg.gate_warmup) if cfg.gate_warmup else 1.0
        batch = text.train_batch(cfg.batch_size, cfg.window, gen)  # [B, W+1]
        x = batch[:, :-1].repeat_interleave(cfg.trice_samples, 0)  # [B*K, W]: each window thought K times
        y = batch[:, 1:].repeat_interleave(cfg.trice_samples, 0)
        loss, stats = quiet_star_loss(model(x, generator=gen), y, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        step += 1
        recent.append(stats)
        if step % cfg.eval_every == 0 or step == cfg.steps:
            row = {"step": step, "val_bpc": evaluate(model, val, cfg, text),
                   **{f"train_{k}": sum(r[k] for r in recent) / len(recent) for k in recent[-1]}}
            row["train_bpc"] /= getattr(text, "chars_per_token", 1.0)  # hf: per token -> per character
            history.append(row)
            recent = []
            if bar is not None:
                bar[0].update(bar[1], description=f"val {row['val_bpc']:.3f} bpc")
        if step % cfg.checkpoint_every == 0 or step == stop:
            save_checkpoint(ckpt, model=model.state_dict(), opt=opt.state_dict(), gen=gen.get_state(), step=step,
                            history=history, seconds=seconds + time.perf_counter() - start)
        if bar is not None:
            bar[0].advance(bar[1])
    if bar is not None:
        bar[0].stop()
    seconds += time.perf_counter() - start
    result = {"finished": step >= cfg.steps, "steps": step, "seconds": round(seconds, 1),
              "parameters": parameter_count(model),
              "val_bpc": history[-1]["val_bpc"] if history else None,
              "best_val_bpc": min(h["val_bpc"] for h in history) if history else None, "history": history}
    write_json(out / "result.json", result)
    if history:
        plot_curves(history, out / "curves.png", out.name, "train_bpc", "val_bpc", "bits per character")
    return result
