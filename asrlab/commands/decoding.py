"""The decoding flags every command that decodes shares (transcribe, evaluate, serve), and
their translation to asrlab.decode.DecoderOptions."""

from __future__ import annotations

import argparse

from asrlab.decode import DEFAULT_LM_BEAM, DecoderOptions


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


def decoder_options(args: argparse.Namespace) -> DecoderOptions:
    """The flags of add_decoder_arguments as validated DecoderOptions."""
    return DecoderOptions(blank_penalty=args.blank_penalty or 0.0, beam=args.beam,
                          lm=None if args.lm is None else str(args.lm),
                          lm_weight=args.lm_weight, word_score=args.word_score).validate()
