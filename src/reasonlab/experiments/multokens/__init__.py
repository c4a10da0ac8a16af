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


EXPERIMENT = Experiment("multokens", MulTokensConfig, _run, metric="val_loss",
                        about="GPT-2-style pretraining with arithmetic-fact tokens vs without; export, probes")
