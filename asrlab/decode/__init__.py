"""Decoders: log-probs (T, V) of one utterance -> Hypothesis.

`add_decoder_arguments` gives every command that decodes the same flags; `make_decoder` turns
them into a decoder object with `decode(log_probs) -> Hypothesis`.
"""

from __future__ import annotations

import argparse

from asrlab.decode.greedy import Hypothesis, greedy_decode


def add_decoder_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--blank-penalty", type=float, default=0.0,
                   help="subtract this from the blank log-prob before decoding (a remedy for "
                        "blank-heavy models; try 1-3)")


class GreedyDecoder:
    def __init__(self, tokenizer, blank_penalty: float = 0.0):
        self.tokenizer, self.blank_penalty = tokenizer, blank_penalty

    def decode(self, log_probs) -> Hypothesis:
        return greedy_decode(log_probs, len(log_probs), self.tokenizer, self.blank_penalty)


def make_decoder(args, tokenizer):
    return GreedyDecoder(tokenizer, getattr(args, "blank_penalty", 0.0) or 0.0)


__all__ = ["Hypothesis", "GreedyDecoder", "add_decoder_arguments", "make_decoder"]
