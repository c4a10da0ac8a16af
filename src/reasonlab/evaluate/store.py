"""A run is a directory: config.yaml, results.jsonl (one line per finished problem), summary.json.

Each finished problem is appended as one JSON line, flushed and fsynced before the next starts, so a
crash or kill loses at most the problem in flight. On open, a torn last line (a kill mid-write) is cut
off; ids already present are never run or written again.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import yaml

from reasonlab.errors import ConfigError, DataError
from reasonlab.evaluate.config import diff

CONFIG, RESULTS, SUMMARY = "config.yaml", "results.jsonl", "summary.json"


class RunStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._records: dict[str, dict[str, Any]] = {}

    @property
    def results_path(self) -> Path:
        return self.path / RESULTS

    def open(self, config: dict[str, Any], identity: dict[str, Any], force_new: bool = False) -> None:
        """Create the run, or resume it if it holds the same config; refuse a different one."""
        cfg_path = self.path / CONFIG
        if cfg_path.exists():
            old = yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}
            changes = diff(old.get("identity", {}), identity)
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
        self._load()

    def _load(self) -> None:
        self._records = {}
        path = self.results_path
        if not path.exists():
            return
        data = path.read_bytes()
        good = data.rfind(b"\n") + 1  # a kill mid-write leaves a torn last line without its newline
        if good < len(data):
            with path.open("r+b") as fh:
                fh.truncate(good)
        for lineno, line in enumerate(data[:good].splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                raise DataError(f"{path}:{lineno}: not valid JSON; fix or delete that line to resume") from None
            self._records.setdefault(rec["id"], rec)

    def done_ids(self) -> set[str]:
        return set(self._records)

    def records(self) -> list[dict[str, Any]]:
        return list(self._records.values())

    def append(self, record: dict[str, Any]) -> None:
        if record["id"] in self._records:
            return  # never written twice
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self.results_path.open("a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        self._records[record["id"]] = record

    def write_summary(self, summary: dict[str, Any]) -> None:
        tmp = self.path / (SUMMARY + ".tmp")
        tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        tmp.replace(self.path / SUMMARY)


def read_run(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(config, records) of an existing run directory, without modifying it."""
    path = Path(path)
    if not (path / CONFIG).exists():
        raise DataError(f"{path} is not a reasonlab run directory (no {CONFIG})")
    config = yaml.safe_load((path / CONFIG).read_text(encoding="utf-8")) or {}
    records: dict[str, dict[str, Any]] = {}
    results = path / RESULTS
    if results.exists():
        for line in results.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line; the next eval cuts it off
            records.setdefault(rec["id"], rec)
    return config, list(records.values())
