"""Error rates via jiwer: corpus WER/CER, and per-utterance errors."""

from __future__ import annotations

import math
from dataclasses import dataclass

import jiwer


@dataclass(frozen=True)
class ErrorRates:
    wer: float
    cer: float
    n: int
    empty: int  # hypotheses that are empty while the reference is not

    def to_dict(self) -> dict:
        return {"wer": self.wer, "cer": self.cer, "n": self.n, "empty": self.empty}


def epoch_rank(val_cer: float, val_loss: float) -> tuple[float, float]:
    """How epochs compare (lower is better): validation CER, then validation loss. The loss
    breaks ties, which are common once validation saturates (a small or easy validation set
    at CER 0 for the last third of a run), where the first epoch to reach the floor is the
    least trained of its equals (FSDD's held-out speakers: mean WER 4.85% keeping the first,
    4.55% with the tie broken; docs/benchmarks.md). A non-finite loss ranks last."""
    return val_cer, val_loss if math.isfinite(val_loss) else math.inf


@dataclass(frozen=True)
class UtteranceErrors:
    word_errors: int
    words: int
    char_errors: int
    chars: int


def _pairs(refs: list[str], hyps: list[str]) -> tuple[list[str], list[str]]:
    """jiwer rejects empty references; an empty reference scores against a single space so
    that any hypothesis words still count as insertions."""
    return [r if r.strip() else " " for r in refs], [h if h.strip() else "" for h in hyps]


def error_rates(refs: list[str], hyps: list[str]) -> ErrorRates:
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    if not refs:
        return ErrorRates(0.0, 0.0, 0, 0)
    r, h = _pairs(refs, hyps)
    words = jiwer.process_words(r, h)
    chars = jiwer.process_characters(r, h)
    empty = sum(1 for ref, hyp in zip(refs, hyps) if ref.strip() and not hyp.strip())
    return ErrorRates(float(words.wer), float(chars.cer), len(refs), empty)


def utterance_errors(ref: str, hyp: str) -> UtteranceErrors:
    r, h = _pairs([ref], [hyp])
    w = jiwer.process_words(r, h)
    c = jiwer.process_characters(r, h)
    we = w.substitutions + w.deletions + w.insertions
    ce = c.substitutions + c.deletions + c.insertions
    return UtteranceErrors(we, len(ref.split()), ce, len(ref))
