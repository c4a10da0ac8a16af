"""Training data from runs: verified traces become SFT, DPO and KTO datasets in TRL's standard formats.

    reasonlab datagen sft runs/star-sample --out data/star-sft.jsonl     # STaR: verified-correct traces
    reasonlab datagen dpo runs/star-sample --out data/star-dpo.jsonl     # a right and a wrong trace of one problem
    reasonlab datagen kto runs/star-sample --out data/star-kto.jsonl     # desirable / undesirable, labels kept
    reasonlab datagen verifier runs/star-sample --out data/verifier.jsonl  # "Is this correct?" -> Yes / No

``verifier`` rows teach a generative outcome verifier (``strategies.scoring``): the prompt is the verifier's
question about one trace (``verifier_messages``: the problem, the trace as written, "Is the proposed solution
correct? Answer Yes or No."), the completion "Yes" or "No" from the run's verdict; conversational, so the
trainer renders them with the model's chat template as the scorer's engine does. Only traces with an answer
(the ones a vote scores) and only problems with both a right and a wrong one, balanced: as many right as wrong
per problem (at most ``per_problem`` each), so the verifier learns which of a problem's answers is right, not
which problems are easy.

``reward`` rows train the scalar-head kind (``reasonlab train reward``, TRL's RewardTrainer): a right and a wrong
answered trace of one problem as ``chosen``/``rejected`` after the bare question (``prompt``: one user message),
conversational — the input the classifier scorer reads (``scoring.classifier_messages``). Pairs of unused traces
first, at most ``max_pairs`` per problem.

A row's prompt is the one the run fed the model, exactly as rendered (chat template applied), so training sees
what evaluation saw; its completion is the trace's text. Rows are TRL's standard forms: ``prompt``/``completion``
(SFT), ``prompt``/``chosen``/``rejected`` (DPO), ``prompt``/``completion``/``label`` (KTO); ``form:
conversational`` writes message lists instead. Where the run kept token ids, SFT rows also carry ``input_ids``
and ``completion_mask`` — TRL then trains on exactly those ids, and text the model did not write (a "Wait,",
an answer cue, a sandbox's output block) is masked out of the loss. DPO and KTO score whole completions (TRL
has no per-token mask there): injected text counts on both sides of a pair alike.

Every row keeps where it came from (run, problem id, sample) and its labels: ``correct`` (the verifier's
verdict) and the format checks — ``boxed`` (a \\boxed{} answer), ``finished`` (ended by itself, not cut or
truncated), ``no_invented_output`` (no ```output block the sandbox did not write) — with ``well_formed`` all
three. Rows whose problem overlaps a bundled test set are dropped (``contamination``) unless allowed.

    >>> cfg = DatagenConfig(kind="dpo", max_pairs=2)
    >>> cfg.kind, cfg.max_pairs, cfg.allow_contaminated
    ('dpo', 2, False)
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Literal

from pydantic import BaseModel, ConfigDict, Field

from reasonlab.datagen.contamination import Guard
from reasonlab.errors import DataError
from reasonlab.runs import ProblemRecord, Run, TraceRecord, read_run

Kind = Literal["sft", "dpo", "kto", "verifier", "reward"]


class DatagenConfig(BaseModel):
    """Which traces become which rows."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Kind = Field("sft", description="sft: correct traces; dpo: correct vs wrong pairs; kto: labelled traces; "
                                          "verifier: Yes/No rows for an outcome verifier; reward: right/wrong "
                                          "pairs for a scalar-head one")
    form: Literal["text", "conversational"] = Field(
        "text", description="text: the rendered prompt as a string; conversational: message lists (the run's "
                            "prompt template rebuilt; traces written under another prompt variant are skipped)")
    per_problem: int | None = Field(None, ge=1, description="SFT: correct traces kept per problem (None: 1, as STaR "
                                                            "keeps one rationale); KTO, verifier: per label (None: "
                                                            "all; verifier: as many right as wrong)")
    max_pairs: int = Field(4, ge=1, description="DPO, reward: most chosen/rejected pairs per problem")
    balance: bool = Field(False, description="KTO: drop rows of the larger class at random (seeded) until desirable "
                                             "and undesirable are equally many — TRL's other remedy for unbalanced "
                                             "labels besides class weights, and fewer rows to train on")
    max_completion_tokens: int | None = Field(None, ge=1, description="drop traces longer than this (tokens)")
    require_format: bool = Field(True, description="SFT rows and DPO's chosen side: well-formed traces only")
    token_ids: bool = Field(True, description="SFT: add input_ids + completion_mask where the run kept token ids")
    contamination_n: int = Field(10, ge=3, description="word n-gram size of the test-set overlap check")
    allow_contaminated: bool = Field(False, description="keep rows whose problem overlaps a bundled test set")
    seed: int = Field(0, description="which traces are picked when a cap applies")


def labels(trace: TraceRecord) -> dict[str, bool]:
    """The verdict and the format checks of one trace."""
    tool_calls = sum(1 for e in trace.events if e.get("type") == "tool")
    boxed = "\\boxed{" in trace.text
    finished = trace.finish_reason == "stop"
    honest = trace.text.count("```output") <= tool_calls
    return {"correct": bool(trace.correct), "boxed": boxed, "finished": finished, "no_invented_output": honest,
            "well_formed": boxed and finished and honest}


class _Source:
    """One problem's usable traces, with the prompt each continued."""

    def __init__(self, run: Run, rec: ProblemRecord, messages: list[dict[str, str]] | None) -> None:
        self.run, self.rec, self.messages = run, rec, messages

    def traces(self, cfg: DatagenConfig, dropped: Counter[str]) -> list[TraceRecord]:
        out, seen = [], set()
        for t in self.rec.traces:
            if t.finish_reason in ("error", "cancelled") or t.dropped == "abandoned":
                dropped["unfinished trace"] += 1
            elif cfg.max_completion_tokens is not None and t.completion_tokens > cfg.max_completion_tokens:
                dropped["over max_completion_tokens"] += 1
            elif t.text in seen:
                dropped["duplicate text"] += 1
            elif cfg.kind != "verifier" and self.prompt(t, cfg) is None:  # the verifier asks its own question
                dropped["no prompt in this form"] += 1
            else:
                seen.add(t.text)
                out.append(t)
        return out

    def prompt(self, trace: TraceRecord, cfg: DatagenConfig) -> Any:
        if cfg.form == "conversational":
            own = trace.prompt is None or trace.prompt == self.rec.prompt  # not another prompt variant
            return self.messages if own else None
        return self.rec.trace_prompt(trace)

    def completion(self, trace: TraceRecord, cfg: DatagenConfig) -> Any:
        return [{"role": "assistant", "content": trace.text}] if cfg.form == "conversational" else trace.text

    def origin(self, trace: TraceRecord) -> dict[str, Any]:
        return {"run": str(self.run.path), "id": self.rec.id, "sample": trace.sample}


def _messages(run: Run, rec: ProblemRecord) -> list[dict[str, str]] | None:
    """The conversation the run's prompt template makes of this problem (None for a raw completion prompt)."""
    if rec.messages is not None:
        return rec.messages
    from reasonlab.strategies.prompts import get_template

    prompt = (run.config.get("config") or {}).get("prompt") or {}
    template = get_template(prompt.get("template") or "boxed", prompt.get("system"))
    if not template.chat:
        return None
    user = template.user.replace("{question}", rec.question)
    return ([{"role": "system", "content": template.system}] if template.system else []) + [
        {"role": "user", "content": user}]


def _ids_row(src: _Source, trace: TraceRecord) -> dict[str, Any] | None:
    """input_ids and completion_mask from the ids the run kept: 1 on what the model sampled, 0 on the prompt and
    on injected spans. None when the run kept no ids for this trace."""
    prompt_ids = src.rec.trace_prompt_ids(trace)
    if prompt_ids is None or trace.token_ids is None:
        return None
    mask = [1] * len(trace.token_ids)
    for start, end in trace.injected:
        mask[start:end] = [0] * (end - start)
    return {"input_ids": list(prompt_ids) + list(trace.token_ids), "completion_mask": [0] * len(prompt_ids) + mask,
            "eos": trace.finish_reason == "stop"}  # the trace ended by end-of-sequence: the trainer appends it


def build_rows(runs: Iterable[Run], cfg: DatagenConfig, guard: Guard | None = None) -> tuple[list[dict], dict]:
    """(rows, stats): the dataset ``cfg`` asks for from ``runs``, and what was kept and dropped, and why."""
    rng = random.Random(cfg.seed)
    dropped: Counter[str] = Counter()
    contaminated: Counter[str] = Counter()
    rows: list[dict[str, Any]] = []
    problems = 0
    if guard is None and not cfg.allow_contaminated:
        guard = Guard(cfg.contamination_n)
    for run in runs:
        for rec in run.records:
            problems += 1
            hit = guard.hit(rec.question) if guard is not None else None
            if hit is not None:
                contaminated[hit] += 1
                if not cfg.allow_contaminated:
                    continue
            src = _Source(run, rec, _messages(run, rec) if cfg.form == "conversational" else None)
            traces = src.traces(cfg, dropped)
            rows += _ROWS[cfg.kind](src, traces, cfg, rng, dropped)
    if cfg.kind == "kto" and cfg.balance:
        rows = _balanced(rows, rng, dropped)
    stats = {"kind": cfg.kind, "problems": problems, "rows": len(rows), "dropped": dict(dropped),
             "contaminated_problems": dict(contaminated), "contamination_kept": cfg.allow_contaminated}
    return rows, stats


def _sft(src: _Source, traces: list[TraceRecord], cfg: DatagenConfig, rng: random.Random,
         dropped: Counter[str]) -> list[dict[str, Any]]:
    good = [t for t in traces if t.correct and (labels(t)["well_formed"] or not cfg.require_format)]
    dropped["wrong"] += sum(1 for t in traces if not t.correct)
    dropped["correct but malformed"] += sum(1 for t in traces if t.correct) - len(good)
    rng.shuffle(good)
    kept = good[: cfg.per_problem or 1]
    dropped["over per_problem"] += len(good) - len(kept)
    out = []
    for t in sorted(kept, key=lambda t: t.sample):
        row = {"prompt": src.prompt(t, cfg), "completion": src.completion(t, cfg), **src.origin(t), **labels(t)}
        ids = _ids_row(src, t) if cfg.token_ids and cfg.form == "text" else None
        out.append({**row, **(ids or {})})
    return out


def _dpo(src: _Source, traces: list[TraceRecord], cfg: DatagenConfig, rng: random.Random,
         dropped: Counter[str]) -> list[dict[str, Any]]:
    chosen = [t for t in traces if t.correct and (labels(t)["well_formed"] or not cfg.require_format)]
    rejected = [t for t in traces if not t.correct]
    if not chosen or not rejected:
        dropped["problems without a right and a wrong trace"] += 1
        return []
    pairs = [(c, r) for c in chosen for r in rejected]
    rng.shuffle(pairs)
    # pairs of traces not used yet come first (pairs sharing a trace teach much the same contrast)
    fresh, used = [], set()
    for i, (c, r) in enumerate(pairs):
        if id(c) not in used and id(r) not in used:
            fresh.append(i)
            used |= {id(c), id(r)}
    first = set(fresh)
    pairs = [pairs[i] for i in fresh] + [p for i, p in enumerate(pairs) if i not in first]
    out = []
    for c, r in pairs[: cfg.max_pairs]:
        out.append({"prompt": src.prompt(c, cfg), "chosen": src.completion(c, cfg), "rejected": src.completion(r, cfg),
                    "run": str(src.run.path), "id": src.rec.id, "chosen_sample": c.sample, "rejected_sample": r.sample})
    dropped["pairs over max_pairs"] += max(0, len(pairs) - cfg.max_pairs)
    return out


def _kto(src: _Source, traces: list[TraceRecord], cfg: DatagenConfig, rng: random.Random,
         dropped: Counter[str]) -> list[dict[str, Any]]:
    out = []
    for want in (True, False):  # desirable: correct and well formed; undesirable: the rest
        group = [t for t in traces if (labels(t)["correct"] and labels(t)["well_formed"]) == want]
        rng.shuffle(group)
        kept = group[: cfg.per_problem] if cfg.per_problem else group
        dropped["over per_problem"] += len(group) - len(kept)
        out += [{"prompt": src.prompt(t, cfg), "completion": src.completion(t, cfg), "label": want, **src.origin(t),
                 **labels(t)} for t in sorted(kept, key=lambda t: t.sample)]
    return out


def _balanced(rows: list[dict[str, Any]], rng: random.Random, dropped: Counter[str]) -> list[dict[str, Any]]:
    """As many desirable as undesirable rows: a seeded sample of the larger class, the rows' order kept."""
    by = {want: [i for i, r in enumerate(rows) if r["label"] == want] for want in (True, False)}
    n = min(len(v) for v in by.values())
    keep = set(by[True][:n] if len(by[True]) == n else rng.sample(by[True], n))
    keep |= set(by[False][:n] if len(by[False]) == n else rng.sample(by[False], n))
    dropped["over class balance"] += len(rows) - len(keep)
    return [r for i, r in enumerate(rows) if i in keep]


def _right_wrong(traces: list[TraceRecord], rng: random.Random,
                 dropped: Counter[str]) -> tuple[list[TraceRecord], list[TraceRecord]]:
    """A problem's answered traces, right and wrong, each shuffled; ([], []) unless it has both (a verifier
    learns which of a problem's answers is right, so a one-sided problem teaches it nothing)."""
    answered = [t for t in traces if t.answer is not None]
    dropped["no answer"] += len(traces) - len(answered)
    right = [t for t in answered if t.correct]
    wrong = [t for t in answered if not t.correct]
    if not right or not wrong:
        dropped["problems without a right and a wrong trace"] += 1
        return [], []
    rng.shuffle(right)
    rng.shuffle(wrong)
    return right, wrong


def _verifier(src: _Source, traces: list[TraceRecord], cfg: DatagenConfig, rng: random.Random,
              dropped: Counter[str]) -> list[dict[str, Any]]:
    from reasonlab.strategies.scoring import verifier_messages

    right, wrong = _right_wrong(traces, rng, dropped)
    n = min(len(right), len(wrong), cfg.per_problem or len(right))  # balanced within the problem
    dropped["over balance or per_problem"] += len(right) + len(wrong) - 2 * n
    return [{"prompt": verifier_messages(src.rec.question, t.text),
             "completion": [{"role": "assistant", "content": "Yes" if t.correct else "No"}],
             "label": bool(t.correct), **src.origin(t), **labels(t)}
            for t in sorted(right[:n] + wrong[:n], key=lambda t: t.sample)]


def _reward(src: _Source, traces: list[TraceRecord], cfg: DatagenConfig, rng: random.Random,
            dropped: Counter[str]) -> list[dict[str, Any]]:
    from reasonlab.strategies.scoring import classifier_messages

    right, wrong = _right_wrong(traces, rng, dropped)
    pairs = list(zip(right, wrong))  # disjoint pairs first, then the rest of the cross product
    pairs += [(c, r) for c in right for r in wrong if (c, r) not in pairs]
    dropped["pairs over max_pairs"] += max(0, len(pairs) - cfg.max_pairs)
    out = []
    prompt = classifier_messages(src.rec.question, "")[:1]
    for c, r in pairs[: cfg.max_pairs]:
        out.append({"prompt": prompt, "chosen": classifier_messages(src.rec.question, c.text)[1:],
                    "rejected": classifier_messages(src.rec.question, r.text)[1:], "run": str(src.run.path),
                    "id": src.rec.id, "chosen_sample": c.sample, "rejected_sample": r.sample})
    return out


_ROWS = {"sft": _sft, "dpo": _dpo, "kto": _kto, "verifier": _verifier, "reward": _reward}


def datagen(runs: list[str | Path], out: str | Path, cfg: DatagenConfig | None = None) -> dict[str, Any]:
    """Write the dataset ``cfg`` asks for from ``runs`` to ``out`` (JSON lines) and its stats beside it
    (``out`` + ``.stats.json``); returns the stats. A dataset left empty by the filters is an error that says
    what removed the rows."""
    cfg = cfg or DatagenConfig()
    rows, stats = build_rows((read_run(p) for p in runs), cfg)
    if not rows:
        reasons = ", ".join(f"{k}: {v}" for k, v in {**stats["dropped"], **{
            f"overlapping {k} (test)": v for k, v in stats["contaminated_problems"].items()}}.items() if v)
        raise DataError(f"no {cfg.kind} rows from {', '.join(map(str, runs))} ({stats['problems']} problems; "
                        f"{reasons or 'no traces'})" + ("; --allow-contaminated keeps test overlaps"
                                                        if stats["contaminated_problems"] else ""))
    if cfg.kind == "kto" and len({r["label"] for r in rows}) < 2:
        raise DataError(f"KTO needs desirable and undesirable rows; {out} would hold only "
                        f"{'desirable' if rows[0]['label'] else 'undesirable'} ones")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(out)  # a finished file or none: never half a dataset
    stats = {**stats, "config": cfg.model_dump(), "runs": [str(p) for p in runs]}
    out.with_name(out.name + ".stats.json").write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    return stats
