"""Pretraining one condition of the mul-tokens study, nanoGPT-style, then what the study measures on it.

    data       the corpus (corpus.build, seeded: both conditions get the same documents), a byte-level BPE trained
               on it (the same for both), the fact tokens injected for ``multokens`` only; cached in the run
    train      AdamW (decay 0.1 on matrices), warmup + cosine, clipping 1.0, gradient accumulation, a fixed token
               budget; validation loss on fixed held-out windows; checkpoints (model, optimizer, generator) a
               killed run resumes from exactly; loss curves as a PNG
    export     transformers GPT2LMHeadModel + tokenizer in ``hf/``, verified by equal logits
    measure    val loss, probes (probes.py), HellaSwag when data is given

    reasonlab experiment sweep multokens condition=baseline,multokens seed=0,1 --out runs/multokens
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from reasonlab.errors import ConfigError
from reasonlab.experiments.loop import (cosine_lr, load_checkpoint, open_run, plot_curves, progress,
                                        save_checkpoint, write_json)
from reasonlab.experiments.multokens import corpus
from reasonlab.experiments.multokens.config import MulTokensConfig
from reasonlab.experiments.multokens.facts import FAMILIES, FactFamily, inject
from reasonlab.experiments.multokens.model import GPT, GPTConfig, param_count
from reasonlab.experiments.multokens.tokenizer import EOT, as_hf, load, train_tokenizer


def family_of(cfg: MulTokensConfig) -> FactFamily:
    if cfg.family not in FAMILIES:
        raise ConfigError(f"family {cfg.family!r}: known {', '.join(FAMILIES)}")
    return FAMILIES[cfg.family](upto=cfg.family_upto)


def prepare(cfg: MulTokensConfig, out: Path) -> tuple[Any, torch.Tensor, torch.Tensor, dict[str, Any]]:
    """(tokenizer, train ids, val ids, data stats), built once and cached in ``out/data``."""
    data = out / "data"
    if (data / "stats.json").exists():  # written last: a build killed halfway is built again
        return (load(data / "tokenizer.json"), torch.load(data / "train.pt"), torch.load(data / "val.pt"),
                json.loads((data / "stats.json").read_text()))
    data.mkdir(parents=True, exist_ok=True)
    family = family_of(cfg)
    # about 4 characters per token: enough text that the budget is about one pass
    train_docs, val_by_source = corpus.build(cfg.corpus, total_chars=4 * cfg.budget_tokens, seed=cfg.seed)
    tok = train_tokenizer(train_docs[:20000], cfg.vocab_size, family.tokens)  # the un-injected text: shared
    val_docs = [d for docs in val_by_source.values() for d in docs]
    train_ids, val_ids = ids_of(tok, train_docs, cfg), ids_of(tok, val_docs, cfg)
    fact_ids = {tok.token_to_id(t) for t in family.tokens}
    stats = {"train_tokens": len(train_ids), "val_tokens": len(val_ids), "vocab": tok.get_vocab_size(),
             "fact_tokens_in_train": int(sum(int(t) in fact_ids for t in train_ids.tolist())),
             "documents": len(train_docs)}
    tok.save(str(data / "tokenizer.json"))
    torch.save(train_ids, data / "train.pt")
    torch.save(val_ids, data / "val.pt")
    (data / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    return tok, train_ids, val_ids, stats


def ids_of(tok: Any, docs: list[str], cfg: MulTokensConfig) -> torch.Tensor:
    """One token stream: each document (its facts injected in the mul-token condition) and an end-of-text."""
    if cfg.condition == "multokens":
        family = family_of(cfg)
        docs = [inject(d, family, cfg.inject_mode) for d in docs]
    eot = tok.token_to_id(EOT)
    flat: list[int] = []
    for enc in tok.encode_batch(docs):
        flat += enc.ids + [eot]
    return torch.tensor(flat, dtype=torch.int32)


@torch.no_grad()
def bits_per_char(model: GPT, tok: Any, cfg: MulTokensConfig) -> dict[str, float]:
    """Validation bits per character of the original text, per source and over all of it.

    Loss per token cannot compare the conditions: a fact token stands for the ~7 tokens of ``6 * 9 = 54``, so the
    two streams have different lengths. Bits per character of the same un-injected documents can. The whole
    held-out stream is read in consecutive ``block_size`` windows (each starts with an empty context, in both
    conditions alike); the end-of-text after each document is charged to it.
    """
    model.eval()
    _, val = corpus.build(cfg.corpus, total_chars=0, seed=cfg.seed)  # the held-out tails do not depend on the budget
    out: dict[str, float] = {}
    nats_all = chars_all = 0.0
    for name, docs in val.items():
        ids = ids_of(tok, docs, cfg).long()
        nats = 0.0
        for lo in range(0, len(ids) - 1, cfg.block_size):
            x = ids[lo: lo + cfg.block_size][None]  # [1, <=T]
            y = ids[lo + 1: lo + cfg.block_size + 1][None]
            x = x[:, : y.shape[1]]
            logits, _ = model(x)  # [1, T, padded vocab]
            nats += float(F.cross_entropy(logits[0], y[0], reduction="sum"))
        chars = sum(len(d) + 1 for d in docs)  # + the document break the end-of-text stands for
        out[name] = nats / chars / math.log(2)
        nats_all, chars_all = nats_all + nats, chars_all + chars
    out["all"] = nats_all / chars_all / math.log(2)
    model.train()
    return out


def windows(ids: torch.Tensor, n: int, block: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n random (input, target) windows [n, block] of ``ids``."""
    starts = torch.randint(0, len(ids) - block - 1, (n,), generator=gen)
    x = torch.stack([ids[s: s + block] for s in starts.tolist()]).long()
    y = torch.stack([ids[s + 1: s + block + 1] for s in starts.tolist()]).long()
    return x, y


def compose_init(model: GPT, tok: Any, family: FactFamily) -> None:
    """The notes' option D2: each fact token starts as the mean embedding of its operands' and result's tokens."""
    wte = model.transformer.wte.weight
    with torch.no_grad():
        for f in family.facts:
            parts = [i for n in (f.a, f.b, f.c) for i in tok.encode(str(n)).ids]
            wte[tok.token_to_id(f.token)] = wte[parts].mean(0)


@torch.no_grad()
def val_loss(model: GPT, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    model.eval()
    total = sum(float(model(x, y)[1]) for x, y in batches) / len(batches)
    model.train()
    return total


def run(cfg: MulTokensConfig, out: str | Path, until: int | None = None, progress_on: bool = True) -> dict[str, Any]:
    """Pretrain (resuming), export and measure; returns result.json's content."""
    out = Path(out)
    open_run(out, cfg)
    torch.set_num_threads(cfg.threads)
    tok, train_ids, val_ids, stats = prepare(cfg, out)
    torch.manual_seed(cfg.seed)
    model = GPT(GPTConfig(vocab_size=tok.get_vocab_size(), block_size=cfg.block_size, n_layer=cfg.n_layer,
                          n_head=cfg.n_head, n_embd=cfg.n_embd))
    if cfg.init == "composed":
        compose_init(model, tok, family_of(cfg))
    opt = model.configure_optimizer(cfg.lr, cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    val_batches = [windows(val_ids, cfg.batch_size, cfg.block_size, torch.Generator().manual_seed(10_000 + i))
                   for i in range(cfg.eval_batches)]  # the same windows every pass, in every run
    step, history, seconds = 0, [], 0.0
    ckpt = out / "checkpoint.pt"
    state = load_checkpoint(ckpt)
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        gen.set_state(state["gen"])
        step, history, seconds = state["step"], state["history"], state["seconds"]
    total = cfg.steps
    stop = min(total, until) if until is not None else total
    bar = progress(progress_on, stop, step)
    start, recent = time.perf_counter(), []
    model.train()
    while step < stop:
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step, total, cfg.lr, warmup=max(1, total // 20))
        opt.zero_grad(set_to_none=True)
        loss_sum = 0.0
        for _ in range(cfg.grad_accum):  # micro-batches: the loss scaled so gradients average
            x, y = windows(train_ids, cfg.batch_size, cfg.block_size, gen)  # [B, T]
            _, loss = model(x, y)
            (loss / cfg.grad_accum).backward()
            loss_sum += float(loss.detach()) / cfg.grad_accum
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        step += 1
        recent.append(loss_sum)
        if step % cfg.eval_every == 0 or step == total:
            history.append({"step": step, "tokens": step * cfg.tokens_per_step, "train_loss": sum(recent) / len(recent),
                            "val_loss": val_loss(model, val_batches)})
            recent = []
            if bar is not None:
                bar[0].update(bar[1], description=f"val {history[-1]['val_loss']:.3f}")
        if step % cfg.checkpoint_every == 0 or step == stop:
            save_checkpoint(ckpt, model=model.state_dict(), opt=opt.state_dict(), gen=gen.get_state(), step=step,
                            history=history, seconds=seconds + time.perf_counter() - start)
        if bar is not None:
            bar[0].advance(bar[1])
    if bar is not None:
        bar[0].stop()
    seconds += time.perf_counter() - start
    result: dict[str, Any] = {"finished": step >= total, "steps": step, "seconds": round(seconds, 1),
                              "parameters": param_count(model), "data": stats, "history": history,
                              "val_loss": history[-1]["val_loss"] if history else None}
    if result["finished"]:
        result.update(measure(cfg, model, tok, out))
    write_json(out / "result.json", result)
    if history:
        plot_curves(history, out / "curves.png", out.name, "train_loss", "val_loss", "loss (nats/token)")
    return result


def measure(cfg: MulTokensConfig, model: GPT, tok: Any, out: Path) -> dict[str, Any]:
    """Export (verified), then the probes on the exported model through reasonlab's hf engine."""
    from reasonlab.experiments.multokens.export import to_hf, verify
    from reasonlab.experiments.multokens.probes import run_probes

    hf = to_hf(model, as_hf(tok), out / "hf")
    diff = verify(model, hf)
    if diff > 1e-3:
        raise RuntimeError(f"export: logits differ by {diff:.2e} after export")
    found: dict[str, Any] = {"export_max_abs_diff": diff, "val_bpc": bits_per_char(model, tok, cfg),
                             "probes": run_probes(out / "hf", family_of(cfg), seed=cfg.seed)}
    if cfg.hellaswag:
        from reasonlab.engines.hf import HFEngine
        from reasonlab.experiments.multokens.hellaswag import evaluate, load_items

        with HFEngine(str(out / "hf")) as engine:
            found["hellaswag"] = evaluate(engine, load_items(cfg.hellaswag, cfg.hellaswag_limit))
    if cfg.sft_steps:
        from reasonlab.experiments.multokens.post import gsm8k_after_sft

        found["sft"] = gsm8k_after_sft(cfg, out, family_of(cfg))
    return found
