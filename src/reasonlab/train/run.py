"""A training run is a directory, like an evaluation run: resumable, never silently mixed with another config.

    runs/train/star/
        train.yaml            the config and what identifies the base model and the data
        checkpoint-N/         TRL/transformers checkpoints (a killed run resumes from the last)
        adapter/ | model/     the result: the LoRA adapter (peft) or the full model, with the tokenizer
        log_history.jsonl     every logged step; curves.png: loss (and reward, GRPO) against step
        summary.json          steps, seconds, last loss, where the result is

    >>> cfg = TrainConfig(method="sft", model="smollm2-135m", data="data/sft.jsonl", out="runs/train/t")  # doctest: +SKIP
    >>> train(cfg)["result"]                                                                             # doctest: +SKIP
    'runs/train/t/adapter'
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import yaml

from reasonlab.errors import ConfigError
from reasonlab.runs import diff, known_to
from reasonlab.train.config import TrainConfig
from reasonlab.train.methods import TRAINERS, precision
from reasonlab.train.model import load_trainable, model_identity

CONFIG = "train.yaml"
# fields that may change when a run is resumed: how long it runs and how often it logs and saves
RESUMABLE = {"out", "epochs", "max_steps", "logging_steps", "save_steps", "save_total_limit"}


def _file_sha(path: str | None) -> str | None:
    if not path or not Path(path).is_file():
        return None
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def identity(cfg: TrainConfig) -> dict[str, Any]:
    """What a checkpoint belongs to: the config (bar run-length knobs), the base weights, the data file."""
    fields = {k: v for k, v in cfg.model_dump(mode="json").items() if k not in RESUMABLE}
    return {"config": fields, "base": model_identity(cfg.model), "data_sha256": _file_sha(cfg.data),
            "precision": precision(cfg.precision)}  # auto as resolved here: a checkpoint resumes in its own


# how long a run trains: a finished run asked for the same is done, asked for more it goes on
LENGTH = ("epochs", "max_steps")


def _open(cfg: TrainConfig, out: Path, force_new: bool) -> tuple[bool, dict[str, Any] | None]:
    """Write or check ``train.yaml``; (there is a checkpoint to resume from, the stored summary when this run
    already finished with the same length — nothing to do)."""
    from transformers.trainer_utils import get_last_checkpoint

    ident = identity(cfg)
    path = out / CONFIG
    if path.exists() and not force_new:
        stored = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        old = stored.get("identity") or {}
        # a field the run's version did not have yet (a new option) cannot differ, as for evaluation runs
        changes = diff(old, known_to(old, ident))
        if changes:
            raise ConfigError(f"{out} holds a training run with another config ({'; '.join(changes[:3])}): use "
                              f"another --out, or --force-new to start over there")
        summary = out / "summary.json"
        same_length = all((stored.get("config") or {}).get(k) == getattr(cfg, k) for k in LENGTH)
        if summary.exists() and same_length:
            done = json.loads(summary.read_text(encoding="utf-8"))
            if Path(done.get("result", "")).exists():
                return True, done
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"config": cfg.model_dump(mode="json"), "identity": ident}, sort_keys=False),
                    encoding="utf-8")
    return not force_new and get_last_checkpoint(str(out)) is not None, None


def grpo_dataset(cfg: TrainConfig, tok: Any = None) -> Any:
    """GRPO's prompts: problems rendered as conversations with the evaluation's prompt template (TRL applies
    the model's chat template), with the gold answer and its type as columns the rewards read. A model without a
    chat template (a base model, the mul-tokens study's GPT-2) gets the same text as a plain prompt."""
    from datasets import Dataset

    from reasonlab.data import DatasetConfig, load_problems
    from reasonlab.strategies.prompts import get_template

    g = cfg.grpo
    problems = load_problems(DatasetConfig(name=g.dataset, limit=g.limit, offset=g.offset))
    template = get_template(g.prompt)
    rows = []
    for p in problems:
        user = template.user.replace("{question}", p.question)
        messages = ([{"role": "system", "content": template.system}] if template.system else []) + [
            {"role": "user", "content": user}]
        if tok is not None and not getattr(tok, "chat_template", None):
            prompt: Any = "\n\n".join(m["content"] for m in messages)
        else:
            prompt = messages
        rows.append({"prompt": prompt, "answer": p.answer, "answer_type": p.answer_type})
    return Dataset.from_list(rows)


def train(cfg: TrainConfig, collator: Any = None, force_new: bool = False) -> dict[str, Any]:
    """Train as ``cfg`` says, resuming from the last checkpoint in ``cfg.out``; returns the summary."""
    from reasonlab.train.curves import save_curves
    from reasonlab.train.data import load_rows

    out = Path(cfg.out)
    if cfg.method != "grpo":
        from reasonlab.train.data import form_of, read_rows

        form_of(read_rows(cfg.data), cfg.method, str(cfg.data))  # a bad dataset fails before the model loads
    resume, finished = _open(cfg, out, force_new)
    if finished is not None:  # re-running a finished run (a resumable script's next pass): nothing to redo
        return finished
    model, tok = load_trainable(cfg.model, head="score" if cfg.method == "reward" else "lm")
    rewards, staged, new_rows = None, None, None
    if cfg.method == "grpo":
        from reasonlab.answers import Verifier
        from reasonlab.train.rewards import load_reward

        data = grpo_dataset(cfg, tok)
        rewards = [load_reward(r, Verifier()) for r in cfg.grpo.rewards]
    elif cfg.method == "sft" and cfg.sft.hcot != "off":
        from reasonlab.train.hcot import hcot_dataset

        from reasonlab.train.tokens import token_rows

        data, staged, own, ids = hcot_dataset(cfg.data, model, tok, cfg.max_length, cfg.sft.hcot,
                                              cfg.sft.hcot_positions)
        collator = collator or own
        new_rows = token_rows(model, ids)  # the markers' rows train beside the LoRA (frozen, never sampled)
    else:
        data = load_rows(cfg.data, cfg.method, tok)
    trainer = TRAINERS[cfg.method](cfg, model, tok, data, str(out), collator=collator, rewards=rewards,
                                     token_rows=new_rows)
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=True if resume else None)
    seconds = time.perf_counter() - start
    final = out / ("adapter" if cfg.lora is not None else "model")
    trainer.save_model(str(final))
    tok.save_pretrained(str(final))
    history = trainer.state.log_history
    with (out / "log_history.jsonl").open("w", encoding="utf-8") as fh:
        for row in history:
            fh.write(json.dumps(row) + "\n")
    save_curves(history, out / "curves.png", title=f"{cfg.method} {cfg.model}")
    losses = [h["loss"] for h in history if "loss" in h]
    summary = {"method": cfg.method, "model": cfg.model, "steps": trainer.state.global_step,
               "resumed": resume, "seconds": round(seconds, 1), "train_loss": result.training_loss,
               "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
               "result": str(final), "rows": len(data), "precision": precision(cfg.precision)}
    if staged is not None:
        summary["hcot_stages"] = staged
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
