"""Decoders: log-probs (T, V) of one utterance -> Hypothesis.

`add_decoder_arguments` gives every command that decodes the same flags; `make_decoder` turns
them into a decoder object with `decode(log_probs) -> Hypothesis`:

    greedy (default)              GreedyDecoder: best path, --blank-penalty
    --beam N [--lm LM ...]        BeamDecoder (asrlab.decode.beam): prefix beam search, optional
                                  word n-gram LM with --lm-weight (alpha) and --word-score (beta)

This module imports neither torch nor pyctcdecode (the ONNX path must stay torch-free and the
greedy path light); the beam decoder is imported only when asked for.
"""

from __future__ import annotations

import argparse

from asrlab.decode.greedy import Hypothesis, greedy_decode

DEFAULT_LM_BEAM = 32  # beam width when --lm is given without --beam


def add_decoder_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("decoding")
    g.add_argument("--blank-penalty", type=float, default=0.0,
                   help="subtract this from the blank log-prob before decoding (a remedy for "
                        "blank-heavy models; try 1-3)")
    g.add_argument("--beam", type=int, default=None, metavar="N",
                   help=f"beam search with N beams (default: greedy; {DEFAULT_LM_BEAM} with --lm)")
    g.add_argument("--lm", default=None, metavar="LM",
                   help="KenLM word n-gram model (.arpa or .bin; see `asrlab lm build`)")
    g.add_argument("--lm-weight", type=float, default=None, metavar="A",
                   help="LM weight alpha (default 0.5; tune with `asrlab tune-lm`)")
    g.add_argument("--word-score", type=float, default=None, metavar="B",
                   help="bonus per word beta, balancing the LM's pull to short outputs "
                        "(default 1.5)")


class GreedyDecoder:
    def __init__(self, tokenizer, blank_penalty: float = 0.0):
        self.tokenizer, self.blank_penalty = tokenizer, blank_penalty

    def decode(self, log_probs) -> Hypothesis:
        return greedy_decode(log_probs, len(log_probs), self.tokenizer, self.blank_penalty)


def make_decoder(args, tokenizer):
    """Greedy unless --beam > 1 or --lm is given. Weights without --lm are an error, not ignored."""
    blank_penalty = getattr(args, "blank_penalty", 0.0) or 0.0
    beam = getattr(args, "beam", None)
    lm = getattr(args, "lm", None)
    lm_weight = getattr(args, "lm_weight", None)
    word_score = getattr(args, "word_score", None)
    if lm is None and (lm_weight is not None or word_score is not None):
        raise ValueError("--lm-weight/--word-score need --lm LM (a KenLM model)")
    if lm is None and (beam is None or beam <= 1):
        return GreedyDecoder(tokenizer, blank_penalty)
    from asrlab.decode.beam import DEFAULT_LM_WEIGHT, DEFAULT_WORD_SCORE, BeamDecoder

    return BeamDecoder(tokenizer, beam=beam if beam else DEFAULT_LM_BEAM, lm=lm,
                       lm_weight=DEFAULT_LM_WEIGHT if lm_weight is None else lm_weight,
                       word_score=DEFAULT_WORD_SCORE if word_score is None else word_score,
                       blank_penalty=blank_penalty)


def describe_decoder(decoder) -> dict:
    """What a decoder does, for reports and the server's /healthz."""
    if isinstance(decoder, GreedyDecoder):
        return {"kind": "greedy", "blank_penalty": decoder.blank_penalty}
    return {"kind": "beam", "beam": decoder.beam,
            "lm": str(decoder.lm_path) if decoder.lm_path else None, "lm_weight": decoder.lm_weight, "word_score": decoder.word_score,
            "blank_penalty": decoder.blank_penalty}


__all__ = ["Hypothesis", "GreedyDecoder", "add_decoder_arguments", "make_decoder",
           "describe_decoder"]
