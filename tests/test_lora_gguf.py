"""A peft LoRA goes back into llama.cpp: written as a GGUF LoRA, applied on the quantized base in both llamacpp
paths, it predicts what transformers with the same adapter predicts. smollm2 is a llama-architecture model, so
the q/k row permutation is exercised."""

from __future__ import annotations

import pytest

from reasonlab.engines import SamplingParams
from reasonlab.errors import ModelError

pytestmark = pytest.mark.slow

TEXT = ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
        "How many clips did Natalia sell altogether in April and May? In April she sold 48 clips. In May she "
        "sold half as many, which is 48 / 2 = 24 clips. Altogether she sold 48 + 24 = 72 clips. The answer is "
        "72. Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. How much "
        "did she earn? Weng earns 12 / 60 = $0.2 per minute. Working 50 minutes, she earned 0.2 x 50 = $10. "
        "Betty is saving money for a new wallet which costs $100. Betty has only half of the money she needs.")
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.fixture(scope="module")
def adapter(smol_path, tmp_path_factory):
    """A random LoRA (A and B both random, so it changes predictions) on smollm2's dequantized weights, and
    transformers' teacher-forced top-1 predictions with and without it."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from reasonlab.engines.hf import gguf_to_hf

    hf_dir = gguf_to_hf(smol_path)
    tok = AutoTokenizer.from_pretrained(hf_dir)
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
    torch.manual_seed(0)
    peft = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=TARGETS, init_lora_weights=False))
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.mul_(0.5)  # strong enough to move predictions, not to wreck the model
    ids = tok(TEXT)["input_ids"]
    with torch.no_grad():
        x = torch.tensor([ids])
        with_adapter = peft(input_ids=x).logits[0].argmax(-1).tolist()
        with peft.disable_adapter():
            without = peft(input_ids=x).logits[0].argmax(-1).tolist()
    out = tmp_path_factory.mktemp("lora") / "adapter"
    peft.save_pretrained(out)
    return out, ids, with_adapter, without


def llama_top1(smol_path, ids: list[int], lora=None) -> list[int]:
    import numpy as np
    from llama_cpp import Llama

    from reasonlab.engines.lora import gguf_adapter

    llm = Llama(model_path=str(smol_path), n_ctx=512, logits_all=True, verbose=False,
                lora_path=str(gguf_adapter(lora, smol_path)) if lora else None)
    llm.eval(ids)
    top = np.asarray(llm.scores[: len(ids)]).argmax(-1).tolist()
    llm.close()
    return top


def agree(a: list[int], b: list[int]) -> float:
    return sum(x == y for x, y in zip(a, b)) / len(a)


def test_llamacpp_with_the_adapter_predicts_what_hf_with_it_does(smol_path, adapter) -> None:
    path, ids, hf_with, hf_without = adapter
    cpp_with = llama_top1(smol_path, ids, path)
    cpp_without = llama_top1(smol_path, ids)
    assert len(ids) > 100 and agree(hf_with, hf_without) < 0.8  # the adapter matters
    # stated tolerance: the base in llama.cpp is the Q4_1 file, in transformers its dequantized values in fp32
    assert agree(cpp_with, hf_with) >= 0.9 > agree(cpp_without, hf_with) + 0.05
    assert (path.parent / "adapter.gguf").exists()  # converted once, beside the adapter


def test_both_llamacpp_paths_apply_the_adapter_and_record_it(smol_path, adapter) -> None:
    from reasonlab.engines.llamacpp import LlamaCppEngine

    path, *_ = adapter
    params = SamplingParams(max_tokens=24)
    prompt = "The capital of France is"
    outs = {}
    for n_parallel in (1, 2):
        for lora in (None, path):
            eng = LlamaCppEngine(smol_path, n_ctx=512, n_parallel=n_parallel, lora=lora)
            outs[n_parallel, lora is not None] = eng.generate([prompt], params)[0].token_ids
            if lora is not None:
                assert eng.identity()["lora"]["file"] == "adapter.gguf"
            eng.close()
    assert outs[1, True] != outs[1, False] and outs[2, True] != outs[2, False]
    assert outs[1, True][:8] == outs[2, True][:8]  # the batched decoder's own context has the adapter too


def test_an_adapter_for_another_model_is_refused(smol_path, tmp_path) -> None:
    import json

    import numpy as np
    from safetensors.numpy import save_file

    from reasonlab.engines.lora import adapter_to_gguf

    (tmp_path / "adapter_config.json").write_text(json.dumps({"lora_alpha": 16, "r": 4}))
    save_file({"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": np.zeros((4, 32), np.float32),
               "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": np.zeros((32, 4), np.float32)},
              str(tmp_path / "adapter_model.safetensors"))
    with pytest.raises(ModelError, match="made for another model"):
        adapter_to_gguf(tmp_path, smol_path, tmp_path / "x.gguf")


def test_export_merges_the_adapter_into_a_standalone_gguf(smol_path, adapter, tmp_path) -> None:
    """--merge in GGUF space: dequantized base + alpha/r B A, re-quantized by llama.cpp; the merged file predicts
    what the base with the adapter applied at run time predicts."""
    from gguf import GGUFReader

    from reasonlab.train.export import export

    path, ids, hf_with, _ = adapter
    # the merge itself is exact: in F16 the merged file predicts what transformers with the adapter does
    # (measured 1.00 over 192 tokens; the adapter applied at run time on the Q4_1 base: 0.97)
    merged = export(path, tmp_path / "merged-f16.gguf", merge=True, quant="f16", base=smol_path)
    assert agree(llama_top1(merged, ids), hf_with) >= 0.98
    # re-quantizing is the only new error; stated tolerances from what it does to the base alone (measured on
    # this 135M model: q8_0 0.95 vs the run-time adapter; q4_k_m 0.84, 576-wide rows fall back to q5_0)
    runtime = llama_top1(smol_path, ids, path)
    for quant, floor in (("q8_0", 0.92), ("q4_k_m", 0.78)):
        merged = export(path, tmp_path / f"merged-{quant}.gguf", merge=True, quant=quant, base=smol_path)
        assert agree(llama_top1(merged, ids), runtime) >= floor, quant
        assert not list(tmp_path.glob("*.part"))  # nothing half-written is left behind
    fields = GGUFReader(str(tmp_path / "merged-q8_0.gguf")).fields
    assert "tokenizer.ggml.tokens" in fields and "tokenizer.chat_template" in fields  # the base's metadata kept
    assert fields["general.file_type"].contents() == 7  # LLAMA_FTYPE_MOSTLY_Q8_0, not the base's


def test_export_of_a_full_fine_tune_and_of_the_adapter_alone(smol_path, adapter, tmp_path) -> None:
    """A fully fine-tuned HF model (here: the adapter merged by peft) maps back onto the base GGUF's tensors by
    the gguf package's name map, q/k rows permuted; without --merge the LoRA itself is written."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from reasonlab.engines.hf import gguf_to_hf
    from reasonlab.errors import ConfigError
    from reasonlab.train.export import export

    path, ids, hf_with, _ = adapter
    base = AutoModelForCausalLM.from_pretrained(gguf_to_hf(smol_path), dtype=torch.float32)
    full = PeftModel.from_pretrained(base, path).merge_and_unload()
    full.save_pretrained(tmp_path / "model")
    merged = export(tmp_path / "model", tmp_path / "full.gguf", merge=True, quant="f16", base=smol_path)
    assert agree(llama_top1(merged, ids), hf_with) >= 0.98  # exact up to F16 (measured 1.00)
    runtime = llama_top1(smol_path, ids, path)
    lora = export(path, tmp_path / "lora.gguf", base=smol_path)  # no --merge: the adapter for --lora
    assert agree(llama_top1(smol_path, ids, lora), runtime) == 1.0
    with pytest.raises(ConfigError, match="full model, not an adapter"):
        export(tmp_path / "model", tmp_path / "x.gguf", base=smol_path)
    with pytest.raises(ConfigError, match="not a training run"):
        export(tmp_path / "nothing", tmp_path / "x.gguf", base=smol_path)
    with pytest.raises(ConfigError, match="--quant q3"):
        export(path, tmp_path / "x.gguf", merge=True, quant="q3", base=smol_path)  # type: ignore[arg-type]


def test_train_export_command(smol_path, adapter, tmp_path) -> None:
    from typer.testing import CliRunner

    from reasonlab.cli import app

    path, *_ = adapter
    res = CliRunner().invoke(app, ["train", "export", str(path), "--out", str(tmp_path / "a.gguf"),
                                   "--base", str(smol_path)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "a LoRA for --lora" in res.output and (tmp_path / "a.gguf").stat().st_size > 0
    res = CliRunner().invoke(app, ["train", "export", str(path), "--out", str(tmp_path / "b.gguf")])
    assert "train.yaml" in str(res.exception) and not (tmp_path / "b.gguf").exists()  # no run record: --base


def test_bench_measures_the_adapter_at_run_time_beside_the_base_and_merged(smol_path, adapter, tmp_path) -> None:
    """`reasonlab bench --only lora`: the same batches on the base, with the adapter at run time and merged; the
    greedy text must part from the base's, or the adapter was not applied and the speeds compare nothing."""
    from pydantic import ValidationError

    from reasonlab.bench import BenchConfig, run_bench
    from reasonlab.train.export import export

    merged = export(adapter[0], tmp_path / "merged.gguf", merge=True, quant="q8_0", base=smol_path)
    cfg = BenchConfig(model="smollm2-135m", parts=("lora",), lora=str(adapter[0]), merged=str(merged),
                      batch_sizes=(1, 2), tokens=16)
    rows = run_bench(cfg, tmp_path / "bench", say=lambda line: None)["lora"]["rows"]
    assert [(r["weights"], r["batch"]) for r in rows] == [(w, b) for w in ("base", "lora", "merged") for b in (1, 2)]
    assert all(r["tok_s"] > 0 for r in rows) and all(r["of_base"] == 1.0 for r in rows if r["weights"] == "base")
    differs = {r["weights"]: r["first_token_differing_from_base"] for r in rows}
    assert differs["base"] is None and differs["lora"] is not None and differs["merged"] is not None
    with pytest.raises(ValidationError, match="lora part and an adapter"):
        BenchConfig(parts=("lora",))
