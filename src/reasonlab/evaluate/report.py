"""``reasonlab report RUN_DIR...``: one HTML page and its PNGs for one or more runs, side by side.

The page holds a table of the runs (accuracy with its interval, tokens and seconds per problem, traces,
stop reasons), the plots a person would rather look at than read — accuracy vs tokens, vs wall time,
vs samples (maj@k and pass@k), tokens/s vs thinking time, trace length of right and wrong answers —
and every problem with its traces: votes, forced "Wait"s, tool calls with their code and output, the
stop reason. It is a static file: open it from disk, or serve the directory.

    >>> from reasonlab.evaluate.report import write_report            # doctest: +SKIP
    >>> write_report(["runs/gsm8k-greedy", "runs/gsm8k-vote"], "runs/report")   # doctest: +SKIP
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from reasonlab.evaluate.metrics import SELECTIONS, summarize
from reasonlab.runs import read_run

PLOTS = ("accuracy_vs_tokens.png", "accuracy_vs_time.png", "accuracy_vs_samples.png", "tokens_per_s_vs_time.png",
         "length_vs_correctness.png", "verifier_scores.png", "verifier_selection.png")


def _label(run: dict[str, Any]) -> str:
    cfg = run["config"].get("config", {})
    opts = cfg.get("strategy_options") or {}
    bits = [cfg.get("strategy", "?")]
    for key in ("samples", "stop", "policy", "max_thinking", "min_thinking"):
        if key in opts:
            bits.append(f"{key}={opts[key]}")
    for key, value in (opts.get("policy_options") or {}).items():
        bits.append(f"{key}={value}")
    return f"{Path(run['path']).name} ({', '.join(map(str, bits))})"


def load_runs(paths: list[str | Path]) -> list[dict[str, Any]]:
    runs = []
    for p in paths:
        run = read_run(p)
        records = run.record_dicts()
        runs.append({"path": str(p), "config": run.config, "records": records, "summary": summarize(records, run.config.get("config", {}).get("strategy"),
                                                                run.config.get("config", {}).get("strategy_options")),
                     "errors": [e.model_dump() for e in run.errors]})
    for run in runs:
        run["label"] = _label(run)
    return runs


def draw(runs: list[dict[str, Any]], out: Path) -> list[str]:
    """Write the PNGs; returns the names written (a plot with nothing to show is skipped)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: list[str] = []

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
        written.append(name)

    def scatter(xkey: str, xlabel: str, name: str) -> None:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for run in runs:
            s = run["summary"]
            if not s["n"]:
                continue
            x = s["mean_tokens"] if xkey == "tokens" else s["seconds"] / s["n"]
            lo, hi = s["accuracy_ci95"]
            ax.errorbar([x], [s["accuracy"]], yerr=[[s["accuracy"] - lo], [hi - s["accuracy"]]], fmt="o", capsize=3,
                        label=run["label"][:60])
            curve = s.get("samples")
            if curve and xkey == "tokens" and s.get("mean_traces"):
                per_trace = s["mean_tokens"] / s["mean_traces"]  # expected tokens of k samples
                ax.plot([k * per_trace for k in curve["k"]], curve["maj"], "--", alpha=0.6, color="gray")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("accuracy (95% CI)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        save(fig, name)

    scatter("tokens", "generated tokens per problem (dashed: maj@k from the same samples)", PLOTS[0])
    scatter("seconds", "seconds per problem, start to answer (problems in flight overlap)", PLOTS[1])

    curves = [(r, r["summary"]["samples"]) for r in runs if r["summary"].get("samples")]
    if curves:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for run, c in curves:
            for key, style in (("maj", "o-"), ("pass", "s--")):
                lo = [b[0] for b in c[f"{key}_ci95"]]
                hi = [b[1] for b in c[f"{key}_ci95"]]
                line = ax.plot(c["k"], c[key], style, label=f"{key}@k {Path(run['path']).name}")[0]
                ax.fill_between(c["k"], lo, hi, alpha=0.12, color=line.get_color())
        ks = sorted({k for _, c in curves for k in c["k"]})
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_xlabel("samples k")
        ax.set_ylabel("accuracy (bootstrap 95% CI)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        save(fig, PLOTS[2])

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    any_points = False
    for run in runs:
        pts = [(t["seconds"], t["completion_tokens"] / t["seconds"]) for r in run["records"] for t in r.get("traces", [])
               if t.get("seconds", 0) > 0 and t.get("completion_tokens", 0) > 0]
        if pts:
            any_points = True
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=8, alpha=0.5, label=Path(run["path"]).name)
    if any_points:
        ax.set_xlabel("trace wall time (s)")
        ax.set_ylabel("generated tokens/s of the trace")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        save(fig, PLOTS[3])
    else:
        plt.close(fig)

    right = [t.get("completion_tokens", 0) for run in runs for r in run["records"] for t in r.get("traces", [])
             if t.get("answer") is not None and t.get("correct")]
    wrong = [t.get("completion_tokens", 0) for run in runs for r in run["records"] for t in r.get("traces", [])
             if t.get("answer") is not None and not t.get("correct")]
    if right or wrong:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        ax.hist([right, wrong], bins=20, label=[f"correct ({len(right)})", f"wrong ({len(wrong)})"],
                color=["tab:green", "tab:red"], alpha=0.7)
        ax.set_xlabel("generated tokens of a trace")
        ax.set_ylabel("traces")
        ax.legend()
        save(fig, PLOTS[4])

    # the outcome verifiers' scores, one panel per scored run (runs scored by different verifiers do not mix): a
    # good verifier pushes right traces right and wrong ones left
    per_run = [(run, [(t["score"], bool(t.get("correct"))) for r in run["records"] for t in r.get("traces", [])
                     if t.get("score") is not None]) for run in runs]
    per_run = [(run, pts) for run, pts in per_run if pts]
    if per_run:
        fig, axes = plt.subplots(1, len(per_run), figsize=(4.2 * len(per_run) + 1, 3.8), squeeze=False, sharey=True)
        for ax, (run, pts) in zip(axes[0], per_run):
            ax.hist([[s for s, ok in pts if ok], [s for s, ok in pts if not ok]], bins=20, range=(0, 1),
                    label=[f"correct ({sum(ok for _, ok in pts)})", f"wrong ({sum(not ok for _, ok in pts)})"],
                    color=["tab:green", "tab:red"], alpha=0.7)
            ax.set_title(Path(run["path"]).name, fontsize=9)
            ax.set_xlabel("verifier score P(correct)")
            ax.legend(fontsize=7)
        axes[0][0].set_ylabel("traces")
        save(fig, PLOTS[5])

    # what selecting by the score gives as samples grow, beside the vote and the ceiling on the same traces
    selection = [(run, run["summary"]["verifier"]["curves"]) for run in runs
                 if (run["summary"].get("verifier") or {}).get("curves")]
    if selection:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        drawn: set[tuple[str, tuple[float, ...]]] = set()  # runs scoring the same traces share maj and pass
        for run, c in selection:
            name = Path(run["path"]).name
            for key, style in (("maj", "o:"), ("pass", "s:")):
                if (key, tuple(c[key])) not in drawn:
                    drawn.add((key, tuple(c[key])))
                    ax.plot(c["k"], c[key], style, color="gray", alpha=0.7,
                            label=f"{'maj@k' if key == 'maj' else 'pass@k'} ({name})")
            line = ax.plot(c["k"], c["best"], "^-", label=f"best-of-k by {name}")[0]
            ax.plot(c["k"], c["weighted"], "v--", color=line.get_color(), alpha=0.7, label=f"weighted vote, {name}")
        ax.set_xlabel("samples k (mean over k-subsets of each problem's samples)")
        ax.set_ylabel("accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        save(fig, PLOTS[6])
    return written


def _vs_maj(sel: dict[str, Any]) -> str:
    """A selection by score set against the vote among the same traces (empty for majority and pass)."""
    if "vs_maj" not in sel:
        return ""
    gap = "" if sel["gap_closed"] is None else f", {sel['gap_closed']:+.0%} of pass - majority"
    return f"{sel['vs_maj']:+.3f} ({sel['vs_maj_ci95'][0]:+.2f}..{sel['vs_maj_ci95'][1]:+.2f}){gap}"


CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:8px 0 20px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}img{max-width:600px;margin:6px;border:1px solid #eee}
details{margin:2px 0 2px 12px}summary{cursor:pointer}.ok{color:#080}.bad{color:#b00}.dim{color:#777}
pre{white-space:pre-wrap;background:#f7f7f7;padding:6px;max-height:420px;overflow:auto;font-size:12px}
.banner{background:#fdd;padding:6px;display:none}
"""

# Marks the page once every plot has loaded, so a browser test (and a person) sees a broken image.
CHECK = """
window.addEventListener('load', function () {
  var imgs = document.querySelectorAll('img.plot'), ok = 0;
  imgs.forEach(function (i) { if (i.complete && i.naturalWidth > 0) ok++; });
  document.body.setAttribute('data-images-ok', ok + '/' + imgs.length);
  if (ok < imgs.length) { var b = document.getElementById('broken'); b.style.display = 'block';
    b.textContent = (imgs.length - ok) + ' plot(s) failed to load'; }
});
"""


def _e(x: Any) -> str:
    return html.escape(str(x))


def _trace_html(t: dict[str, Any], i: int) -> str:
    mark = "ok" if t.get("correct") else "bad"
    valid = "" if t.get("valid", True) else f" <span class=dim>(does not vote: {_e(t.get('dropped'))})</span>"
    events = t.get("events", [])
    waits = sum(1 for e in events if e.get("type") == "wait")
    tools = [e for e in events if e.get("type") == "tool"]
    prunes = [e for e in events if e.get("type") == "prune"]
    hcot = next((e for e in events if e.get("type") == "hcot"), None)
    tags = ", ".join(f"{k}={v}" for k, v in (t.get("tags") or {}).items() if k not in ("mean_logprob",))
    head = (f"trace {t.get('sample', i)}: <span class={mark}>{_e(t.get('answer'))}</span> · "
            f"{t.get('completion_tokens', 0)} tokens · {t.get('finish_reason')}"
            + (f" · {waits} wait" if waits else "") + (f" · {len(tools)} tool calls" if tools else "")
            + (f" · {hcot['prunes']} prunes, peak live {hcot['peak_live']}, retained {hcot['retained']}" if hcot else "")
            + (f" · conf {t['confidence']:.3f}" if t.get("confidence") is not None else "")
            + (f" · verifier {t['score']:.3f}" if t.get("score") is not None else "")
            + (f" · {_e(tags)}" if tags else "") + valid)
    parts = [f"<details><summary>{head}</summary><pre>{_e(t.get('text', ''))}</pre>"]
    for n, e in enumerate(tools, 1):
        status = "timed out" if e.get("timed_out") else "crashed" if e.get("crashed") else "error" if e.get("error") else "ok"
        parts.append(f"<details><summary>tool call {n}: {status}, {e.get('duration_s', 0):.3f}s</summary>"
                     f"<pre>{_e(e.get('code', ''))}</pre><pre>{_e(e.get('output', ''))}{_e(e.get('error') or '')}</pre>"
                     f"</details>")
    for n, e in enumerate(prunes, 1):  # what the model forgot, in order (the whole trace is the text above)
        parts.append(f"<details><summary>prune {n}: {e['removed_tokens']} tokens, live {e['live_before']} → "
                     f"{e['live_after']}</summary><pre>{_e(e.get('removed_text', ''))}</pre></details>")
    other = [e for e in events if e.get("type") not in ("tool", "prune", "hcot")]
    if other:
        parts.append(f"<div class=dim>events: {_e(json.dumps(other)[:600])}</div>")
    parts.append("</details>")
    return "".join(parts)


def _problem_html(r: dict[str, Any]) -> str:
    mark = "ok" if r.get("correct") else "bad"
    votes = ", ".join(f"{_e(a)}: {v:g}" for a, v in sorted((r.get("votes") or {}).items(), key=lambda kv: -kv[1]))
    head = (f"<span class={mark}>{'✓' if r.get('correct') else '✗'}</span> {_e(r['id'])} · answer {_e(r.get('answer'))}"
            f" · gold {_e(r.get('gold'))} · {r.get('tokens', 0)} tokens · {len(r.get('traces', []))} traces"
            f" · stop: {_e(r.get('stop_reason'))}")
    body = [f"<details id='{_e(r['id'])}'><summary>{head}</summary><div>{_e(r.get('question', ''))}</div>"]
    if votes:
        body.append(f"<div>votes at stop: {votes}</div>")
    body += [_trace_html(t, i) for i, t in enumerate(r.get("traces", []))]
    body.append("</details>")
    return "".join(body)


def render(runs: list[dict[str, Any]], plots: list[str]) -> str:
    rows = []
    for run in runs:
        s = run["summary"]
        lo, hi = s["accuracy_ci95"]
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(s.get("stop_reasons", {}).items()))
        rows.append(f"<tr><td>{_e(run['label'])}</td><td>{s['n']}</td><td>{s['accuracy']:.3f}</td>"
                    f"<td>{lo:.2f}-{hi:.2f}</td><td>{s['answer_found_rate']:.0%}</td><td>{s['mean_tokens']:.0f}</td>"
                    f"<td>{s['seconds'] / max(1, s['n']):.1f}</td><td>{s.get('mean_traces', 1):.2f}</td>"
                    f"<td>{_e(reasons)}</td><td>{s.get('prefix_cache_hit_rate', 0):.0%}</td>"
                    f"<td>{len(run.get('errors', []))}</td></tr>")
    extra = []
    for run in runs:
        s = run["summary"]
        if run.get("errors"):  # engine failures: not graded, retried by the next run of the same command
            cells = "".join(f"<tr><td>{_e(e['id'])}</td><td>{_e(e['error'])}</td><td>{e['attempts']}</td>"
                            f"<td>{'yes' if e['retryable'] else 'no'}</td></tr>" for e in run["errors"])
            extra.append(f"<h3>{_e(run['label'])}: failed problems</h3><table><tr><th>id</th><th>error</th>"
                         f"<th>attempts</th><th>retried on resume</th></tr>{cells}</table>")
        if s.get("samples_omitted"):
            extra.append(f"<p>{_e(run['label'])}: no pass@k / maj@k: {_e(s['samples_omitted'])}.</p>")
        c = s.get("samples")
        if c:
            cells = "".join(f"<tr><td>{k}</td><td>{m:.3f} ({ml[0]:.2f}-{ml[1]:.2f})</td><td>{p:.3f}</td></tr>"
                            for k, m, ml, p in zip(c["k"], c["maj"], c["maj_ci95"], c["pass"]))
            lvc = s.get("length_vs_correctness", {})
            extra.append(f"<h3>{_e(run['label'])}: samples</h3><table><tr><th>k</th><th>maj@k (95% CI)</th>"
                         f"<th>pass@k</th></tr>{cells}</table><p>avg@{c['n_samples']}: {c['avg']:.3f}. "
                         f"Mean tokens of correct traces {lvc.get('mean_tokens_correct')}, of wrong ones "
                         f"{lvc.get('mean_tokens_wrong')}, of traces with no answer {lvc.get('mean_tokens_no_answer')}.</p>")
        v = s.get("verifier")
        if v:
            cells = "".join(f"<tr><td>{name}</td><td>{v[key]['acc']:.3f}</td><td>{v[key]['ci95'][0]:.2f}-"
                            f"{v[key]['ci95'][1]:.2f}</td><td>{_vs_maj(v[key])}</td></tr>" for key, name in SELECTIONS)
            auroc = "n/a" if v["auroc_within"] is None else f"{v['auroc_within']:.3f}"
            extra.append(f"<h3>{_e(run['label'])}: outcome verifier</h3><p>within-problem AUROC {auroc} over "
                         f"{v['auroc_within_problems']} problems with a right and a wrong scored trace; "
                         f"{v['traces']} traces scored ({v.get('cost', {}).get('tokens', 0):.0f} prompt tokens, "
                         f"{v.get('cost', {}).get('seconds', 0):.0f} s)</p><table><tr><th>selecting by</th>"
                         f"<th>accuracy</th><th>95% CI</th><th>vs majority, paired (95% CI)</th></tr>{cells}</table>")
        for tag in ("model", "variant"):
            per = s.get(f"by_{tag}")
            if per:
                cells = "".join(f"<tr><td>{_e(k)}</td><td>{v['traces']}</td><td>{v['accuracy']:.3f}</td></tr>"
                                for k, v in per.items())
                extra.append(f"<h3>{_e(run['label'])}: per {tag}</h3><table><tr><th>{tag}</th><th>traces</th>"
                             f"<th>trace accuracy</th></tr>{cells}</table>")
    imgs = "".join(f"<img class=plot src='{p}' alt='{p}'>" for p in plots)
    problems = "".join(f"<h3>{_e(run['label'])}</h3>" + "".join(_problem_html(r) for r in run["records"])
                       for run in runs)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>reasonlab report</title><style>{CSS}</style>"
            f"<script>{CHECK}</script></head><body><div id=broken class=banner></div><h1>reasonlab report</h1>"
            f"<table><tr><th>run</th><th>n</th><th>accuracy</th><th>95% CI</th><th>found</th><th>tokens/problem</th>"
            f"<th>latency s/problem</th><th>traces</th><th>stop reasons</th><th>prompt tokens from cache</th><th>failed</th></tr>{''.join(rows)}</table>"
            f"<h2>plots</h2>{imgs}{''.join(extra)}<h2>problems</h2>{problems}</body></html>")


def write_report(paths: list[str | Path], out: str | Path | None = None) -> Path:
    """Write report.html and its PNGs into ``out`` (default: the run directory, for one run)."""
    from reasonlab.errors import ConfigError

    if not paths:
        raise ConfigError("report: give at least one run directory")
    out = Path(out) if out is not None else (Path(paths[0]) if len(paths) == 1 else None)
    if out is None:
        raise ConfigError("report: several runs need --out DIR")
    out.mkdir(parents=True, exist_ok=True)
    runs = load_runs(list(paths))
    plots = draw(runs, out)
    page = out / "report.html"
    page.write_text(render(runs, plots), encoding="utf-8")
    return page
