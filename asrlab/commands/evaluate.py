"""`asrlab evaluate`: WER and CER of a model on a manifest, with a per-utterance file."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from asrlab.commands.decoding import add_decoder_arguments, decoder_options
from asrlab.commands.transcribe import add_audio_limit_arguments, audio_limits


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, type=Path,
                   help="run folder, checkpoint, or exported model.onnx (then torch is not "
                        "loaded)")
    p.add_argument("--data", required=True, type=Path, help="manifest to evaluate on")
    p.add_argument("--out", type=Path, help="report.json path (default: RUN/eval_<manifest>.json)")
    p.add_argument("--allow-missing", action="store_true",
                   help="exit 0 even when some utterances were skipped (missing or unusable "
                        "audio; they are listed in the report either way)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for the acoustic model (torch / onnxruntime intra-op)")
    add_audio_limit_arguments(p, seconds=3600)
    add_decoder_arguments(p)


def default_out(model: Path, data: Path) -> Path:
    folder = model if model.is_dir() else model.parent
    return folder / f"eval_{data.stem}.json"


def run(args) -> int:
    from asrlab.evaluate import evaluate

    out = args.out or default_out(args.model, args.data)
    report = evaluate(args.model, args.data, out, decoder_options(args), audio_limits(args),
                      args.threads)
    print(json.dumps(report.summary(), indent=2))
    print(f"report: {out}\nper-utterance: {report.utterances_path}")
    if not report.skipped:
        return 0
    total = report.n + len(report.skipped)
    print(f"asrlab evaluate: {'warning' if args.allow_missing else 'error'}: "
          f"{len(report.skipped)} of {total} utterance(s) skipped, so the rates cover only "
          f"the other {report.n}; all reasons in {out} (skipped_items):", file=sys.stderr)
    for item in report.skipped[:5]:
        print(f"  {item}", file=sys.stderr)
    if len(report.skipped) > 5:
        print(f"  ... and {len(report.skipped) - 5} more", file=sys.stderr)
    if args.allow_missing:
        return 0
    print("fix or remove them, or pass --allow-missing to accept a partial evaluation",
          file=sys.stderr)
    return 1
