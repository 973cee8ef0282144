"""`asrlab transcribe`: one line per file (`FILE<TAB>TEXT`), or JSON Lines with --json."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from asrlab.commands.decoding import add_decoder_arguments, decoder_options


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path, help="run folder or checkpoint file")
    p.add_argument("--onnx", type=Path, help="exported model.onnx (onnxruntime only, no torch)")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p.add_argument("--json", action="store_true", help="one JSON object per file")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for the acoustic model (torch / onnxruntime intra-op)")
    add_audio_limit_arguments(p)
    add_decoder_arguments(p)


def add_audio_limit_arguments(p: argparse.ArgumentParser, seconds: float = 4 * 3600) -> None:
    """--max-audio-seconds / --max-decoded-samples: asrlab.audio.AudioLimits, checked from each
    file's header before decoding (transcribe, evaluate and tune-lm)."""
    p.add_argument("--max-audio-seconds", type=float, default=seconds,
                   help=f"refuse longer audio (default {seconds:g}); long files are read in "
                        f"30 s windows, so memory does not grow with this")
    p.add_argument("--max-decoded-samples", type=int, default=None,
                   help="channels x frames a file may decode to (default: max-audio-seconds x "
                        "96000, i.e. stereo 48 kHz); refuses decompression bombs such as 8 "
                        "channels at 655 kHz")


def audio_limits(args):
    from asrlab.audio import AudioLimits

    return AudioLimits(max_seconds=args.max_audio_seconds,
                       max_decoded_samples=args.max_decoded_samples).validate()


def run(args) -> int:
    from asrlab.audio import AudioError
    from asrlab.transcribe import Transcriber

    if args.model is None and args.onnx is None:
        raise ValueError("--model RUN (a run folder or checkpoint) or --onnx model.onnx is required")
    tr = Transcriber.load(args.onnx or args.model, decoder_options(args), args.threads,
                          audio_limits(args))
    status = 0
    for path, result in zip(args.files, tr.transcribe_files(args.files)):
        if isinstance(result, AudioError):
            print(f"asrlab transcribe: {result}", file=sys.stderr)
            status = 1
            continue
        if args.json:
            print(json.dumps({"file": str(path), **result.to_dict()}, ensure_ascii=False))
        else:
            print(f"{path}\t{result.text}")
    return status
