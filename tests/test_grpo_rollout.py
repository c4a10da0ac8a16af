"""GRPO's rollouts sampled by llama.cpp with the policy's current LoRA (TRL's ``rollout_func``), on smollm2:
TRL trains on them, and they come from the policy being trained — llama.cpp's log-probs of the sampled
tokens match transformers' for the same adapter, and not the base's."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow


def toy_reward(completions, **_) -> list[float]:
    """The share of digits in the completion: anything that varies across a group."""
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return [sum(ch.isdigit() for ch in t) / max(1, len(t)) for t in texts]


def hf_logprobs(model, prompt: list[int], completion: list[int]) -> list[float]:
    import torch

    ids = torch.tensor([prompt + completion])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(prompt) - 1: -1].float()
    return torch.log_softmax(logits, -1).gather(-1, torch.tensor(completion)[:, None])[:, 0].tolist()


def test_llamacpp_rollouts_train_and_come_from_the_policy(smol_path, tmp_path) -> None:
    import torch

    from reasonlab.train import TrainConfig
    from reasonlab.train.methods import grpo
    from reasonlab.train.model import load_trainable
    from reasonlab.train.rewards import load_reward
    from reasonlab.train.run import grpo_dataset

    problems = tmp_path / "toy.jsonl"
    problems.write_text("".join(json.dumps({"question": f"Count to {n}.", "answer": str(n)}) + "\n"
                                for n in range(3, 7)))
    cfg = TrainConfig(method="grpo", model=str(smol_path), out=str(tmp_path / "grpo"), max_steps=2, batch_size=2,
                      learning_rate=1e-3, logging_steps=1, save_steps=10, lora={"r": 8, "alpha": 16, "dropout": 0.0},
                      grpo={"dataset": str(problems), "prompt": "plain", "num_generations": 2,
                            "max_completion_length": 16, "rewards": ["test_grpo_rollout:toy_reward"],
                            "rollout": "llamacpp"})
    model, tok = load_trainable(cfg.model)
    data = grpo_dataset(cfg)
    trainer = grpo(cfg, model, tok, data, cfg.out, rewards=[load_reward(r, None) for r in cfg.grpo.rewards])
    rollout = trainer.rollout_func
    trainer.train()
    assert trainer.state.global_step == 2 and rollout.calls >= 2 and rollout.tokens > 0
    # a LoRA that moves predictions, so agreement with it is evidence the rollout used it
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in trainer.model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn_like(p) * 0.05)
    trainer.state.global_step += 1  # the adapter is re-exported after a weight change
    out = rollout([data[0]["prompt"]] * 2, trainer)
    assert len(out["completion_ids"]) == 2 and all(len(c) > 0 for c in out["completion_ids"])
    policy = trainer.model.eval()
    diffs, base_diffs = [], []
    for p, c, lp in zip(out["prompt_ids"], out["completion_ids"], out["logprobs"]):
        assert len(lp) == len(c)
        ours = hf_logprobs(policy, p, c)
        with policy.disable_adapter():
            base = hf_logprobs(policy, p, c)
        diffs += [abs(a - b) for a, b in zip(lp, ours)]
        base_diffs += [abs(a - b) for a, b in zip(lp, base)]
    mean, base_mean = sum(diffs) / len(diffs), sum(base_diffs) / len(base_diffs)
    # stated tolerance: llama.cpp runs the Q4_1 file, transformers its dequantized values in fp32
    assert mean < 0.15 and base_mean > 2 * mean, (mean, base_mean)
