"""Data generation: what runs produce, turned into what training consumes (a producer: it reads runs through
``reasonlab.runs`` and writes datasets; training reads those files)."""

from reasonlab.datagen.contamination import Guard
from reasonlab.datagen.traces import DatagenConfig, build_rows, datagen, labels

__all__ = ["DatagenConfig", "Guard", "build_rows", "datagen", "labels"]
