"""Problems: bundled benchmark sets and user files, with stable ids and typed gold answers.

    >>> probs = load_problems(DatasetConfig(name="gsm8k", limit=2))
    >>> probs[0].id, probs[0].answer, len(list_datasets())
    ('gsm8k-0', '18', 10)
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any, Callable, Iterator

from pydantic import BaseModel, ConfigDict, Field

from reasonlab.answers import AnswerType
from reasonlab.errors import DataError
from reasonlab.registry import did_you_mean


class Problem(BaseModel):
    """One question with its reference answer."""

    model_config = ConfigDict(frozen=True)

    id: str
    question: str
    answer: str
    answer_type: AnswerType = "auto"
    meta: dict[str, Any] = Field(default_factory=dict)


class DatasetConfig(BaseModel):
    """Which problems to run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("gsm8k", description="bundled name, a .jsonl/.csv/.parquet path, or an HF dataset id")
    split: str = Field("test", description="HF datasets: which split")
    question_field: str | None = Field(None, description="field holding the question (default: question/problem/prompt)")
    answer_field: str | None = Field(None, description="field holding the gold answer (default: answer)")
    id_field: str | None = Field(None, description="field holding a stable id (default: id/idx/unique_id, else line)")
    answer_type: AnswerType | None = Field(None, description="how answers are normalised (default: the dataset's)")
    limit: int | None = Field(None, ge=1, description="run at most this many problems")
    offset: int = Field(0, ge=0, description="skip this many problems first")
    where: dict[str, tuple[str, ...]] = Field(default_factory=dict, description="keep problems whose metadata field "
                                              "has one of these values, e.g. {level: [1, 2]} (before offset/limit)")
    shuffle: bool = Field(False, description="shuffle (with seed) before offset and limit")
    seed: int = Field(0, description="shuffle seed")


_INSTRUCTION = "\nPlease reason step by step, and put your final answer within \\boxed{}."


def _gsm8k_gold(text: str) -> str:
    return text.split("####")[-1].strip().replace(",", "") if "####" in text else text.strip()


@dataclass(frozen=True)
class Bundled:
    file: str
    question: str
    answer_type: AnswerType
    make_id: Callable[[dict[str, Any], int], str]
    gold: Callable[[Any], str] = lambda a: str(a)
    meta: tuple[str, ...] = ()
    about: str = ""


BUNDLED: dict[str, Bundled] = {
    "gsm8k": Bundled("gsm8k_test.jsonl", "question", "number", lambda r, i: f"gsm8k-{r['idx']}",
                     _gsm8k_gold, about="GSM8K test (grade-school word problems), MIT"),
    # the train split, to sample traces from and train on (never evaluated on: the test split is "gsm8k")
    "gsm8k-train": Bundled("gsm8k_train.jsonl", "question", "number", lambda r, i: f"gsm8k-train-{i}",
                           _gsm8k_gold, about="GSM8K train (7473 problems, for sampling and training), MIT"),
    "math500": Bundled("math500.jsonl", "problem", "latex", lambda r, i: str(r["unique_id"]),
                       meta=("subject", "level"), about="MATH-500 (Lightman et al. split of MATH), MIT"),
    "aime24": Bundled("aime24.jsonl", "problem", "int", lambda r, i: f"aime24-{r['id']}",
                      meta=("url",), about="AIME 2024 I+II, integer answers 0-999 (MAA; research use)"),
    "aime25": Bundled("aime25.jsonl", "prompt", "int", lambda r, i: f"aime25-{i}",
                      about="AIME 2025 I+II, integer answers 0-999 (MAA; research use)"),
    "amc23": Bundled("amc23.jsonl", "problem", "number", lambda r, i: f"amc23-{r['id']}",
                     meta=("url",), about="AMC 12 2023, 40 problems (MAA; research use)"),
    # PolyMath, English (Qwen, arXiv 2504.18428): for models past GSM8K. Its "low" level is GSM8K test 0-124 word
    # for word — not a second benchmark beside gsm8k (hCoT's notebook reported on it)
    **{f"polymath-en-{level}": Bundled(f"polymath_en_{level}.jsonl", "question",
                                       "number" if level == "low" else "latex", lambda r, i: str(r["id"]),
                                       about=f"PolyMath English, level {level}, 125 problems, Apache-2.0"
                                             + (" (= GSM8K test 0-124)" if level == "low" else ""))
       for level in ("low", "medium", "high", "top")},
}


def bundled_path(name: str) -> Path:
    return Path(str(files("reasonlab.data").joinpath("bundled", BUNDLED[name].file)))


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{lineno}: not valid JSON ({err.msg} at column {err.colno})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            yield lineno, row


def _read_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line or row number, record) from a JSONL, CSV or parquet file."""
    if not path.is_file():
        raise DataError(f"dataset file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        yield from _read_jsonl(path)
    elif suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as fh:
            for lineno, row in enumerate(csv.DictReader(fh), 2):  # line 1 is the header
                yield lineno, row
    elif suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as err:
            raise DataError("reading parquet needs pyarrow: pip install pyarrow") from err
        for i, row in enumerate(pq.read_table(path).to_pylist(), 1):
            yield i, row
    else:
        raise DataError(f"{path}: unknown dataset format '{suffix}' (use .jsonl, .csv or .parquet)")


def _pick(row: dict[str, Any], wanted: str | None, defaults: tuple[str, ...], where: str, what: str) -> Any:
    names = (wanted,) if wanted else defaults
    for name in names:
        if name in row and row[name] is not None:
            return row[name]
    flag = f"--{what}-field"
    raise DataError(f"{where}: no {what} field {' or '.join(repr(n) for n in names)} "
                    f"(fields: {', '.join(map(str, row))}; choose one with {flag})")


def _from_rows(rows: Iterator[tuple[int, dict[str, Any]]], cfg: DatasetConfig, source: str) -> list[Problem]:
    out: list[Problem] = []
    stem = Path(source).stem if Path(source).suffix else source.replace("/", "_")
    for lineno, row in rows:
        where = f"{source}:{lineno}"
        question = _pick(row, cfg.question_field, ("question", "problem", "prompt", "input"), where, "question")
        answer = _pick(row, cfg.answer_field, ("answer", "final_answer", "solution", "target"), where, "answer")
        if cfg.id_field or any(k in row for k in ("id", "idx", "unique_id")):
            pid = f"{stem}-{_pick(row, cfg.id_field, ('id', 'idx', 'unique_id'), where, 'id')}"
        else:
            pid = f"{stem}-{lineno}"
        out.append(Problem(id=pid, question=str(question).removesuffix(_INSTRUCTION), answer=_gsm8k_gold(str(answer)),
                           answer_type=cfg.answer_type or "auto"))
    return out


def _bundled(name: str, cfg: DatasetConfig) -> list[Problem]:
    spec, path = BUNDLED[name], bundled_path(name)
    out = []
    for i, (lineno, row) in enumerate(_read_jsonl(path)):
        out.append(Problem(
            id=spec.make_id(row, i),
            question=str(row[spec.question]).removesuffix(_INSTRUCTION),
            answer=spec.gold(row["answer"]),
            answer_type=cfg.answer_type or spec.answer_type,
            meta={k: row[k] for k in spec.meta if k in row},
        ))
    return out


def _hf_dataset(name: str, cfg: DatasetConfig) -> list[Problem]:
    try:
        import datasets
    except ImportError as err:
        raise DataError(f"'{name}' is not a bundled dataset or a file; HF dataset ids need: pip install datasets") from err
    try:
        ds = datasets.load_dataset(name, split=cfg.split)
    except Exception as err:  # no network, no such dataset, no such split: one line for the user
        raise DataError(f"could not load HF dataset '{name}' (split {cfg.split}): {type(err).__name__}: "
                        f"{str(err).splitlines()[0] if str(err) else ''}") from err
    return _from_rows(((i, dict(r)) for i, r in enumerate(ds, 1)), cfg, Path(name).name if Path(name).is_dir() else name)


def load_problems(cfg: DatasetConfig | str = "gsm8k", **options: Any) -> list[Problem]:
    """Problems for a dataset config (or a name plus options), after shuffle, offset and limit."""
    if isinstance(cfg, str):
        cfg = DatasetConfig(name=cfg, **options)
    name = cfg.name
    path = Path(name).expanduser()
    if name in BUNDLED:
        problems = _bundled(name, cfg)
    elif path.is_dir():  # a local dataset directory: HF datasets reads it without a network
        problems = _hf_dataset(str(path), cfg)
    elif path.suffix.lower() in (".jsonl", ".json", ".ndjson", ".csv", ".parquet") or path.exists():
        problems = _from_rows(_read_rows(path), cfg, str(path))
    elif "/" in name:
        problems = _hf_dataset(name, cfg)
    else:
        raise did_you_mean("dataset", name, list(BUNDLED))
    seen: set[str] = set()
    for p in problems:
        if p.id in seen:
            raise DataError(f"{name}: problem id '{p.id}' appears twice; choose a unique --id-field")
        seen.add(p.id)
    for key, allowed in cfg.where.items():
        if not any(key in p.meta for p in problems):
            fields = sorted({k for p in problems for k in p.meta})
            raise DataError(f"{name}: no problem has the field '{key}' to select on (fields: {', '.join(fields) or 'none'})")
        problems = [p for p in problems if str(p.meta.get(key)) in {str(v) for v in allowed}]
    if cfg.shuffle:
        random.Random(cfg.seed).shuffle(problems)
    end = None if cfg.limit is None else cfg.offset + cfg.limit
    return problems[cfg.offset:end]


def list_datasets() -> list[dict[str, Any]]:
    """Bundled datasets with their record counts (read from the files, not hard-coded)."""
    out = []
    for name, spec in BUNDLED.items():
        with bundled_path(name).open(encoding="utf-8") as fh:
            count = sum(1 for line in fh if line.strip())
        out.append({"name": name, "records": count, "answer_type": spec.answer_type, "about": spec.about})
    return out


__all__ = ["BUNDLED", "DatasetConfig", "Problem", "list_datasets", "load_problems"]
