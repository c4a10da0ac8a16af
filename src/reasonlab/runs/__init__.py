"""Run records: the typed schema of a run directory, its one writer and its one reader.

Everything that reads runs (summary, report, sweep, training, data generation) goes through
``read_run``; only the runner writes, through ``RunStore``.
"""

from reasonlab.runs.schema import ErrorRecord, ProblemRecord, TraceRecord
from reasonlab.runs.store import CONFIG, ERRORS, RESULTS, SUMMARY, Run, RunStore, diff, known_to, read_run

__all__ = ["CONFIG", "ERRORS", "RESULTS", "SUMMARY", "ErrorRecord", "ProblemRecord", "Run", "RunStore",
           "TraceRecord", "diff", "known_to", "read_run"]
