"""Greedy (best-path) CTC decoding: argmax per frame, merge repeats, drop blanks."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from asrlab.data.tokenizer import Tokenizer


@dataclass(frozen=True)
class Hypothesis:
    text: str
    tokens: list[int]  # token ids after collapsing
    frames: list[int] = field(default_factory=list)  # encoder frame where each token starts
    score: float = 0.0  # log-probability of the best path


def collapse(path: np.ndarray, blank: int = 0) -> tuple[list[int], list[int]]:
    """Best path (T,) -> (tokens, start frames)."""
    tokens, frames, prev = [], [], blank
    for t, p in enumerate(path.tolist()):
        if p != blank and p != prev:
            tokens.append(p)
            frames.append(t)
        prev = p
    return tokens, frames


def penalize_blank(log_probs: np.ndarray, blank: int, blank_penalty: float) -> np.ndarray:
    """(T, V) float32 with `blank_penalty` subtracted from the blank column (a copy when it
    changes anything): the decode-time remedy for blank-heavy models, the same for the greedy
    and beam decoders and for word timing."""
    lp = np.asarray(log_probs, dtype=np.float32)
    if blank_penalty:
        lp = lp.copy()
        lp[:, blank] -= blank_penalty
    return lp


def best_path(log_probs: np.ndarray, blank: int, blank_penalty: float = 0.0) -> np.ndarray:
    """The greedy decoder's path (T,): argmax per frame after the blank penalty."""
    return penalize_blank(log_probs, blank, blank_penalty).argmax(axis=1)


def greedy_decode(log_probs: np.ndarray, length: int, tokenizer: Tokenizer,
                  blank_penalty: float = 0.0) -> Hypothesis:
    """log_probs (T, V) of one utterance -> Hypothesis. `blank_penalty` is subtracted from the
    blank log-prob first (a decode-time remedy for blank-heavy models)."""
    lp = penalize_blank(log_probs[:length], tokenizer.blank, blank_penalty)
    path = lp.argmax(axis=1)  # (T,)
    tokens, frames = collapse(path, tokenizer.blank)
    score = float(lp[np.arange(len(path)), path].sum())
    return Hypothesis(tokenizer.decode(tokens), tokens, frames, score)


def greedy_batch(log_probs, lengths, tokenizer: Tokenizer, blank_penalty: float = 0.0
                 ) -> list[Hypothesis]:
    """log_probs (B, T, V) array or tensor, lengths (B,) -> one Hypothesis per utterance."""
    lp = np.asarray(log_probs.detach().cpu() if hasattr(log_probs, "detach") else log_probs)
    lens = np.asarray(lengths.cpu() if hasattr(lengths, "cpu") else lengths)
    return [greedy_decode(lp[b], int(lens[b]), tokenizer, blank_penalty) for b in range(len(lp))]
