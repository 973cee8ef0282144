"""`asrlab synth`: build a multi-speaker English corpus with text-to-speech
(asrlab.synth.synthesize_corpus)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from asrlab import synth
from asrlab.config import MODEL_NAMES, Config


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the `asrlab synth` options to parser."""
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (new, empty, "
                        "or a previous synthetic corpus to replace)")
    # 3333: with three engines, 1,111 utterances overfit (val CER flat at 0.15-0.20 whatever the
    # recipe); 3,333 reach val CER 0.10 in the 10-minute demo budget (docs/benchmarks.md)
    parser.add_argument("--train", type=int, default=3333, metavar="N",
                        help="train utterances (3333)")
    parser.add_argument("--val", type=int, default=99, metavar="N",
                        help="validation utterances (99)")
    parser.add_argument("--test", type=int, default=300, metavar="N", help="test utterances (300)")
    parser.add_argument("--seed", type=int, default=0, help="seed for sentences and speakers (0)")
    parser.add_argument("--text", metavar="FILE", help="take sentences from this UTF-8 text file "
                        "(one a line, or prose) instead of the built-in generator")
    parser.add_argument("--engines", default=None, metavar="LIST",
                        help=f"comma-separated TTS engines from {', '.join(synth.ENGINES)} "
                             f"(default: every installed one)")
    parser.add_argument("--jobs", type=int, default=2, metavar="N", help="worker processes (2)")
    parser.add_argument("--speakers", type=int, default=64, metavar="N",
                        help="distinct speakers (64)")
    parser.add_argument("--model", choices=MODEL_NAMES, default=None, metavar="NAME",
                        help=f"the model the corpus is for ({', '.join(MODEL_NAMES)}; default: "
                             f"the default config's): no utterance needs more CTC labels a "
                             f"second than its output frame rate allows")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def run(args: argparse.Namespace) -> int:
    """Run `asrlab synth`; prints a summary and returns the exit code."""
    if args.engines is None:
        engines = tuple(synth.available_engines())
        missing = [e for e in synth.ENGINES if e not in engines]
        if missing:
            print(f"note: {', '.join(missing)} not installed; the corpus uses "
                  f"{', '.join(engines)}. To add their voices: {synth.install_command(missing)}",
                  file=sys.stderr)
    else:
        engines = tuple(e.strip() for e in args.engines.replace(" ", ",").split(",") if e.strip())
    config = Config() if args.model is None else Config().merged({"model": {"name": args.model}})
    started = time.perf_counter()
    try:
        manifests = synth.synthesize_corpus(args.out, args.train, args.val, args.test, seed=args.seed,
                                      text_file=args.text, engines=engines, jobs=args.jobs,
                                      progress=not args.no_progress, n_speakers=args.speakers,
                                      config=config)
    except (synth.EngineUnavailable, synth.SynthError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    info = json.loads((Path(args.out) / "corpus.json").read_text(encoding="utf-8"))
    counts, hours, text = info["counts"], info["hours"], info["text_file"]
    if text:
        dropped = ", ".join(f"{n} {why}" for why, n in text["dropped"].items()) or "none"
        print(f"text file {text['path']}: kept {text['kept']} of {text['read']} sentences "
              f"(dropped: {dropped})")
    print(f"synthesized {sum(counts.values())} utterances ({hours['total']:.2f} h, "
          f"{sum(any(s['utterances'].values()) for s in info['speakers'])} speakers, "
          f"{', '.join(engines)}) in "
          f"{time.perf_counter() - started:.0f} s")
    for split, path in manifests.items():
        print(f"  {split:<5} {counts[split]:>6} utterances  {hours[split]:6.2f} h  {path}")
    limit = info["ctc_limit"]
    print(f"  at most {limit['max_labels_per_s']:g} CTC labels a second (for {limit['model']})")
    print(f"  corpus info: {Path(args.out) / 'corpus.json'}")
    return 0
