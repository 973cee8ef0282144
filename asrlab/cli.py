"""The one entry point: `asrlab VERB ...` (also `python -m asrlab VERB ...`).

Each verb lives in its own module with `add_arguments(parser)` and `run(args) -> int`; this file
only routes, and imports a verb's module only when that verb runs (so `asrlab --help` is fast and
the ONNX path never imports torch).
"""

from __future__ import annotations

import argparse
import importlib
import sys

# verb -> (module, one-line help)
VERBS = {
    "synth": ("asrlab.commands.synth", "synthesize a multi-speaker English corpus with TTS"),
    "prepare": ("asrlab.commands.prepare", "convert a corpus to a manifest (`asrlab prepare -h` lists the layouts)"),
    "check": ("asrlab.commands.check", "check data before training (the doctor's pre-flight)"),
    "train": ("asrlab.commands.train", "train a CTC model"),
    "evaluate": ("asrlab.commands.evaluate", "WER/CER of a model on a manifest"),
    "transcribe": ("asrlab.commands.transcribe", "transcribe audio files"),
    "diagnose": ("asrlab.commands.diagnose", "diagnose a run: trends, predictions, per-frame output"),
    "lm": ("asrlab.commands.lm", "build an n-gram language model"),
    "tune-lm": ("asrlab.commands.tune_lm", "grid-search LM weight and word score"),
    "export": ("asrlab.commands.export", "export a model to ONNX (checks parity)"),
    "serve": ("asrlab.commands.serve", "HTTP server with a web page"),
    "encoders": ("asrlab.commands.encoders", "list the pretrained speech encoders (Whisper, wav2vec2, ...) found"),
}


def build_parser(verbs: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asrlab", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for verb, (module, help_text) in VERBS.items():
        p = sub.add_parser(verb, help=help_text, description=help_text)
        if verbs is None or verb in verbs:
            try:
                importlib.import_module(module).add_arguments(p)
            except ModuleNotFoundError as e:
                if e.name != module:
                    raise
                p.set_defaults(_missing=module)
    return parser


def _version() -> str:
    from asrlab import __version__

    return f"asrlab {__version__}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    verb = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser([verb] if verb in VERBS else [])
    args = parser.parse_args(argv)
    if args.verb is None:
        parser.print_help()
        return 2
    if getattr(args, "_missing", None):
        print(f"asrlab {args.verb}: not available in this installation", file=sys.stderr)
        return 2
    module = importlib.import_module(VERBS[args.verb][0])
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError) as e:  # user errors: one clear line, no traceback
        print(f"asrlab {args.verb}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
