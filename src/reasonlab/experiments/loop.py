"""What every experiment's training loop shares (nanoGPT-style loops stay one readable file each; these are the
parts that would otherwise be copied): the learning-rate schedule, checkpoints a killed run resumes from exactly,
a progress bar, loss curves.

    >>> [round(cosine_lr(s, total=100, peak=1.0, warmup=5), 3) for s in (0, 4, 5, 52, 99)]
    [0.2, 1.0, 1.0, 0.557, 0.1]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reasonlab.errors import ConfigError


def open_run(out: Path, cfg: Any) -> None:
    """Create ``out`` or check it holds this config (``config.json``). A field the stored run did not have yet (a
    newer version's option) matches when the new config leaves it at its default, so a run resumes across
    versions."""
    out.mkdir(parents=True, exist_ok=True)
    saved = out / "config.json"
    now = cfg.model_dump(mode="json")
    if saved.exists():
        old = json.loads(saved.read_text())
        defaults = type(cfg)().model_dump(mode="json")
        differ = [k for k in now if (k in old and old[k] != now[k]) or (k not in old and now[k] != defaults.get(k))]
        differ += [k for k in old if k not in now]
        if differ:
            raise ConfigError(f"{out} holds a run with another config ({', '.join(differ[:3])}): use another --out, "
                              f"or delete it")
    saved.write_text(json.dumps(now, indent=2) + "\n")


def write_json(path: Path, obj: Any) -> None:
    """Written whole, then renamed: a kill mid-write never leaves half a result a sweep would read."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    tmp.replace(path)


def cosine_lr(step: int, total: int, peak: float, warmup: int, floor: float = 0.1) -> float:
    """Linear warmup over ``warmup`` steps, then cosine from ``peak`` down to ``floor * peak`` at ``total``."""
    import math

    if step < warmup:
        return peak * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t)))


def save_checkpoint(path: Path, **state: Any) -> None:
    """Written whole, then renamed: a kill mid-save keeps the previous checkpoint."""
    import torch

    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    import torch

    return torch.load(path, weights_only=False) if path.exists() else None


def progress(on: bool, total: int, done: int) -> Any:
    """(rich Progress, task) or None."""
    if not on:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    bar.start()
    return bar, bar.add_task("training", total=total, completed=done)


def plot_curves(history: list[dict[str, float]], path: Path, title: str, train_key: str, val_key: str,
                ylabel: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(steps, [h[train_key] for h in history], label="train")
    ax.plot(steps, [h[val_key] for h in history], label="val")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
