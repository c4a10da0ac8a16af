"""Character-level text for Quiet-STaR: a vocabulary of the text's characters plus three markers, random
training windows from the head of the text, fixed validation windows from its tail.

    >>> text = CharText.from_string("hello world " * 40, val_fraction=0.25)
    >>> text.decode(text.encode("hello"))
    'hello'
    >>> text.vocab_size == len(set("hello world ")) + 3
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reasonlab.errors import DataError

SPECIALS = ("<pad>", "<sot>", "<eot>")  # padding, start of thought, end of thought: ids after the characters


@dataclass(frozen=True)
class CharText:
    chars: str  # the vocabulary's characters, sorted; id = index, then the three markers
    train: Any  # LongTensor [n_train]
    val: Any  # LongTensor [n_val]

    @classmethod
    def from_string(cls, text: str, val_fraction: float) -> CharText:
        import torch

        chars = "".join(sorted(set(text)))
        index = {c: i for i, c in enumerate(chars)}
        ids = torch.tensor([index[c] for c in text], dtype=torch.long)
        cut = int(len(ids) * (1 - val_fraction))
        return cls(chars, ids[:cut], ids[cut:])

    @classmethod
    def load(cls, name: str, val_fraction: float) -> CharText:
        """'tinyshakespeare' (bundled with reasonlab) or a text file's path."""
        if name == "tinyshakespeare":
            from importlib.resources import files

            path = Path(str(files("reasonlab.data").joinpath("bundled", "tinyshakespeare.txt")))
        else:
            path = Path(name)
        if not path.is_file():
            raise DataError(f"text file not found: {path}")
        text = path.read_text(encoding="utf-8")
        if len(text) < 1000:
            raise DataError(f"{path}: {len(text)} characters is too little text to train on")
        return cls.from_string(text, val_fraction)

    @property
    def pad(self) -> int:
        return len(self.chars)

    @property
    def sot(self) -> int:
        return len(self.chars) + 1

    @property
    def eot(self) -> int:
        return len(self.chars) + 2

    @property
    def vocab_size(self) -> int:
        return len(self.chars) + len(SPECIALS)

    def encode(self, s: str) -> list[int]:
        return [self.chars.index(c) for c in s]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.chars[i] if i < len(self.chars) else SPECIALS[i - len(self.chars)] for i in ids)

    def train_batch(self, batch: int, window: int, gen: Any) -> Any:
        """[batch, window + 1] random windows of the training text (inputs are [:, :-1], targets [:, 1:])."""
        return random_windows(self.train, batch, window, gen, "training text")

    def val_windows(self, n: int, window: int) -> Any:
        """[n', window + 1] validation windows spread evenly over the held-out text (the same every call)."""
        return spread_windows(self.val, n, window, "validation text")


def random_windows(ids: Any, batch: int, window: int, gen: Any, what: str) -> Any:
    """[batch, window + 1] windows of ``ids`` at random starts drawn from ``gen``."""
    import torch

    if len(ids) <= window + 1:
        raise DataError(f"the {what} ({len(ids)} tokens) is shorter than a window")
    starts = torch.randint(0, len(ids) - window - 1, (batch,), generator=gen)
    return torch.stack([ids[s: s + window + 1] for s in starts.tolist()])


def spread_windows(ids: Any, n: int, window: int, what: str) -> Any:
    """[min(n, span), window + 1] windows of ``ids`` at evenly spread starts (deterministic)."""
    import torch

    span = len(ids) - window - 1
    if span <= 0:
        raise DataError(f"the {what} ({len(ids)} tokens) is shorter than a window")
    n = min(n, span)
    starts = [round(i * span / max(n - 1, 1)) for i in range(n)]
    return torch.stack([ids[s: s + window + 1] for s in starts])
