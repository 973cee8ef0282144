"""CTC prefix beam search with an optional word n-gram LM (shallow fusion), via pyctcdecode.

    dec = BeamDecoder(tokenizer, beam=32, lm="lm.arpa", lm_weight=0.5, word_score=1.5)
    hyp = dec.decode(log_probs)        # BeamHypothesis: text, word_frames, scores

Why pyctcdecode (over flashlight-text): it is already a dependency, pure Python (nothing to
compile), reads KenLM ARPA/binary models, handles character and BPE (▁) vocabularies, and returns
each word's frame span, which word timestamps need. Its speed is ample for a CTC model at 25
frames/s (see bench/decode_rtf.py).

Score of a prefix: acoustic log-prob + lm_weight * ln P_LM(words) + word_score * #words, with
out-of-vocabulary words penalized by pyctcdecode's unk offset (-10 in log10 LM units).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asrlab.data.tokenizer import Tokenizer
from asrlab.decode.greedy import Hypothesis, penalize_blank

DEFAULT_BEAM = 32
DEFAULT_LM_WEIGHT = 0.5
DEFAULT_WORD_SCORE = 1.5
BPE_MARK = "▁"


@dataclass(frozen=True)
class BeamHypothesis(Hypothesis):
    """A Hypothesis plus each word's frame span [start, end) from the winning beam.
    `frames` (per-token start frames) stays empty: prefix beam search tracks words, not tokens."""
    word_frames: tuple[tuple[str, int, int], ...] = ()
    total_score: float = 0.0  # acoustic + LM + word score, what the beam was ranked by


def decoder_labels(tokenizer: Tokenizer) -> tuple[list[str], bool]:
    """pyctcdecode's labels for our vocabulary: blank -> "", other symbols as they are; and
    whether the vocabulary is BPE (SentencePiece pieces, word starts marked with ▁)."""
    symbols = tokenizer.pieces
    labels = ["" if i == tokenizer.blank else s for i, s in enumerate(symbols)]
    is_bpe = (getattr(tokenizer, "kind", "char") == "bpe"
              or any(s.startswith(BPE_MARK) for s in labels))
    if len(set(labels)) != len(labels):
        raise ValueError("the vocabulary has duplicate symbols; beam search needs unique labels")
    if not is_bpe and " " not in labels:
        logging.getLogger(__name__).warning(
            "the vocabulary has no space symbol: beam search will see one long word")
    return labels, is_bpe


class BeamDecoder:
    """`decode(log_probs (T, V)) -> BeamHypothesis`. Thread-safe for decoding (per-call state);
    `set_weights` changes the LM weights for every later call (tune-lm uses it)."""

    def __init__(self, tokenizer: Tokenizer, beam: int = DEFAULT_BEAM, lm: str | Path | None = None,
                 lm_weight: float = DEFAULT_LM_WEIGHT, word_score: float = DEFAULT_WORD_SCORE,
                 blank_penalty: float = 0.0, prune_logp: float = -10.0,
                 token_min_logp: float = -5.0):
        from pyctcdecode.alphabet import Alphabet
        from pyctcdecode.decoder import BeamSearchDecoderCTC
        from pyctcdecode.language_model import LanguageModel

        if beam < 1:
            raise ValueError(f"--beam {beam}: use a beam width of 1 or more")
        self.tokenizer = tokenizer
        self.beam, self.blank_penalty = beam, blank_penalty
        self.prune_logp, self.token_min_logp = prune_logp, token_min_logp
        self.lm_path = Path(lm) if lm else None
        self.lm_weight, self.word_score = lm_weight, word_score
        labels, is_bpe = decoder_labels(tokenizer)
        language_model = None
        if lm:
            from asrlab.decode.lm import load_lm

            loaded = load_lm(lm)
            _quiet_pyctcdecode()
            language_model = LanguageModel(loaded.model, loaded.unigrams, alpha=float(lm_weight),
                                           beta=float(word_score))
        self._decoder = BeamSearchDecoderCTC(Alphabet(labels, is_bpe), language_model)

    def set_weights(self, lm_weight: float, word_score: float) -> None:
        self.lm_weight, self.word_score = lm_weight, word_score
        self._decoder.reset_params(alpha=float(lm_weight), beta=float(word_score))

    def decode(self, log_probs: np.ndarray) -> BeamHypothesis:
        lp = penalize_blank(log_probs, self.tokenizer.blank, self.blank_penalty)
        if len(lp) == 0:
            return BeamHypothesis("", [], [])
        beams = self._decoder.decode_beams(lp, beam_width=self.beam,
                                           beam_prune_logp=self.prune_logp,
                                           token_min_logp=self.token_min_logp)
        text, _, word_frames, acoustic, total = beams[0]
        return BeamHypothesis(text, self._token_ids(text), [], float(acoustic),
                              tuple((w, int(s), int(e)) for w, (s, e) in word_frames),
                              float(total))

    def _token_ids(self, text: str) -> list[int]:
        try:
            return list(self.tokenizer.encode(text))
        except (KeyError, ValueError):  # cannot happen for a char vocabulary; be safe for BPE
            return []

    def close(self) -> None:
        """Release the LM reference pyctcdecode keeps in a class-level registry."""
        self._decoder.cleanup()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def _quiet_pyctcdecode() -> None:
    """pyctcdecode warns about small unigram lists (every toy or domain LM); not actionable."""
    logging.getLogger("pyctcdecode.language_model").setLevel(logging.ERROR)
    logging.getLogger("pyctcdecode.decoder").setLevel(logging.ERROR)
