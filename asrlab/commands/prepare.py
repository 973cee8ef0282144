"""`asrlab prepare FORMAT SRC --out M.jsonl`: convert a corpus to a manifest.

Prints read / written / skipped counts (read = written + skipped) and the first skipped items;
all of them, with reasons, go to M.skipped.jsonl beside the manifest.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from asrlab.data.prepare import READERS, PrepareOptions, prepare

FORMATS = tuple(READERS)  # the formats are the readers asrlab.data.prepare has
SHOWN_SKIPS = 5


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("format", choices=FORMATS, help="corpus layout")
    p.add_argument("src", type=Path,
                   help="; ".join(f"{name}: {reader.src}" for name, reader in READERS.items()))
    p.add_argument("--out", type=Path, required=True, help="manifest to write (.jsonl)")
    p.add_argument("--speakers",
                   help="comma-separated speakers to keep (default: all); e.g. a held-out "
                        "validation set of new voices")
    p.add_argument("--exclude-speakers",
                   help="comma-separated speakers to leave out (e.g. the held-out ones, for "
                        "the training manifest)")
    p.add_argument("--audio-column", help="csv: column with the audio path")
    p.add_argument("--text-column", help="csv: column with the transcript")
    p.add_argument("--duration-column",
                   help="csv: column with durations in seconds (trusted: headers are not read)")
    p.add_argument("--delimiter", help="csv: field delimiter (default: detected; '\\t' for tab)")
    roots = ", ".join(f"{r.root} for {name}" for name, r in READERS.items() if r.root)
    p.add_argument("--root", type=Path,
                   help=f"resolve relative audio paths from this folder (default: {roots})")
    p.add_argument("--split", default="train",
                   help="commonvoice: which SRC/<split>.tsv when SRC is a folder")


def options_from_args(args):
    delimiter = args.delimiter
    if delimiter in ("\\t", "tab", "TAB"):
        delimiter = "\t"
    return PrepareOptions(speakers=speaker_list(args.speakers),
                          exclude_speakers=speaker_list(args.exclude_speakers),
                          audio_column=args.audio_column,
                          text_column=args.text_column, duration_column=args.duration_column,
                          delimiter=delimiter, root=args.root, split=args.split)


def speaker_list(text: str | None) -> tuple[str, ...] | None:
    return tuple(s.strip() for s in text.split(",") if s.strip()) if text else None


def run(args) -> int:
    result = prepare(args.format, args.src, args.out, options_from_args(args))
    print(f"{result.manifest}: {result.summary()}")
    if result.skipped:
        print(f"skipped items (all {len(result.skipped)} in {result.skipped_path}):")
        for s in result.skipped[:SHOWN_SKIPS]:
            print(f"  {s.id} ({s.source}): {s.reason}")
        if len(result.skipped) > SHOWN_SKIPS:
            print(f"  ... and {len(result.skipped) - SHOWN_SKIPS} more")
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    return 0 if result.written else 1
