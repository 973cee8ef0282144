"""Findings on a terminal (rich): one table, most likely cause first, remedies included."""

from __future__ import annotations

from typing import Iterable

from rich.console import Console
from rich.table import Table

from asrlab.doctor.findings import Finding, rank

STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def evidence_line(f: Finding, limit: int = 160) -> str:
    """The evidence's headline numbers and first ids, short enough for a table cell."""
    keep = {k: v for k, v in f.evidence.items() if not isinstance(v, dict)}
    ids = keep.pop("ids", None)
    text = ", ".join(f"{k}={v}" for k, v in keep.items() if not isinstance(v, list))
    if ids:
        text += f"; ids: {', '.join(map(str, ids[:5]))}" + (" ..." if len(ids) > 5 else "")
    return text if len(text) <= limit else text[:limit - 3] + "..."


def print_findings(findings: Iterable[Finding], console: Console | None = None,
                   title: str = "doctor") -> None:
    console = console or Console(stderr=True)
    findings = rank(findings)
    if not findings:
        console.print(f"[green]{title}: no problems found[/green]")
        return
    table = Table(title=title, show_lines=True, expand=True)
    table.add_column("severity", no_wrap=True)
    table.add_column("code", no_wrap=True)
    table.add_column("what", ratio=3)
    table.add_column("fix", ratio=2)
    for f in findings:
        table.add_row(f"[{STYLE[f.severity]}]{f.severity}[/]", f.code,
                      f"{f.message}\n[dim]{evidence_line(f)}[/dim]", f.remedy)
    console.print(table)
    counts = {s: sum(1 for f in findings if f.severity == s) for s in STYLE}
    console.print(", ".join(f"{n} {s}(s)" for s, n in counts.items() if n))

