"""Training through TRL on a tiny Qwen2 made here (random weights, a word-level tokenizer): each method runs,
learns what it should, resumes after a kill, and refuses bad input with one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import WORDS
from reasonlab.errors import ConfigError, DataError
from reasonlab.train import TrainConfig, train
from reasonlab.train.data import load_rows

pytestmark = pytest.mark.slow

def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


QA = [("what is one plus one", "two"), ("what is two plus two", "four"), ("what is three plus three", "six"),
      ("what is four plus four", "eight")]


def fast(tmp: Path, method: str, data: Path | None, model: Path, **kw) -> TrainConfig:
    base = dict(method=method, model=str(model), data=str(data) if data else None, out=str(tmp / method),
                learning_rate=5e-3, batch_size=4, max_steps=20, logging_steps=2, save_steps=10, max_length=64,
                lora={"r": 8, "alpha": 16, "dropout": 0.0})
    return TrainConfig(**{**base, **kw})


def test_sft_loss_falls_on_a_memorisable_set(tmp_path, tiny_qwen) -> None:
    data = write(tmp_path / "sft.jsonl", [{"prompt": q + " ?", "completion": " the answer is " + a} for q, a in QA] * 2)
    summary = train(fast(tmp_path, "sft", data, tiny_qwen, max_steps=30, learning_rate=3e-2))
    assert summary["steps"] == 30 and summary["last_loss"] < 0.5 * summary["first_loss"]
    assert (tmp_path / "sft" / "adapter" / "adapter_config.json").exists()
    assert (tmp_path / "sft" / "curves.png").stat().st_size > 1000


@pytest.mark.parametrize("precision, dtype", [("bf16", "bfloat16"), ("fp32", "float32")])
def test_precision_sets_the_matmul_dtype_and_keeps_the_weights_fp32(tmp_path, tiny_qwen, monkeypatch, precision,
                                                                    dtype) -> None:
    """bf16 is autocast: the layers compute in bf16 while the trained LoRA weights stay (and are saved) fp32."""
    import torch
    from safetensors.torch import load_file

    import reasonlab.train.run as run

    seen: set[str] = set()
    load = run.load_trainable

    def watched(*args, **kwargs):
        model, tok = load(*args, **kwargs)
        first = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
        first.register_forward_hook(lambda mod, inp, out: seen.add(str(out.dtype).removeprefix("torch.")))
        return model, tok

    monkeypatch.setattr(run, "load_trainable", watched)
    data = write(tmp_path / "sft.jsonl", [{"prompt": q + " ?", "completion": " the answer is " + a} for q, a in QA])
    summary = train(fast(tmp_path, "sft", data, tiny_qwen, max_steps=2, precision=precision))
    assert seen == {dtype} and summary["precision"] == precision
    saved = load_file(tmp_path / "sft" / "adapter" / "adapter_model.safetensors")
    assert {str(t.dtype) for t in saved.values()} == {"torch.float32"}


def test_sft_trains_only_where_the_mask_says(tmp_path, tiny_qwen) -> None:
    """Rows with recorded ids: the loss sees only completion_mask == 1 positions (injected text masked), and the
    end-of-sequence token is appended where the trace ended with one."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_qwen)
    prompt = tok("what is two plus two ?")["input_ids"]
    sampled, injected = tok("so the answer")["input_ids"], tok("four")["input_ids"]
    rows = [{"input_ids": prompt + sampled + injected, "eos": True,
             "completion_mask": [0] * len(prompt) + [1] * len(sampled) + [0] * len(injected)}]
    ds = load_rows(write(tmp_path / "ids.jsonl", rows * 4), "sft", tok)
    assert ds[0]["input_ids"][-1] == tok.eos_token_id and ds[0]["completion_mask"][-1] == 1
    summary = train(fast(tmp_path, "sft", tmp_path / "ids.jsonl", tiny_qwen, max_steps=2))
    assert summary["steps"] == 2
    from reasonlab.train.methods import sft
    from reasonlab.train.model import load_trainable

    model, _ = load_trainable(str(tiny_qwen))
    trainer = sft(fast(tmp_path, "sft", tmp_path / "ids.jsonl", tiny_qwen), model, tok, ds, str(tmp_path / "x"))
    labels = trainer.train_dataset[0]["labels"]
    n_p, n_s = len(prompt), len(sampled)
    assert all(x == -100 for x in labels[:n_p]) and labels[n_p: n_p + n_s] == sampled
    assert all(x == -100 for x in labels[n_p + n_s: -1]) and labels[-1] == tok.eos_token_id


def test_dpo_raises_the_chosen_over_rejected_margin(tmp_path, tiny_qwen) -> None:
    rows = [{"prompt": q + " ?", "chosen": " the answer is " + a, "rejected": " no bad"} for q, a in QA] * 2
    summary = train(fast(tmp_path, "dpo", write(tmp_path / "dpo.jsonl", rows), tiny_qwen))
    history = [json.loads(x) for x in (tmp_path / "dpo" / "log_history.jsonl").read_text().splitlines()]
    margins = [h["rewards/margins"] for h in history if "rewards/margins" in h]
    assert summary["steps"] == 20 and margins[-1] > margins[0] and margins[-1] > 0


def test_kto_runs(tmp_path, tiny_qwen) -> None:
    rows = [{"prompt": q + " ?", "completion": " the answer is " + a, "label": True} for q, a in QA]
    rows += [{"prompt": q + " ?", "completion": " no bad", "label": False} for q, _ in QA]
    summary = train(fast(tmp_path, "kto", write(tmp_path / "kto.jsonl", rows), tiny_qwen, max_steps=4))
    assert summary["steps"] == 4 and summary["last_loss"] is not None


@pytest.mark.parametrize("n_d, n_u, dw, uw, balance, want_dw, warns", [
    (131, 281, 1.0, 1.0, False, 1.0, True),     # the STaR loop's KTO data: ratio 0.47, outside [1, 4/3]
    (131, 281, 1.0, 1.0, True, 2.145, False),   # balanced: 2.145 * 131 / 281 = 1.0
    (100, 100, 1.0, 1.0, True, 1.0, False),     # already balanced: untouched
    (300, 100, 1.0, 1.0, True, 1.0, True),      # desirable the commoner class: balance leaves it, the ratio warns
    (100, 120, 1.2, 1.0, False, 1.2, False),    # weights set by hand inside the range
])
def test_kto_class_weights(n_d, n_u, dw, uw, balance, want_dw, warns) -> None:
    from reasonlab.train.methods import kto_weights

    got_dw, got_uw, warning = kto_weights(n_d, n_u, dw, uw, balance)
    assert got_dw == want_dw and got_uw == uw and (warning is not None) == warns


def test_datagen_output_loads_in_each_trainer(tmp_path, tiny_qwen) -> None:
    """The files `reasonlab datagen` writes go into TRL as they are (a run made here, read through runs/)."""
    from reasonlab.datagen import DatagenConfig, datagen
    from reasonlab.runs import ProblemRecord, RunStore, TraceRecord

    store = RunStore(tmp_path / "run")
    store.open({"config": {"prompt": {"template": "plain"}}}, {})
    for i, (q, a) in enumerate(QA):
        store.append(ProblemRecord(id=str(i), question=q, prompt=q + " ?", traces=[
            TraceRecord(text=f"so the answer is \\boxed{{{i}}}", correct=True, sample=0),
            TraceRecord(text="no \\boxed{9}", correct=False, sample=1)]))
    for kind in ("sft", "dpo", "kto"):
        datagen([tmp_path / "run"], tmp_path / f"{kind}.jsonl", DatagenConfig(kind=kind, allow_contaminated=True))
        summary = train(fast(tmp_path, kind, tmp_path / f"{kind}.jsonl", tiny_qwen, max_steps=2))
        assert summary["steps"] == 2, kind


def test_a_killed_run_resumes_from_its_last_checkpoint(tmp_path, tiny_qwen) -> None:
    data = write(tmp_path / "sft.jsonl", [{"prompt": q + " ?", "completion": " the answer is " + a} for q, a in QA])
    cfg = fast(tmp_path, "sft", data, tiny_qwen, max_steps=12, save_steps=4)
    script = ("import sys, json; from reasonlab.train import TrainConfig, train\n"
              "from transformers import TrainerCallback\n"
              "class Die(TrainerCallback):\n"
              "    def on_save(self, args, state, control, **kw):\n"
              "        if state.global_step >= 8: import os; os._exit(9)\n"
              "import reasonlab.train.methods as m\n"
              "orig = m.TRAINERS['sft']\n"
              "def killed(*a, **k):\n"
              "    t = orig(*a, **k); t.add_callback(Die()); return t\n"
              "m.TRAINERS['sft'] = killed\n"
              f"train(TrainConfig.model_validate_json({cfg.model_dump_json()!r}))\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr[-2000:]
    assert (tmp_path / "sft" / "checkpoint-8").exists() and not (tmp_path / "sft" / "summary.json").exists()
    summary = train(cfg)
    assert summary["resumed"] and summary["steps"] == 12
    assert train(cfg) == summary  # finished: running it again changes nothing (its summary is kept)
    assert train(cfg.model_copy(update={"max_steps": 14}))["steps"] == 14  # asked for more: it goes on
    with pytest.raises(ConfigError, match="another config .*learning_rate"):
        train(cfg.model_copy(update={"learning_rate": 1e-3}))


@pytest.mark.parametrize("rows, method, match", [
    ([{"question": "q", "answer": "a"}], "sft", "sft rows need the columns"),
    ([{"prompt": "q", "chosen": "a"}], "dpo", "dpo rows need the columns prompt_ids \\+ chosen_ids \\+ rejected_ids \\| prompt \\+ chosen \\+ rejected"),
    ([{"prompt": "q", "completion": "a", "label": True}] * 2, "kto", "desirable and undesirable"),
    ([{"input_ids": [10 ** 6, 1], "completion_mask": [0, 1], "prompt": "x"}], "sft", "another vocabulary"),
])
def test_bad_datasets_get_one_line(tmp_path, tiny_qwen, rows, method, match) -> None:
    from transformers import AutoTokenizer

    with pytest.raises(DataError, match=match):
        load_rows(write(tmp_path / "d.jsonl", rows), method, AutoTokenizer.from_pretrained(tiny_qwen))


def test_bad_configs_and_rewards_get_one_line(tmp_path) -> None:
    from reasonlab.answers import Verifier
    from reasonlab.train.rewards import load_reward

    with pytest.raises(ValueError, match="needs a dataset file"):
        TrainConfig(method="dpo")
    with pytest.raises(ValueError, match="batch_size >= 2"):
        TrainConfig(method="kto", data="x.jsonl", batch_size=1)
    with pytest.raises(ConfigError, match="does not import"):
        load_reward("no.such.module:fn", Verifier())
    with pytest.raises(DataError, match="not found"):
        load_rows(tmp_path / "missing.jsonl", "sft")


def digit_reward(completions, **_) -> list[float]:
    """A toy verifiable reward for the GRPO test: the share of the completion's characters that are digits."""
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return [sum(ch.isdigit() for ch in t) / max(1, len(t)) for t in texts]


def test_grpo_raises_mean_reward_on_a_toy_task(tmp_path, tiny_qwen) -> None:
    problems = write(tmp_path / "toy.jsonl", [{"question": f"say a number {w}", "answer": "4"} for w in WORDS[:8]])
    cfg = fast(tmp_path, "grpo", None, tiny_qwen, max_steps=40, batch_size=2, learning_rate=5e-2,
               grpo={"dataset": str(problems), "prompt": "plain", "num_generations": 4, "max_completion_length": 8,
                     "temperature": 1.5, "rewards": ["test_train:digit_reward", "format"],
                     "reward_weights": [1.0, 0.0]})
    summary = train(cfg)
    history = [json.loads(x) for x in (tmp_path / "grpo" / "log_history.jsonl").read_text().splitlines()]
    rewards = [h["reward"] for h in history if "reward" in h]
    assert summary["steps"] == 40 and len(rewards) >= 6
    early, late = sum(rewards[:3]) / 3, sum(rewards[-3:]) / 3
    assert late > early + 0.1, rewards


def test_grpo_computes_a_step_in_micro_batches_of_whole_groups(tmp_path, tiny_qwen) -> None:
    """One optimizer step is one generation batch (batch_size x grad_accum prompts, num_generations each), its loss
    taken micro_batch completions at a time: 8 completions of 612 tokens in one pass took the default model past
    24 GiB."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from datasets import Dataset

    from reasonlab.train.methods import grpo

    grpo_opts = {"num_generations": 4, "micro_batch": 2}
    cfg = fast(tmp_path, "grpo", None, tiny_qwen, batch_size=2, grad_accum=2, grpo=grpo_opts)
    model, tok = AutoModelForCausalLM.from_pretrained(tiny_qwen), AutoTokenizer.from_pretrained(tiny_qwen)
    data = Dataset.from_list([{"prompt": f"say a number {w}"} for w in WORDS[:4]])
    args = grpo(cfg, model, tok, data, str(tmp_path / "g"), rewards=[digit_reward]).args
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (2, 8)
    assert args.generation_batch_size == 16 and args.steps_per_generation == 8  # 2 x 2 prompts x 4 rollouts
    with pytest.raises(ConfigError, match="micro_batch 3 does not divide the step's 16 rollouts"):
        grpo(fast(tmp_path, "grpo", None, tiny_qwen, batch_size=2, grad_accum=2,
                  grpo={**grpo_opts, "micro_batch": 3}), model, tok, data, str(tmp_path / "h"), rewards=[digit_reward])


@pytest.mark.parametrize("name", ["sft-star", "dpo", "kto", "grpo-gsm8k"])
def test_train_recipes_validate(name: str) -> None:
    from reasonlab.recipes import from_layers, read_yaml

    cfg = from_layers(TrainConfig, read_yaml(Path(__file__).parents[1] / "recipes" / "train" / f"{name}.yaml"))
    assert cfg.method in name


def test_the_train_command_parses_its_flags_and_trains(tmp_path, tiny_qwen) -> None:
    """`reasonlab train METHOD` with the shared flags (a generated command: its signature must be resolvable)."""
    from typer.testing import CliRunner

    from reasonlab.cli import app

    data = write(tmp_path / "sft.jsonl", [{"prompt": q + " ?", "completion": " the answer is " + a} for q, a in QA])
    res = CliRunner().invoke(app, ["train", "sft", "--model", str(tiny_qwen), "--data", str(data), "--out",
                                   str(tmp_path / "t"), "--max-steps", "2", "--batch-size", "2", "--max-length", "64",
                                   "--lr", "1e-3", "--precision", "fp32"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "sft: 2 steps" in res.output and (tmp_path / "t" / "adapter" / "adapter_config.json").exists()
    assert json.loads((tmp_path / "t" / "summary.json").read_text())["precision"] == "fp32"
    res = CliRunner().invoke(app, ["train", "sft", "--data", str(data), "--precision", "fp16"])
    assert isinstance(res.exception, ConfigError) and "precision" in str(res.exception)  # one line, no traceback
    res = CliRunner().invoke(app, ["train", "dpo", "--model", str(tiny_qwen), "--data", str(data), "--out",
                                   str(tmp_path / "d")])
    assert isinstance(res.exception, DataError) and "chosen" in str(res.exception)  # sft rows given to dpo
    assert not (tmp_path / "d").exists()  # refused before anything was written
