"""`asrlab export`: a run -> model.onnx (vocabulary, features and CMVN inside), parity-checked.

Exits non-zero, with the numbers, when ONNX log-probs differ from PyTorch by more than the
tolerance on real utterances (the run's validation manifest, or --data)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, type=Path, help="run folder or checkpoint file")
    p.add_argument("--out", required=True, type=Path, help="model.onnx to write")
    p.add_argument("--data", type=Path,
                   help="manifest whose utterances check parity (default: the run's val manifest "
                        "when the checkpoint records it)")
    p.add_argument("--utterances", type=int, default=8, help="how many to check (default 8)")
    p.add_argument("--tolerance", type=float, default=1e-4,
                   help="max |log-prob difference| allowed (default 1e-4)")


def run(args) -> int:
    import torch

    from asrlab.export import ParityError, export_onnx

    torch.set_num_threads(1)
    try:
        result = export_onnx(args.model, args.out, args.data, args.utterances, args.tolerance)
    except ParityError as e:
        print(f"asrlab export: PARITY FAILED: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result.summary(), indent=2))
    return 0
