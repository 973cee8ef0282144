"""`asrlab check`: the doctor's pre-flight on the data, without training.

Reads every utterance of both manifests (the same scan `asrlab train` does), prints the
findings most likely cause first, writes `{"findings": [...], "stats": {...}}` with --out, and
exits 1 when any finding is an error (the cases `asrlab train` refuses without --force).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--train", required=True, type=Path, help="training manifest (JSON Lines)")
    p.add_argument("--val", required=True, type=Path, help="validation manifest")
    p.add_argument("--preset", default="default",
                   help="named recipe whose features/model to check against (default, seed-crnn, ...)")
    p.add_argument("--config", type=Path, help="YAML config, applied over the preset")
    p.add_argument("--model", help="model name (its time subsampling decides CTC feasibility)")
    p.add_argument("--out", type=Path, help="write the findings as JSON here")


def load_config(args):
    import yaml

    from asrlab.config import Config, preset

    cfg = preset(args.preset)
    if args.config:  # only the keys the file sets override the preset
        Config.from_yaml(args.config)  # validates the file (unknown keys, types)
        cfg = cfg.merged(yaml.safe_load(args.config.read_text()) or {})
    if args.model:
        cfg = cfg.merged({"model": {"name": args.model}})
    return cfg.validate()


def run(args) -> int:
    from rich.console import Console

    from asrlab.config import ConfigError
    from asrlab.doctor.checks import check_manifests
    from asrlab.doctor.display import print_findings
    from asrlab.doctor.findings import has_errors, rank, write_findings_json

    console = Console(stderr=True)
    try:
        cfg = load_config(args)
    except ConfigError as e:
        console.print(f"[red]config error:[/red] {e}")
        return 2
    report = check_manifests(args.train, args.val, cfg)
    findings = rank(report.findings)
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
