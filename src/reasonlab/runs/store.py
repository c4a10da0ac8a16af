"""A run is a directory: config.yaml, results.jsonl, errors.jsonl, summary.json. One writer, one reader.

``RunStore`` (the writer, used by the runner) appends each finished problem to results.jsonl as one
line, flushed and fsynced before the next, so a crash or kill loses at most the problems in flight. A
problem that failed (a dead server, a prompt over the context) is appended to errors.jsonl instead: it
is not a wrong answer. On open, a torn last line (a kill mid-write) is cut off; ids with a result are
never run or written again; failed ids are run again unless their failure cannot go away by retrying.

``read_run`` (the reader, for everything that reads runs later: summary, report, sweep, training, data
generation) reads the same files the same way and never modifies them.

    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> s = RunStore(d); s.open({"config": {}}, {"model": "m"})
    >>> s.append(ProblemRecord(id="1", answer="2", correct=True)); _ = s.fail(ErrorRecord(id="2", error="HTTP 500"))
    >>> run = read_run(d); [r.id for r in run.records], [e.id for e in run.errors], s.todo(["1", "2", "3"])
    (['1'], ['2'], ['2', '3'])
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from reasonlab.errors import ConfigError, DataError
from reasonlab.runs.schema import ErrorRecord, ProblemRecord

CONFIG, RESULTS, ERRORS, SUMMARY = "config.yaml", "results.jsonl", "errors.jsonl", "summary.json"
M = TypeVar("M", bound=BaseModel)


def _read_lines(path: Path, model: type[M], repair: bool) -> list[M]:
    """Every complete line of a JSONL file as ``model``. A last line without its newline is a write a kill
    cut short: cut off when ``repair`` (the writer), skipped otherwise (readers). A bad complete line is
    an error naming the file and line, for both."""
    if not path.exists():
        return []
    data = path.read_bytes()
    good = data.rfind(b"\n") + 1
    if repair and good < len(data):
        with path.open("r+b") as fh:
            fh.truncate(good)
    out = []
    for lineno, line in enumerate(data[:good].splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(model.model_validate_json(line))
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(map(str, first["loc"])) or "line"
            raise DataError(f"{path}:{lineno}: {where}: {first['msg']}; fix or delete that line") from None
    return out


def _latest(records: Iterable[M]) -> dict[str, M]:
    """Last record per id (errors: the newest failure) in file order."""
    out: dict[str, M] = {}
    for r in records:
        out[r.id] = r  # type: ignore[attr-defined]
    return out


def diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Human-readable differences between two nested config dicts.

    >>> diff({"a": {"b": 1}, "c": 2}, {"a": {"b": 3}, "c": 2})
    ['a.b: 1 -> 3']
    """
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += diff(a, b, name + ".")
        elif a != b:
            out.append(f"{name}: {a!r} -> {b!r}")
    return out


def known_to(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``new`` without the keys ``old`` never had (at any depth).

    >>> known_to({"a": 1, "e": {"x": 1}}, {"a": 2, "b": 3, "e": {"x": 1, "y": 2}})
    {'a': 2, 'e': {'x': 1}}
    """
    return {k: known_to(old[k], v) if isinstance(v, dict) and isinstance(old[k], dict) else v
            for k, v in new.items() if k in old}


@dataclass
class Run:
    """An existing run directory, as read: its config, finished records and outstanding failures."""

    path: Path
    config: dict[str, Any]
    records: list[ProblemRecord]
    errors: list[ErrorRecord] = field(default_factory=list)

    def record_dicts(self) -> list[dict[str, Any]]:
        """The records in their JSON form (what ``reasonlab.evaluate.metrics`` reads)."""
        return [r.model_dump(mode="json") for r in self.records]


def _load(path: Path, repair: bool) -> tuple[dict[str, ProblemRecord], dict[str, ErrorRecord]]:
    results = {}
    for r in _read_lines(path / RESULTS, ProblemRecord, repair):
        results.setdefault(r.id, r)  # the first write of an id is the one that counts
    errors = {k: e for k, e in _latest(_read_lines(path / ERRORS, ErrorRecord, repair)).items() if k not in results}
    return results, errors


def read_run(path: str | Path) -> Run:
    """The run in directory ``path``, without modifying it."""
    path = Path(path)
    if not (path / CONFIG).exists():
        raise DataError(f"{path} is not a reasonlab run directory (no {CONFIG})")
    try:
        config = yaml.safe_load((path / CONFIG).read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise DataError(f"{path / CONFIG}: not valid YAML: {str(err).splitlines()[0]}") from None
    results, errors = _load(path, repair=False)
    return Run(path=path, config=config, records=list(results.values()), errors=list(errors.values()))


class RunStore:
    """The writer of one run directory (one per run; not shared between processes)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._records: dict[str, ProblemRecord] = {}
        self._errors: dict[str, ErrorRecord] = {}

    @property
    def results_path(self) -> Path:
        return self.path / RESULTS

    def open(self, config: dict[str, Any], identity: dict[str, Any], force_new: bool = False) -> None:
        """Create the run, or resume it if it holds the same identity; refuse a different one."""
        cfg_path = self.path / CONFIG
        if cfg_path.exists():
            old = (yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}).get("identity", {})
            # a field the run's version did not have yet (the loaded model, a new engine option) cannot differ
            changes = diff(old, known_to(old, identity))
            if changes and not force_new:
                raise ConfigError(
                    f"{self.path} holds a run with another config ({'; '.join(changes[:3])}"
                    f"{'; …' if len(changes) > 3 else ''}): use another --out, or --force-new to start over "
                    f"(the old run is kept beside it)"
                )
            if changes:
                backup = self.path.with_name(f"{self.path.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
                self.path.rename(backup)
        self.path.mkdir(parents=True, exist_ok=True)
        cfg_path.write_text(yaml.safe_dump({**config, "identity": identity}, sort_keys=False), encoding="utf-8")
        self._records, self._errors = _load(self.path, repair=True)

    def todo(self, ids: Iterable[str]) -> list[str]:
        """Of ``ids``, those to run now: no result yet, and no failure that retrying cannot fix."""
        return [i for i in ids if i not in self._records and (i not in self._errors or self._errors[i].retryable)]

    def done_ids(self) -> set[str]:
        return set(self._records)

    def records(self) -> list[ProblemRecord]:
        return list(self._records.values())

    def errors(self) -> list[ErrorRecord]:
        """Failures not since fixed by a later run."""
        return list(self._errors.values())

    def _write(self, name: str, line: str) -> None:
        with (self.path / name).open("a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def append(self, record: ProblemRecord) -> None:
        if record.id in self._records:
            return  # never written twice
        self._write(RESULTS, record.model_dump_json() + "\n")
        self._records[record.id] = record
        self._errors.pop(record.id, None)

    def fail(self, error: ErrorRecord) -> ErrorRecord:
        """Record a failed attempt at a problem (its attempts counted across runs); returns what was written."""
        if error.id in self._records:
            return error
        prev = self._errors.get(error.id)
        error = error.model_copy(update={"attempts": (prev.attempts + 1) if prev else error.attempts,
                                         "time": error.time or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        self._write(ERRORS, error.model_dump_json() + "\n")
        self._errors[error.id] = error
        return error

    def write_summary(self, summary: dict[str, Any]) -> None:
        tmp = self.path / (SUMMARY + ".tmp")
        tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        tmp.replace(self.path / SUMMARY)
