"""PNG plots of a bench run (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def draw(res: dict[str, Any], out: Path) -> list[str]:
    """One PNG per measured curve; returns the file names written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    written: list[str] = []

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        written.append(name)

    cpu = f"{res['threads']} threads, {res['cpu'].get('model', '?')}"
    if res.get("models"):
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        rows = sorted(res["models"], key=lambda r: r["mb_per_token"])
        x = [r["mb_per_token"] for r in rows]
        ax.plot(x, [r["decode_tok_s"] for r in rows], "o-", label="decode (measured)")
        if all(r["bandwidth_bound_tok_s"] for r in rows):
            ax.plot(x, [r["bandwidth_bound_tok_s"] for r in rows], "k--", label="memory-bandwidth bound")
        for r in rows:
            ax.annotate(r["model"], (r["mb_per_token"], r["decode_tok_s"]), fontsize=8,
                        textcoords="offset points", xytext=(4, 4))
        ax.set(xlabel="weights read per token (MB)", ylabel="tokens/s (one sequence)", yscale="log",
               title=f"speed vs model size ({cpu})")
        ax.legend()
        save(fig, "bench_models.png")
    if res.get("batch"):
        rows = res["batch"]["rows"]
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        b = [r["batch"] for r in rows]
        ax.plot(b, [r["tok_s"] for r in rows], "o-", label="aggregate decode tok/s")
        ax.plot(b, [r["per_sequence_tok_s"] for r in rows], "s--", label="per sequence")
        for r in rows:
            ax.annotate(f"{r['speedup']}x", (r["batch"], r["tok_s"]), fontsize=8, textcoords="offset points",
                        xytext=(4, -12))
        ax.set_xscale("log", base=2)
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set(xticks=b, xticklabels=[str(v) for v in b], xlabel="sequences decoded together", ylim=(0, None),
               ylabel="tokens/s", title=f"batched sampling, {res['batch']['model']} ({res['threads']} threads)")
        ax.legend()
        save(fig, "bench_batch.png")
    if res.get("length"):
        w = res["length"]["windows"]
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        ax.plot([r["tokens"] for r in w], [r["tok_s"] for r in w], "o-")
        ax.set(xlabel="tokens generated so far", ylabel="tokens/s (last 128 tokens)", ylim=(0, None),
               title=f"speed as the trace grows, {res['length']['model']}")
        save(fig, "bench_length.png")
    curves = {k: v["rows"] for k, v in (res.get("server") or {}).items() if isinstance(v, dict) and v.get("rows")}
    if curves:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for kind, rows in curves.items():
            ax.plot([r["concurrency"] for r in rows], [r["tok_s"] for r in rows], "o-", label=kind)
        ax.set(xlabel="requests in flight", ylabel="aggregate tokens/s", ylim=(0, None),
               title="OpenAI-compatible server throughput")
        ax.legend()
        save(fig, "bench_server.png")
    return written
