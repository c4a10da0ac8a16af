"""Data generation: what runs produce, turned into what training consumes (a producer: it reads runs through
``reasonlab.runs`` and writes datasets; training reads those files) — and data no run holds yet: pivotal-token
pairs, variants of known problems with the numbers switched, new problems a solver agrees on.

    >>> from reasonlab.datagen import PivotalConfig, pivotal_search                          # doctest: +SKIP
    >>> pivotal_search("runs/star/sample", "runs/pivotal", load_engine(), PivotalConfig(problems=30))  # doctest: +SKIP
"""

from reasonlab.datagen.contamination import Guard
from reasonlab.datagen.pivotal import PivotalConfig
from reasonlab.datagen.pivotal_run import pivotal_search
from reasonlab.datagen.problems import ProblemsConfig, generate_problems
from reasonlab.datagen.traces import DatagenConfig, build_rows, datagen, labels
from reasonlab.datagen.variants import VariantsConfig, variants

__all__ = ["DatagenConfig", "Guard", "PivotalConfig", "ProblemsConfig", "VariantsConfig", "build_rows", "datagen",
           "generate_problems", "labels", "pivotal_search", "variants"]
