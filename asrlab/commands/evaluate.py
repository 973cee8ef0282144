"""`asrlab evaluate`: WER and CER of a model on a manifest, with a per-utterance file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from asrlab.decode import add_decoder_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, type=Path, help="run folder or checkpoint file")
    p.add_argument("--data", required=True, type=Path, help="manifest to evaluate on")
    p.add_argument("--out", type=Path, help="report.json path (default: RUN/eval_<manifest>.json)")
    add_decoder_arguments(p)


def default_out(model: Path, data: Path) -> Path:
    folder = model if model.is_dir() else model.parent
    return folder / f"eval_{data.stem}.json"


def run(args) -> int:
    from asrlab.evaluate import evaluate

    out = args.out or default_out(args.model, args.data)
    report = evaluate(args.model, args.data, out, args)
    print(json.dumps(report.summary(), indent=2))
    print(f"report: {out}\nper-utterance: {report.utterances_path}")
    return 0
