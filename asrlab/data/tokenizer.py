"""Tokenizers: text <-> token ids, with the CTC blank at id 0.

`CharTokenizer` (default) takes its symbols from the training text. `BpeTokenizer` wraps
SentencePiece; its model bytes travel inside the checkpoint. Both round-trip through
`to_dict()` / `tokenizer_from_dict()` so that a checkpoint needs nothing else. Code that takes
either is typed with the `Tokenizer` protocol.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Protocol

BLANK = "<blank>"


class Tokenizer(Protocol):
    """What decoders, word timing, training and the doctor use of a tokenizer."""
    kind: str  # "char" | "bpe"
    blank: int  # the CTC blank's id (0)

    @property
    def vocab_size(self) -> int: ...

    @property
    def pieces(self) -> list[str]:
        """Each id's string, the blank first: characters, or SentencePiece pieces with their
        ▁ word-start mark."""
        ...

    def oov(self, text: str) -> set[str]: ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Iterable[int]) -> str: ...

    def to_dict(self) -> dict: ...


class CharTokenizer:
    kind = "char"
    blank = 0

    def __init__(self, symbols: list[str]):
        if not symbols or symbols[0] != BLANK:
            raise ValueError("symbols[0] must be the blank")
        self.symbols = list(symbols)
        self.index = {s: i for i, s in enumerate(self.symbols)}

    @classmethod
    def train(cls, texts: Iterable[str]) -> "CharTokenizer":
        counts = Counter(ch for t in texts for ch in t)
        if not counts:
            raise ValueError("no training text to build a character vocabulary from")
        return cls([BLANK] + sorted(counts))

    @property
    def vocab_size(self) -> int:
        return len(self.symbols)

    @property
    def pieces(self) -> list[str]:
        """Each id's string (the symbols), the blank first."""
        return list(self.symbols)

    def oov(self, text: str) -> set[str]:
        return {ch for ch in text if ch not in self.index}

    def encode(self, text: str) -> list[int]:
        missing = self.oov(text)
        if missing:
            raise KeyError(f"characters not in the vocabulary: {''.join(sorted(missing))!r}")
        return [self.index[ch] for ch in text]

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.symbols[i] for i in ids if i != self.blank)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "symbols": self.symbols}


def tokenizer_from_dict(d: dict) -> Tokenizer:
    if d["kind"] == "char":
        return CharTokenizer(d["symbols"])
    if d["kind"] == "bpe":
        from asrlab.data.bpe import BpeTokenizer

        return BpeTokenizer.from_dict(d)
    raise ValueError(f"unknown tokenizer kind {d['kind']!r}")


def build_tokenizer(kind: str, texts: list[str], vocab_size: int = 256) -> Tokenizer:
    if kind == "char":
        return CharTokenizer.train(texts)
    if kind == "bpe":
        from asrlab.data.bpe import BpeTokenizer

        return BpeTokenizer.train(texts, vocab_size)
    raise ValueError(f"unknown tokenizer {kind!r}: use char or bpe")
