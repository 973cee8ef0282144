"""Decoders: log-probs (T, V) of one utterance -> Hypothesis.

`DecoderOptions` (frozen, validated) says which decoder; `make_decoder(options, tokenizer)`
builds it, with `decode(log_probs) -> Hypothesis`:

    greedy (default)              GreedyDecoder: best path, blank_penalty
    beam N [lm LM ...]            BeamDecoder (asrlab.decode.beam): prefix beam search, optional
                                  word n-gram LM with lm_weight (alpha) and word_score (beta)

The command-line flags that fill DecoderOptions are in asrlab.commands.decoding (argparse stays
in asrlab/commands). This module imports neither torch nor pyctcdecode (the ONNX path must stay
torch-free and the greedy path light); the beam decoder is imported only when asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

from asrlab.data.tokenizer import Tokenizer
from asrlab.decode.greedy import Hypothesis, greedy_decode

DEFAULT_LM_BEAM = 32  # beam width when an LM is given without a beam width


@dataclass(frozen=True)
class DecoderOptions:
    """blank_penalty: subtracted from the blank log-prob before decoding; beam: None or <= 1
    is greedy (DEFAULT_LM_BEAM with an LM); lm: KenLM model path; lm_weight / word_score: None
    means asrlab.decode.beam's defaults, and need an LM."""
    blank_penalty: float = 0.0
    beam: int | None = None
    lm: str | None = None
    lm_weight: float | None = None
    word_score: float | None = None

    def validate(self) -> "DecoderOptions":
        if self.lm is None and (self.lm_weight is not None or self.word_score is not None):
            raise ValueError("--lm-weight/--word-score need --lm LM (a KenLM model): give --lm, "
                             "or drop the weights")
        return self

    @property
    def greedy(self) -> bool:
        return self.lm is None and (self.beam is None or self.beam <= 1)


class GreedyDecoder:
    def __init__(self, tokenizer: Tokenizer, blank_penalty: float = 0.0):
        self.tokenizer, self.blank_penalty = tokenizer, blank_penalty

    def decode(self, log_probs) -> Hypothesis:
        return greedy_decode(log_probs, len(log_probs), self.tokenizer, self.blank_penalty)


def make_decoder(options: DecoderOptions | None, tokenizer: Tokenizer):
    """Greedy unless beam > 1 or an LM is given. Weights without an LM are an error, not ignored."""
    options = (options or DecoderOptions()).validate()
    if options.greedy:
        return GreedyDecoder(tokenizer, options.blank_penalty)
    from asrlab.decode.beam import DEFAULT_LM_WEIGHT, DEFAULT_WORD_SCORE, BeamDecoder

    return BeamDecoder(tokenizer, beam=options.beam if options.beam else DEFAULT_LM_BEAM,
                       lm=options.lm,
                       lm_weight=DEFAULT_LM_WEIGHT if options.lm_weight is None
                       else options.lm_weight,
                       word_score=DEFAULT_WORD_SCORE if options.word_score is None
                       else options.word_score,
                       blank_penalty=options.blank_penalty)


def describe_decoder(decoder) -> dict:
    """What a decoder does, for reports and the server's /healthz."""
    if isinstance(decoder, GreedyDecoder):
        return {"kind": "greedy", "blank_penalty": decoder.blank_penalty}
    return {"kind": "beam", "beam": decoder.beam,
            "lm": str(decoder.lm_path) if decoder.lm_path else None, "lm_weight": decoder.lm_weight, "word_score": decoder.word_score,
            "blank_penalty": decoder.blank_penalty}


__all__ = ["Hypothesis", "DecoderOptions", "GreedyDecoder", "make_decoder", "describe_decoder"]
