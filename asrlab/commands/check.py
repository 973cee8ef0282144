"""`asrlab check`: the doctor's pre-flight on the data, without training.

Takes every flag of `asrlab train` that changes what is checked (asrlab.commands.run_flags:
--preset, --config, --model, --tokenizer, --vocab-size, --set, --init-from, --recompute-cmvn),
resolves the same config and runs the same scan and checks as train's pre-flight
(asrlab.preflight), prints the findings most likely cause first, writes
`{"findings": [...], "stats": {...}}` with --out, and exits 1 when any finding is an error (the
cases `asrlab train` refuses without --force).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from asrlab.commands import run_flags


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--train", required=True, type=Path, help="training manifest (JSON Lines)")
    p.add_argument("--val", required=True, type=Path, help="validation manifest")
    run_flags.add_arguments(p)
    p.add_argument("--out", type=Path, help="write the findings as JSON here")


def run(args) -> int:
    from rich.console import Console

    from asrlab.config import ConfigError
    from asrlab.doctor.display import print_findings
    from asrlab.doctor.findings import has_errors, write_findings_json
    from asrlab.preflight import TrainingRefused, check_manifests

    console = Console(stderr=True)
    try:
        cfg = run_flags.config_from_args(args).validate()
    except ConfigError as e:
        console.print(f"[red]config error:[/red] {e}")
        return 2
    try:
        report = check_manifests(args.train, args.val, cfg)
    except TrainingRefused as e:  # --init-from: the source model cannot start this run
        console.print(f"[red]cannot check:[/red] {e}")
        return 1
    findings = report.findings  # ranked
    print_findings(findings, console, title=f"asrlab check: {args.train.name} / {args.val.name}")
    for split in ("train", "val"):
        s = report.stats.get(split)
        if s:
            console.print(f"{split}: {s['used']} used, {s['skipped']} skipped of {s['read']}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_findings_json(args.out, findings, stats=json.loads(json.dumps(report.stats, default=float)))
        console.print(f"findings: {args.out}")
    return 1 if has_errors(findings) else 0
