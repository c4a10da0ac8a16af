"""GRPO's rollouts sampled by llama.cpp with the policy's current LoRA, through TRL's ``rollout_func``.

Generation is GRPO's cost on a CPU: transformers' fp32 ``generate`` decodes several times slower than llama.cpp's
batched decoder on the quantized base (``benchmarks/grpo_rollout.py`` measures both on the same prompts). The
policy being trained is the dequantized base + a LoRA (``train.model``); llama.cpp holds the same base quantized
and applies the same LoRA at run time (``engines.lora``), so it samples from (nearly) the same distribution:
``benchmarks/lora_agreement.py`` puts top-1 agreement at 99.4 % for an adapter that moves 11 % of predictions.

Each time TRL asks for completions after the weights changed, the adapter is written as a GGUF LoRA (a few
MB, well under a second) and a fresh engine is opened on it: KV computed under one adapter never serves another.
TRL passes every prompt once per completion it wants (its sampler repeats each prompt ``num_generations`` times);
consecutive repeats are sampled as one prompt with ``n`` samples, so the prompt is evaluated once.

The log-probs returned are llama.cpp's, of the raw logits (before temperature); TRL uses rollout log-probs only
for its vLLM importance-sampling correction, which is off here, and recomputes what the loss needs itself.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from reasonlab.errors import ConfigError


class LlamaCppRollout:
    """TRL ``rollout_func``: ``(prompts, trainer) -> {"prompt_ids", "completion_ids", "logprobs"}``, one
    completion per prompt entry.

    Args:
        base_gguf: the GGUF the trained model was dequantized from.
        tokenizer: the trainer's tokenizer (renders conversations with the chat template, names EOS).
        max_tokens, temperature, top_p, top_k: GRPO's sampling settings.
        n_parallel: sequences decoded together (a step's rollouts: prompts x num_generations).
        seed: the first rollout's seed (each call advances it).
    """

    def __init__(self, base_gguf: Path, tokenizer: Any, max_tokens: int, temperature: float, top_p: float = 1.0,
                 top_k: int = -1, n_parallel: int = 16, seed: int = 0) -> None:
        self.base = Path(base_gguf)
        self.tok = tokenizer
        self.max_tokens, self.temperature, self.top_p, self.top_k = max_tokens, temperature, top_p, top_k
        self.n_parallel = n_parallel
        self.seed = seed
        self.calls = 0
        self.tokens = 0  # completion tokens sampled, all calls
        self.seconds = 0.0  # spent in llama.cpp (adapter export and engine start included)
        self._dir = tempfile.TemporaryDirectory(prefix="reasonlab-rollout-")
        self._adapter_step: int | None = None
        self._adapter: Path | None = None

    def adapter(self, trainer: Any) -> Path | None:
        """The policy's current LoRA as a GGUF, written again only after an optimizer step."""
        from reasonlab.engines.lora import adapter_to_gguf

        model = trainer.model
        if not hasattr(model, "peft_config"):
            raise ConfigError("grpo.rollout: llamacpp samples with the policy's LoRA: full fine-tuning needs "
                              "rollout: transformers")
        step = trainer.state.global_step
        if step != self._adapter_step:
            peft_dir = Path(self._dir.name) / "adapter"
            model.save_pretrained(str(peft_dir))
            self._adapter = adapter_to_gguf(peft_dir, self.base, Path(self._dir.name) / f"adapter-{step}.gguf")
            self._adapter_step = step
        return self._adapter

    def __call__(self, prompts: list[Any], trainer: Any) -> dict[str, list[Any]]:
        import time

        from reasonlab.engines import SamplingParams
        from reasonlab.engines.llamacpp import LlamaCppEngine

        t0 = time.perf_counter()
        groups: list[tuple[Any, int]] = []  # (prompt, repeats), consecutive repeats merged
        for p in prompts:
            if groups and groups[-1][0] == p:
                groups[-1] = (p, groups[-1][1] + 1)
            else:
                groups.append((p, 1))
        ids = [self._render(p) for p, _ in groups]
        lora = self.adapter(trainer)
        n_ctx = max(len(i) for i in ids) + self.max_tokens + 8
        out: dict[str, list[Any]] = {"prompt_ids": [], "completion_ids": [], "logprobs": []}
        eos = self.tok.eos_token_id
        # one call per group size (GRPO's are all equal): each group's samples are seeds seed..seed+n-1
        engine = LlamaCppEngine(self.base, n_ctx=n_ctx, n_parallel=self.n_parallel, prefix_cache=False, lora=lora,
                                n_ctx_batch=min(self.n_parallel * n_ctx, 32768))
        try:
            by_n: dict[int, list[int]] = {}
            for g, (_, n) in enumerate(groups):
                by_n.setdefault(n, []).append(g)
            results: dict[int, list[Any]] = {}
            for n, members in by_n.items():
                params = SamplingParams(n=n, temperature=self.temperature, top_p=self.top_p, top_k=self.top_k,
                                        max_tokens=self.max_tokens, logprobs=0, seed=self.seed + 1000 * self.calls)
                gens = engine.generate([ids[g] for g in members], params)
                for gen in gens:
                    results.setdefault(members[gen.index], []).append(gen)
        finally:
            engine.close()
        for g, (_, n) in enumerate(groups):
            for gen in sorted(results[g], key=lambda x: x.sample):
                if gen.error:
                    raise RuntimeError(f"llama.cpp rollout failed: {gen.error}")
                completion = list(gen.token_ids or [])
                if gen.finish_reason == "stop" and eos is not None:  # ended on end-of-generation: TRL wants it
                    completion.append(eos)
                # the decoder logs the end-of-generation token's log-prob too, before it stops
                logps = list(gen.token_logprobs or [])[: len(completion)]
                logps += [0.0] * (len(completion) - len(logps))
                out["prompt_ids"].append(ids[g])
                out["completion_ids"].append(completion)
                out["logprobs"].append(logps)
                self.tokens += len(completion)
        self.calls += 1
        self.seconds += time.perf_counter() - t0
        return out

    def _render(self, prompt: Any) -> list[int]:
        if isinstance(prompt, str):
            return self.tok(prompt, add_special_tokens=False)["input_ids"]
        return list(self.tok.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True,
                                                 return_dict=False))
