"""Tokenizers: text <-> token ids, with the CTC blank at id 0.

`CharTokenizer` (default) takes its symbols from the training text. `BpeTokenizer` wraps
SentencePiece (trained in memory, imported only when a BPE tokenizer is made); its model bytes
travel inside the checkpoint. Both round-trip through `to_dict()` / `tokenizer_from_dict()` so
that a checkpoint needs nothing else. Code that takes either is typed with the `Tokenizer`
protocol; both derive from `BaseTokenizer`, which refuses out-of-vocabulary text in `encode`.
"""

from __future__ import annotations

import base64
import io
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


class BaseTokenizer:
    """The blank at id 0, an id per piece (`vocab_size`), and `encode`: text with characters
    outside the vocabulary (`oov`) is refused with a KeyError naming them, the rest mapped by
    the subclass's `ids`."""
    kind: str
    blank = 0

    @property
    def pieces(self) -> list[str]:
        raise NotImplementedError

    @property
    def vocab_size(self) -> int:
        return len(self.pieces)

    def oov(self, text: str) -> set[str]:
        raise NotImplementedError

    def ids(self, text: str) -> list[int]:
        """The ids of text that `oov` passed."""
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        missing = self.oov(text)
        if missing:
            raise KeyError(f"characters not in the vocabulary: {''.join(sorted(missing))!r}")
        return self.ids(text)


class CharTokenizer(BaseTokenizer):
    kind = "char"

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
    def pieces(self) -> list[str]:
        """Each id's string (the symbols), the blank first."""
        return list(self.symbols)

    def oov(self, text: str) -> set[str]:
        return {ch for ch in text if ch not in self.index}

    def ids(self, text: str) -> list[int]:
        return [self.index[ch] for ch in text]

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.symbols[i] for i in ids if i != self.blank)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "symbols": self.symbols}


class BpeTokenizer(BaseTokenizer):
    """BPE for CTC, backed by SentencePiece.

    Ids: 0 is the CTC blank; SentencePiece piece `p` has id `p + 1`. `vocab_size` counts the
    blank, so `--vocab-size 64` gives a model with 64 outputs, like `CharTokenizer.vocab_size`.

    SentencePiece is used as it is: BPE model, `character_coverage=1.0` (every character of the
    training text stays representable), no BOS/EOS, identity normalization (the text is already
    normalized by `asrlab.data.text.TextNormalizer`; a second, hidden normalization here would
    make `decode(encode(text)) != text`). `hard_vocab_limit=False` lets a small corpus train a
    smaller vocabulary instead of failing.
    """
    kind = "bpe"

    def __init__(self, model_proto: bytes):
        import sentencepiece as spm

        self.model_proto = bytes(model_proto)
        self.sp = spm.SentencePieceProcessor(model_proto=self.model_proto)
        self._unk = self.sp.unk_id()

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 256) -> "BpeTokenizer":
        """Train on `texts`; `vocab_size` includes the blank (SentencePiece gets one less)."""
        import sentencepiece as spm

        texts = [t for t in texts if t.strip()]
        if not texts:
            raise ValueError("no training text to build a BPE vocabulary from")
        chars = len({ch for t in texts for ch in t if not ch.isspace()})
        pieces = vocab_size - 1
        if pieces < chars + 2:  # unk + word boundary + every character, at least
            raise ValueError(f"vocab_size {vocab_size} is too small for the {chars} distinct "
                             f"characters of the training text: use at least {chars + 3}")
        buf = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts), model_writer=buf, vocab_size=pieces,
            model_type="bpe", character_coverage=1.0, unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1,
            hard_vocab_limit=False, normalization_rule_name="identity", num_threads=1,
            minloglevel=2)
        return cls(buf.getvalue())

    @property
    def pieces(self) -> list[str]:
        """Piece strings by id, the blank first (Tokenizer.pieces)."""
        return [BLANK] + [self.sp.id_to_piece(i) for i in range(self.sp.get_piece_size())]

    def oov(self, text: str) -> set[str]:
        """Characters that no piece covers (they would encode to <unk>)."""
        return {ch for ch in set(text) if not ch.isspace() and self.sp.piece_to_id(ch) == self._unk}

    def ids(self, text: str) -> list[int]:
        return [i + 1 for i in self.sp.encode(text)]

    def decode(self, ids: Iterable[int]) -> str:
        return self.sp.decode([int(i) - 1 for i in ids if int(i) != self.blank])

    def to_dict(self) -> dict:
        return {"kind": self.kind, "model": base64.b64encode(self.model_proto).decode("ascii")}

    @classmethod
    def from_dict(cls, d: dict) -> "BpeTokenizer":
        if d.get("kind") != cls.kind or "model" not in d:
            raise ValueError("not a BPE tokenizer description (kind 'bpe' with 'model' expected)")
        return cls(base64.b64decode(d["model"]))


def tokenizer_from_dict(d: dict) -> Tokenizer:
    if d["kind"] == "char":
        return CharTokenizer(d["symbols"])
    if d["kind"] == "bpe":
        return BpeTokenizer.from_dict(d)
    raise ValueError(f"unknown tokenizer kind {d['kind']!r}")


def build_tokenizer(kind: str, texts: list[str], vocab_size: int = 256) -> Tokenizer:
    if kind == "char":
        return CharTokenizer.train(texts)
    if kind == "bpe":
        return BpeTokenizer.train(texts, vocab_size)
    raise ValueError(f"unknown tokenizer {kind!r}: use char or bpe")
