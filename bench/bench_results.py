"""The benchmarks' results writer: OUT/NAME.json (the rows as data) and OUT/NAME.md (the table
for docs/benchmarks.md), used by every bench script that keeps a table."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path


def write_results(folder: Path, data, table: str, name: str = "results") -> str:
    """Write `data` (JSON values and dataclasses) as NAME.json and `table` as NAME.md in folder;
    returns the table, to print."""
    (folder / f"{name}.json").write_text(json.dumps(data, indent=2, default=asdict))
    (folder / f"{name}.md").write_text(table + "\n")
    return table
