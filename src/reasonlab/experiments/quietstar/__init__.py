"""Quiet-STaR on small language models (research notebook 003): a model may sample a short thought before
predicting each character, and is trained by REINFORCE to think what helps it predict. Character-level tiny
Shakespeare; a GRU reasoner/interpreter model (``gru``) and a small transformer that thinks at every position at
once (``transformer``); ``use_reasoner=false`` is the same model without thoughts, the baseline.

    reasonlab experiment sweep quietstar model=transformer max_reasoning_len=0,1,5,10 seed=7,8,9 --out runs/qs/b
"""

from reasonlab.experiments import Experiment
from reasonlab.experiments.quietstar.config import QuietStarConfig


def _run(cfg: QuietStarConfig, out, until=None, progress=True):  # type: ignore[no-untyped-def]
    from reasonlab.experiments.quietstar.train import run  # torch only when a run starts

    return run(cfg, out, until=until, progress=progress)


def _columns(result: dict) -> dict:  # type: ignore[type-arg]
    """Beside the final val bits/char: the best one seen, the model's size, the training time."""
    return {"best_val_bpc": result.get("best_val_bpc"), "parameters": result.get("parameters"),
            "minutes": (result.get("seconds") or 0) / 60}


EXPERIMENT = Experiment("quietstar", QuietStarConfig, _run, metric="val_bpc",
                        about="Quiet-STaR thoughts at every character, REINFORCE with a TRICE baseline; val bits/char",
                        columns=_columns)
