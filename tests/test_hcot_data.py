"""hCoT training data: the rule segmenter wraps without rewording, the model segmenter is held to the same check,
GSM8K rationales are cleaned, rows load in TRL's SFT form."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from reasonlab.datagen.hcot import (HcotDataConfig, check, gsm8k_rationale, hcot_rows, items_from_dataset, result_of,
                                    segment_rules)
from reasonlab.engines import Engine, Generation, SamplingParams
from reasonlab.strategies.hcot_format import unwrap, validate


@pytest.mark.parametrize("step, result", [
    ("He pays 3 * 12 = 36 dollars for the pens.", "3 * 12 = 36"),
    ("So the total is $1,200 = 1200 after all.", "1,200 = 1200"),
    ("\\[ \\text{Total} = \\frac{48}{2} = 24 \\]", "24"),
    ("We first find the rate. It doubles every day", "It doubles every day"),
])
def test_result_of_table(step, result) -> None:
    assert result_of(step) == result


def test_rules_segment_every_gsm8k_rationale_without_rewording() -> None:
    items = list(items_from_dataset("gsm8k-train", 200))
    cfg = HcotDataConfig()
    for it in items:
        seg = segment_rules(it["text"], cfg, "line")
        assert " ".join(unwrap(seg).split()) == " ".join(it["text"].split())
        assert validate(seg).well_formed
    rows, stats = hcot_rows(items, cfg)
    assert stats["rows"] + sum(stats["dropped"].values()) == 200 and set(stats["dropped"]) <= {"no thoughts"}
    assert rows[0]["completion"][0]["content"].endswith("\\boxed{72}.") and "<<" not in json.dumps(rows)


def test_gsm8k_rationale_cleanup() -> None:
    assert gsm8k_rationale("A 2*3 = <<2*3=6>>6.\n#### 6") == "A 2*3 = 6.\nThe answer is \\boxed{6}."


class ScriptedSegmenterEngine(Engine):
    """A scripted engine (not a model): returns ``reply`` for every segmentation request."""

    backend = "scripted"

    def __init__(self, replies: list[str]) -> None:
        super().__init__("scripted-segmenter")
        self.replies = replies

    def render_chat(self, messages) -> str:
        return messages[-1]["content"]

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def generate(self, prompts, params: SamplingParams, cancel=None) -> list[Generation]:
        return [Generation(text=self.replies[i], index=i) for i in range(len(prompts))]


def test_model_segmenter_is_held_to_the_same_check() -> None:
    text = "We add 2 and 3 to get 5 apples in the basket.\nThe answer is \\boxed{5}."
    good = "[THOUGHT] We add 2 and 3 to get 5 apples in the basket. [SOLUTION] 5 [RETURN]\nThe answer is \\boxed{5}."
    reworded = "[THOUGHT] Adding 2 and 3 gives 5. [SOLUTION] 5 [RETURN]\nThe answer is \\boxed{5}."
    broken = "[THOUGHT] We add 2 and 3 to get 5 apples in the basket. [SOLUTION] 5\nThe answer is \\boxed{5}."
    items = [{"id": str(i), "question": "q", "text": text, "source": "test"} for i in range(3)]
    rows, stats = hcot_rows(items, HcotDataConfig(segmenter="model"), ScriptedSegmenterEngine([good, reworded, broken]))
    assert [r["id"] for r in rows] == ["0"]
    assert stats["dropped"] == {"text changed": 1, "malformed: 1 thought(s) never returned": 1}
    assert check(good, text, HcotDataConfig()) is None


def test_cli_and_rows_load_in_sft(tmp_path, tiny_qwen) -> None:
    from reasonlab.train.data import load_rows

    out = tmp_path / "h.jsonl"
    run = subprocess.run([sys.executable, "-m", "reasonlab.cli", "datagen", "hcot", "-d", "gsm8k-train", "-n", "20",
                          "-o", str(out)], capture_output=True, text=True)
    assert run.returncode == 0 and "hcot rows from 20 chains" in run.stdout, run.stderr
    assert len(load_rows(out, "sft")) == json.loads((tmp_path / "h.jsonl.stats.json").read_text())["rows"]
    bad = subprocess.run([sys.executable, "-m", "reasonlab.cli", "datagen", "hcot", "-d", "math500", "-o",
                          str(tmp_path / "x.jsonl")], capture_output=True, text=True)
    assert bad.returncode == 2 and "needs rationales" in bad.stderr
