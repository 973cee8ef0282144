"""`asrlab lm build`: a word n-gram LM (KenLM ARPA, + binary when KenLM's tools exist) from text or
manifests; `asrlab lm score`: its perplexity on other text (e.g. the validation transcripts)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="lm_action", metavar="ACTION")
    b = sub.add_parser("build", help="estimate an interpolated modified Kneser-Ney n-gram LM")
    b.add_argument("--text", required=True, nargs="+", type=Path, metavar="FILE",
                   help="text (one sentence a line) or manifest(s) (.jsonl: their text fields)")
    b.add_argument("--order", type=int, default=3, help="n-gram order (default 3)")
    b.add_argument("--out", required=True, type=Path, metavar="LM",
                   help="output: LM.arpa (+ LM.bin, LM.unigrams.txt beside it)")
    b.add_argument("--no-binary", action="store_true", help="skip KenLM's binary format")
    s = sub.add_parser("score", help="perplexity of an LM on text or a manifest")
    s.add_argument("--lm", required=True, type=Path)
    s.add_argument("--text", required=True, nargs="+", type=Path, metavar="FILE")
    for q in (b, s):
        q.add_argument("--model", type=Path, metavar="RUN",
                       help="normalize the text with this model's text rules (run folder, "
                            "checkpoint or model.onnx): the LM then spells words as the model does")
        q.add_argument("--preset", default="default",
                       help="without --model: the text rules of this preset (default: default)")
        q.add_argument("--config", type=Path,
                       help="without --model: the text rules of this YAML config (its `text:`)")


def text_normalizer(args):
    """The model's text rules (--model), else the config's (--config over --preset)."""
    if args.model is not None:
        if args.config is not None:
            raise ValueError("give --model (the model's text rules) or --config, not both")
        from asrlab.model_loader import load_recognizer

        return load_recognizer(args.model).text_normalizer
    from asrlab.preflight import resolve_config

    return resolve_config(args.preset, args.config).validate().text


def run(args) -> int:
    if args.lm_action == "build":
        from asrlab.decode.lm import build_lm

        report = build_lm(args.text, args.order, args.out, binary=not args.no_binary,
                          normalizer=text_normalizer(args))
        print(json.dumps(report.summary(), indent=2))
        return 0
    if args.lm_action == "score":
        return score(args)
    raise ValueError("use `asrlab lm build ...` or `asrlab lm score ...` (see asrlab lm --help)")


def score(args) -> int:
    """Perplexity per word (with </s>), and the out-of-vocabulary rate: the two numbers that say
    whether an LM fits a test set before any decoding."""
    from asrlab.decode.lm import load_lm, read_sentences

    lm = load_lm(args.lm)
    vocab = set(lm.unigrams)
    normalizer = text_normalizer(args)
    log10_sum, tokens, oov, words = 0.0, 0, 0, 0
    for path in args.text:
        for sent in read_sentences(path, normalizer):
            log10_sum += lm.model.score(" ".join(sent), bos=True, eos=True)
            tokens += len(sent) + 1
            words += len(sent)
            oov += sum(w not in vocab for w in sent)
    if not tokens:
        raise ValueError("no sentences to score")
    print(json.dumps({"lm": str(args.lm), "sentences_words": words,
                      "perplexity": round(10 ** (-log10_sum / tokens), 3),
                      "oov_rate": round(oov / max(words, 1), 4),
                      "log10_prob": round(log10_sum, 3),
                      "bits_per_word": round(-log10_sum / tokens * math.log2(10), 3)}, indent=2))
    return 0
