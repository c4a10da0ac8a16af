"""The mul-tokens study at laptop scale (research notebook 001; zhengpu-berkeley/domain-token-gpt2): does a small
GPT-2 learn to use single tokens for arithmetic facts (``6 * 9 = 54`` -> ``<MUL_6_9_54>``)? Two conditions on the
same corpus, tokenizer, architecture, seed and token budget — ``baseline`` and ``multokens`` (facts injected) —
pretrained, exported to transformers (every Conv1D transpose, verified by equal logits), and probed.

    reasonlab experiment sweep multokens condition=baseline,multokens seed=0,1 --out runs/multokens
"""

from reasonlab.experiments import Experiment
from reasonlab.experiments.multokens.config import MulTokensConfig


def _run(cfg: MulTokensConfig, out, until=None, progress=True):  # type: ignore[no-untyped-def]
    from reasonlab.experiments.multokens.train import run  # torch only when a run starts

    return run(cfg, out, until=until, progress_on=progress)


def _columns(result: dict) -> dict:  # type: ignore[type-arg]
    """The study's table beside val loss (per token: not comparable across conditions): bits per character,
    probes, HellaSwag where given, GSM8K after SFT where run."""
    p = result.get("probes") or {}
    hs = result.get("hellaswag") or {}
    sft = result.get("sft") or {}
    bpc = {f"bpc_{k}": v for k, v in (result.get("val_bpc") or {}).items()}  # comparable across conditions
    return {**bpc, "table": p.get("table"), "multi_digit": p.get("multi_digit"), "addition": p.get("addition"),
            "forced_rank": (p.get("forced") or {}).get("mean_rank"), "forced_top1": (p.get("forced") or {}).get("top1"),
            "emb_operand-all": (p["embedding"]["shared_operand"] - p["embedding"]["all_pairs"]) if p.get("embedding")
            else None, "usage": p.get("usage_per_answer"), "hellaswag_acc_norm": hs.get("acc_norm"),
            "gsm8k_after_sft": sft.get("accuracy"), "usage_after_sft": sft.get("usage_per_answer")}


EXPERIMENT = Experiment("multokens", MulTokensConfig, _run, metric="val_loss",
                        about="GPT-2-style pretraining with arithmetic-fact tokens vs without; export, probes",
                        columns=_columns)
