"""The pretraining corpus from text reasonlab ships: tiny Shakespeare, GSM8K train (question and rationale, the
calculator annotations removed), and synthetic arithmetic — times tables, drills, short word problems — mixed at
the configured shares. Documents are sampled with a seeded generator until each source has its share of the
characters; the mul-token condition then injects its facts, the baseline leaves the text alone, so the two differ
only where a fact is written.

    >>> docs = drills(__import__("random").Random(0), 3)
    >>> len(docs), all("=" in d for d in docs)
    (3, True)
"""

from __future__ import annotations

import json
import random
import re
from importlib.resources import files
from pathlib import Path

from reasonlab.errors import DataError
from reasonlab.experiments.multokens.config import CorpusConfig

CALC = re.compile(r"<<[^>]*>>")  # GSM8K's calculator annotations: <<6*9=54>>
ITEMS = ["apples", "pencils", "eggs", "books", "marbles", "cookies", "stickers", "coins", "chairs", "flowers"]
TIMES = ["×", "*", "x"]


def _bundled(name: str) -> Path:
    return Path(str(files("reasonlab.data").joinpath("bundled", name)))


def shakespeare() -> list[str]:
    """Tiny Shakespeare in paragraphs (blank-line separated speeches)."""
    text = _bundled("tinyshakespeare.txt").read_text(encoding="utf-8")
    return [p.strip() for p in text.split("\n\n") if p.strip()]


def gsm8k() -> list[str]:
    out = []
    with _bundled("gsm8k_train.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            answer = CALC.sub("", row["answer"])
            out.append(f"Question: {row['question']}\nAnswer: {answer}")
    return out


def drills(rng: random.Random, n: int, upto: int = 12) -> list[str]:
    """Synthetic arithmetic documents: a times table, a drill of mixed facts, or a short word problem."""
    docs = []
    for _ in range(n):
        kind = rng.random()
        if kind < 0.3:  # a table
            a = rng.randint(2, upto)
            sign = rng.choice(TIMES)
            docs.append("\n".join(f"{a} {sign} {b} = {a * b}" for b in range(1, upto + 1)))
        elif kind < 0.65:  # a drill
            lines = []
            for _ in range(rng.randint(4, 8)):
                a, b = rng.randint(1, upto), rng.randint(1, upto)
                lines.append(rng.choice([f"What is {a} times {b}? {a} {rng.choice(TIMES)} {b} = {a * b}.",
                                         f"{a} {rng.choice(TIMES)} {b} = {a * b}",
                                         f"{a} + {b} = {a + b}", f"{a * b} / {b} = {a}"]))
            docs.append("\n".join(lines))
        else:  # a word problem
            a, b, item = rng.randint(2, 9), rng.randint(2, 9), rng.choice(ITEMS)
            docs.append(f"A shelf has {a} rows with {b} {item} in each row. How many {item} are there? "
                        f"There are {a} {rng.choice(TIMES)} {b} = {a * b} {item}. The answer is {a * b}.")
    return docs


def extra(source: str) -> list[str]:
    path = Path(source)
    if path.is_file():
        return [p.strip() for p in path.read_text(encoding="utf-8").split("\n\n") if p.strip()]
    try:
        from datasets import load_dataset

        return [r["text"] for r in load_dataset(source, split="train")]
    except Exception as err:  # noqa: BLE001 - one line naming the source, whatever the hub says
        raise DataError(f"corpus {source!r}: not a file, and not loadable as an HF dataset ({err})") from None


def build(cfg: CorpusConfig, total_chars: int, seed: int) -> tuple[list[str], dict[str, list[str]]]:
    """(train documents, validation documents by source), about ``total_chars`` training characters in the
    configured shares. Validation documents are each source's own tail, so no text is in both; they are kept by
    source because their mixture is not the training one (every held-out drill, say, however small its share)."""
    rng = random.Random(seed)
    sources = {"shakespeare": (cfg.shakespeare, shakespeare), "gsm8k": (cfg.gsm8k, gsm8k),
               "drills": (cfg.drills, lambda: drills(random.Random(seed + 1), 20000))}
    if cfg.extra:
        sources["extra"] = (cfg.extra_share, lambda: extra(cfg.extra))  # type: ignore[assignment]
    weight = sum(w for w, _ in sources.values())
    if weight <= 0:
        raise DataError("corpus: every share is 0")
    train: list[str] = []
    val: dict[str, list[str]] = {}
    for name, (share, load) in sources.items():
        if share <= 0:
            continue
        docs = load()
        cut = max(1, int(len(docs) * (1 - cfg.val_fraction)))
        head, val[name] = docs[:cut], docs[cut:]
        want = total_chars * share / weight
        got = 0
        while got < want:  # sample with replacement once a source runs out: shares hold at any budget
            d = head[rng.randrange(len(head))]
            train.append(d)
            got += len(d)
    rng.shuffle(train)
    return train, val
