"""`asrlab diagnose RUN`: why a run behaves as it does, and what to do about it.

Replays the run's history, runs its checkpoint on the data (default: the run's validation
manifest from RUN/run.json), prints the findings and a sample of reference vs prediction with
per-frame statistics, and writes RUN/diagnosis.md, RUN/diagnosis.html (plots embedded) and
RUN/diagnosis.json (`{"findings": [...], "stats": {...}}`).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", type=Path, metavar="RUN", help="run folder (asrlab train --out)")
    p.add_argument("--data", type=Path, help="manifest to run the model on (default: the run's val)")
    p.add_argument("--checkpoint", default="last",
                   help="last (default: the state training ended in), best, average (the mean "
                        "of the best epochs, when training kept it), or a .pt path")
    p.add_argument("--samples", type=int, default=10, help="utterances shown as ref vs prediction")
    p.add_argument("--max-utts", type=int, default=200, help="utterances the model runs on")
    p.add_argument("--blank-penalty", type=float, default=2.0,
                   help="blank penalty tried at decode time to see what it salvages")
    p.add_argument("--out", type=Path, help="folder for the reports (default: RUN)")
    p.add_argument("--fail-on-error", action="store_true",
                   help="exit 1 when a finding is an error (for CI)")


def shown(text: str) -> str:
    if text.strip():
        return text
    return "[dim](empty)[/dim]" if not text else f"[dim]({len(text)} spaces only)[/dim]"


def run(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from asrlab.doctor.diagnose import diagnose
    from asrlab.doctor.display import print_findings
    from asrlab.doctor.findings import has_errors
    from asrlab.doctor.report import write_reports

    console = Console()
    if not console.is_terminal:  # logs and pipes: wide enough for the tables
        console = Console(width=160)
    diag = diagnose(args.run, args.data, args.checkpoint, args.max_utts, args.samples,
                    args.blank_penalty)
    print_findings(diag.findings, console, title=f"asrlab diagnose {args.run}")
    if diag.utterances:
        t = Table(title="reference vs prediction (per-frame statistics)", expand=True)
        for col in ("id", "reference", "prediction", f"blank pen. {args.blank_penalty:g}",
                    "blank wins", "P(blank)", "max P(nb)", "ids"):
            t.add_column(col)
        for u in diag.utterances[:args.samples]:
            t.add_row(u.id, u.ref, shown(u.hyp), shown(u.hyp_penalized), f"{u.blank_wins:.0%}",
                      f"{u.blank_prob_mean:.2f}", f"{u.max_nonblank_mean:.3f}",
                      str(len(u.unique_ids)))
        console.print(t)
    paths = write_reports(diag, args.out)
    console.print("reports: " + "  ".join(str(p) for p in paths.values()))
    return 1 if args.fail_on_error and has_errors(diag.findings) else 0
