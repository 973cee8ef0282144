"""`asrlab transcribe`: one line per file (`FILE<TAB>TEXT`), or JSON Lines with --json."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from asrlab.decode import add_decoder_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path, help="run folder or checkpoint file")
    p.add_argument("--onnx", type=Path, help="exported model.onnx (onnxruntime only, no torch)")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p.add_argument("--json", action="store_true", help="one JSON object per file")
    add_decoder_arguments(p)


def run(args) -> int:
    from asrlab.audio import AudioError
    from asrlab.transcribe import Transcriber

    if args.model is None and args.onnx is None:
        raise ValueError("--model RUN (a run folder or checkpoint) or --onnx model.onnx is required")
    tr = Transcriber.from_args(args)
    status = 0
    for path in args.files:
        try:
            result = tr.transcribe_file(path)
        except AudioError as e:
            print(f"asrlab transcribe: {e}", file=sys.stderr)
            status = 1
            continue
        if args.json:
            print(json.dumps({"file": str(path), **result}, ensure_ascii=False))
        else:
            print(f"{path}\t{result['text']}")
    return status
