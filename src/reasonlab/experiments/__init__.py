"""Research reproductions (DESIGN.md's research layer): each experiment is a subpackage with a typed config and
a resumable ``run(config, out)``, registered here by import string so naming one imports nothing heavy.

    reasonlab experiment run quietstar use_reasoner=false --out runs/qs/nll
    reasonlab experiment sweep quietstar base_lm_hidden_dim=8,32,64 use_reasoner=true,false seed=7,8,9 --out runs/qs/a
    reasonlab experiment table runs/qs/a

``experiments.grid`` does the sweeps for every experiment: a grid over any config keys and seeds, each cell a
resumable run directory, and the table of final validation metrics, mean and spread over seeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from reasonlab.registry import Registry


@dataclass(frozen=True)
class Experiment:
    name: str
    config: type  # a frozen pydantic model: every field a documented knob
    run: Callable[..., dict[str, Any]]  # run(config, out, until=None, progress=True) -> result (result.json)
    metric: str  # the result's headline number, lower is better (the sweep table's column)
    about: str
    columns: Callable[[dict[str, Any]], dict[str, float]] | None = None  # more numbers for the table, per run


EXPERIMENTS: Registry[Experiment] = Registry("experiment")
EXPERIMENTS.register("quietstar", "reasonlab.experiments.quietstar:EXPERIMENT")
EXPERIMENTS.register("multokens", "reasonlab.experiments.multokens:EXPERIMENT")
