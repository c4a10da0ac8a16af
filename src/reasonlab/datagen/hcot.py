"""Hierarchical chain-of-thought training data: existing chains of thought, segmented into the ``[THOUGHT] ...
[SOLUTION] ... [RETURN]`` format (``strategies.hcot_format``) without rewording them.

    reasonlab datagen hcot runs/star/sample --out data/hcot-runs.jsonl                # own correct traces
    reasonlab datagen hcot -d gsm8k-train -n 2000 --out data/hcot-gsm8k.jsonl          # GSM8K train rationales
    reasonlab datagen hcot -d gsm8k-train -n 200 --segmenter model -m qwen2.5-coder-1.5b --out data/hcot-m.jsonl

Two segmenters:

- ``rules``: each paragraph of the chain (each line, for GSM8K's one-step-per-line rationales) becomes a thought
  whose body is the paragraph as written and whose result is its final equation (``48/2 = 24``), or its last sentence
  when it has none; the paragraph giving the final answer stays outside, as the conclusion. Paragraphs shorter than
  ``min_chars`` are left outside too (nothing to forget).
- ``model``: any engine is asked to insert the markers around spans of the text, adding only the short results; the
  notebook asked a large model for exactly this.

Both are checked the same way: the segmented text must be well formed (``validate``) and, with its markers and results
removed (``unwrap``), equal the original chain up to whitespace — the model wrapped, it did not rewrite. What fails is
counted by reason and dropped. GSM8K rationales lose their calculator annotations (``<<48/2=24>>``) and end with
"The answer is \\boxed{72}." in place of "#### 72".

Rows are conversational prompt/completion pairs (the boxed prompt as the user turn), which TRL's SFT renders with
the model's chat template, with ``well_formed`` statistics beside them in ``.stats.json``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Literal

from pydantic import BaseModel, ConfigDict, Field

from reasonlab.engines import Engine, SamplingParams
from reasonlab.errors import DataError
from reasonlab.strategies.hcot_format import RETURN, SOLUTION, THOUGHT, unwrap, validate
from reasonlab.strategies.prompts import BOXED

_CALC = re.compile(r"<<[^>]*>>")
_FINAL = re.compile(r"\\boxed\{|^####", re.MULTILINE)
_VALUE = re.compile(r"\s*\$?\s*(-?\d[\d,]*(?:\.\d+)?)")
_EXPR_CHARS = set("0123456789.+-*/×÷()$,% ^x")
SEGMENT_ASK = ("Below is a solution to a math problem. Rewrite it with markers that split it into sub-thoughts: put "
               f"{THOUGHT} before a step, and after the step write {SOLUTION}, then a very short result of that step "
               f"(a number or an equation), then {RETURN}. Keep every word of the solution exactly as it is, in the "
               "same order: only insert markers and the short results. Leave the final answer sentence outside "
               "the markers.\n\nSolution:\n{text}")


class HcotDataConfig(BaseModel):
    """How chains of thought are segmented."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    segmenter: Literal["rules", "model"] = Field("rules", description="rules: paragraph = thought, final equation = "
                                                                      "result; model: an engine inserts the markers")
    unit: Literal["auto", "paragraph", "line"] = Field("auto", description="what one thought is (auto: lines for "
                                                                          "GSM8K rationales, paragraphs otherwise)")
    min_chars: int = Field(40, ge=1, description="shorter steps stay outside any thought")
    max_result_chars: int = Field(80, ge=8, description="a result longer than this is cut to its end")
    max_depth: int = Field(8, ge=1)


def gsm8k_rationale(answer: str) -> str:
    """A GSM8K answer field as a chain of thought: calculator annotations dropped, '#### 72' as a boxed sentence.

    >>> gsm8k_rationale("She sold 48/2 = <<48/2=24>>24 clips.\\n#### 24")
    'She sold 48/2 = 24 clips.\\nThe answer is \\\\boxed{24}.'
    """
    body, _, final = answer.rpartition("####")
    return _CALC.sub("", body).rstrip() + f"\nThe answer is \\boxed{{{final.strip()}}}." if final else \
        _CALC.sub("", answer)


def result_of(step: str, limit: int = 80) -> str:
    """A step's short result: its final equation ``expr = value`` (the expression as far back as it is plain
    arithmetic), else its last sentence; cut to its last ``limit`` characters.

    >>> result_of("Natalia sold 48/2 = 24 clips in May.")
    '48/2 = 24'
    >>> result_of("First we add them. Then we halve the total")
    'Then we halve the total'
    """
    eq = step.rfind("=")
    value = _VALUE.match(step, eq + 1) if eq >= 0 else None
    if value is not None:
        i = eq
        while i > 0 and step[i - 1] in _EXPR_CHARS:
            i -= 1
        expr = step[i:eq].strip(" ,$")
        return (f"{expr} = " if expr and any(c.isdigit() for c in expr) else "") + value.group(1)
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", step.strip()) if s.strip()]
    last = sentences[-1] if sentences else step.strip()
    if len(last) <= limit:
        return last
    return last[-limit:].split(" ", 1)[-1].strip()  # its end, from a word boundary


def segment_rules(text: str, cfg: HcotDataConfig = HcotDataConfig(), unit: str = "paragraph") -> str:
    """Wrap each step of ``text`` as a thought with its result; the final-answer step and short steps stay outside.

    >>> segment_rules("Half of 48 is 48/2 = 24 clips in May, we find.\\nThe answer is \\\\boxed{72}.", unit="line")
    '[THOUGHT] Half of 48 is 48/2 = 24 clips in May, we find. [SOLUTION] 48/2 = 24 [RETURN]\\nThe answer is \\\\boxed{72}.'
    """
    sep = "\n" if unit == "line" else "\n\n"
    steps = text.split(sep)
    out = []
    for step in steps:
        body = step.strip()
        if not body or len(body) < cfg.min_chars or _FINAL.search(body):
            out.append(step)
        else:
            out.append(f"{THOUGHT} {body} {SOLUTION} {result_of(body, cfg.max_result_chars)} {RETURN}")
    return sep.join(out)


def same_words(a: str, b: str) -> bool:
    return " ".join(a.split()) == " ".join(b.split())


def check(segmented: str, original: str, cfg: HcotDataConfig) -> str | None:
    """None when ``segmented`` is well formed, has a thought, and wraps ``original`` without rewording; else why."""
    report = validate(segmented, cfg.max_depth)
    if not report.well_formed:
        return "malformed: " + report.problems[0].split(" at item")[0]
    if report.blocks == 0:
        return "no thoughts"
    if not same_words(unwrap(segmented), original):
        return "text changed"
    return None


def segment_model(engine: Engine, texts: list[str], max_tokens: int = 1024) -> list[str]:
    """Ask ``engine`` (greedy) to insert the markers into each text."""
    prompts = [engine.render_chat([{"role": "user", "content": SEGMENT_ASK.replace("{text}", t)}]) for t in texts]
    gens = engine.generate(prompts, SamplingParams(temperature=0.0, max_tokens=max_tokens))
    return [g.text.strip() for g in gens]


def hcot_rows(items: Iterable[dict[str, Any]], cfg: HcotDataConfig, engine: Engine | None = None
              ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows from items {id, question, text, source}; (rows, stats)."""
    items = list(items)
    if cfg.segmenter == "model":
        if engine is None:
            raise DataError("the model segmenter needs an engine (--model)")
        segmented = segment_model(engine, [it["text"] for it in items])
    else:
        segmented = [segment_rules(it["text"], cfg, _unit(it, cfg)) for it in items]
    why: Counter[str] = Counter()
    rows, ratios, blocks = [], [], []
    for it, seg in zip(items, segmented):
        bad = check(seg, it["text"], cfg)
        if bad is not None:
            why[bad] += 1
            continue
        report = validate(seg, cfg.max_depth)
        ratios.append(report.solution_ratio or 0.0)
        blocks.append(report.blocks)
        rows.append({"prompt": [{"role": "user", "content": f"{it['question']}\n{BOXED}"}],
                     "completion": [{"role": "assistant", "content": seg}], "id": it["id"], "source": it["source"],
                     "thoughts": report.blocks, "max_depth": report.max_depth,
                     "solution_ratio": round(report.solution_ratio or 0.0, 4)})
    stats = {"items": len(items), "rows": len(rows), "dropped": dict(why.most_common()),
             "mean_thoughts": round(sum(blocks) / len(blocks), 2) if blocks else 0.0,
             "mean_solution_ratio": round(sum(ratios) / len(ratios), 4) if ratios else None,
             "config": cfg.model_dump()}
    return rows, stats


def _unit(item: dict[str, Any], cfg: HcotDataConfig) -> str:
    if cfg.unit != "auto":
        return cfg.unit
    return "line" if item["source"].startswith("gsm8k") and "\n\n" not in item["text"] else "paragraph"


def items_from_runs(paths: list[str | Path]) -> Iterable[dict[str, Any]]:
    """Correct, finished traces of runs (one per problem, the first), as segmentation items."""
    from reasonlab.runs import read_run

    for path in paths:
        run = read_run(path)
        for rec in run.records:
            t = next((t for t in rec.traces if t.correct and t.finish_reason == "stop"), None)
            if t is not None:
                yield {"id": rec.id, "question": rec.question, "text": t.text.strip(), "source": f"run:{path}"}


def items_from_dataset(name: str, limit: int | None, offset: int = 0) -> Iterable[dict[str, Any]]:
    """GSM8K-style problems whose answer field holds a rationale ("... #### 72")."""
    from reasonlab.data import BUNDLED, DatasetConfig, bundled_path

    if name not in BUNDLED or "####" not in bundled_path(name).open(encoding="utf-8").readline():
        raise DataError(f"dataset {name}: hcot data needs rationales with a '#### answer' line (gsm8k, gsm8k-train)")
    cfg = DatasetConfig(name=name, limit=limit, offset=offset)
    with bundled_path(name).open(encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    end = None if cfg.limit is None else cfg.offset + cfg.limit
    for i, row in enumerate(rows[cfg.offset:end], cfg.offset):
        yield {"id": f"{name}-{i}", "question": row["question"], "text": gsm8k_rationale(row["answer"]),
               "source": name}


def write_hcot(items: Iterable[dict[str, Any]], out: str | Path, cfg: HcotDataConfig | None = None,
               engine: Engine | None = None) -> dict[str, Any]:
    """Segment ``items`` and write the rows (JSON lines) and ``.stats.json``; returns the stats."""
    cfg = cfg or HcotDataConfig()
    rows, stats = hcot_rows(items, cfg, engine)
    if not rows:
        raise DataError(f"no hcot rows from {stats['items']} chains: "
                        + (", ".join(f"{k} {v}" for k, v in stats["dropped"].items()) or "nothing to segment"))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(out)
    out.with_name(out.name + ".stats.json").write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    return stats
