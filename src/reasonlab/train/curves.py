"""Loss and reward curves from a trainer's log history, as a PNG a person can glance at."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# what each method logs that is worth a curve (TRL's names)
CURVES = ("loss", "reward", "rewards/margins", "rewards/chosen", "rewards/rejected", "kl")


def save_curves(history: list[dict[str, Any]], path: str | Path, title: str = "") -> list[str]:
    """Plot every logged series of ``CURVES`` against step; returns the names plotted (none: no file)."""
    series = {k: [(h["step"], h[k]) for h in history if k in h and "step" in h] for k in CURVES}
    series = {k: v for k, v in series.items() if v}
    if not series:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(series), figsize=(4.2 * len(series), 3.2), squeeze=False)
    for ax, (name, points) in zip(axes[0], series.items()):
        ax.plot([s for s, _ in points], [v for _, v in points], marker=".", lw=1)
        ax.set_xlabel("step")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return list(series)
