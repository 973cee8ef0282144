"""Is a held-out FSDD speaker's error his speaking rate? A fold's trained model on his
recordings time-stretched at test time (WSOLA, pitch kept: asrlab.data.augment.time_stretch).

    python bench/fsdd.py --encoder whisper-tiny.en --layers-trained 2 --minutes 0 --epochs 15 \
        --threads 1 --held-out nicolas --out OUT --set features.pad_end_s=0.4
    python bench/fsdd_tempo.py OUT/held_out_nicolas --rates 1.0,0.75,0.6,1.3

A rate below 1 slows the recordings (0.6: a 0.27-s word lasts 0.45 s). Each rate is scored greedy
and with the fold's digit LM (bench/fsdd.py's), on the fold's test_single.jsonl; writes
FOLD/tempo.json and FOLD/tempo.md and prints the table (docs/benchmarks.md, "nicolas's six").
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench_results import write_results  # bench/bench_results.py, beside this script
from fsdd import SR, checked, digit_lm, read_rows, rewritten, write_rows

from asrlab.data.augment import time_stretch
from asrlab.evaluate import evaluate


def stretched(rows: list[dict], rate: float, out_dir: Path) -> Path:
    """The recordings of `rows` time-stretched by `rate`, written at FSDD's rate; their manifest."""
    out = rewritten(rows, out_dir, lambda wave: time_stretch(wave, rate, SR))
    return write_rows(out_dir / "test_single.jsonl", out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("fold", type=Path, help="a fold folder of bench/fsdd.py (OUT/held_out_NAME)")
    p.add_argument("--rates", default="1.0,0.75,0.6,1.3",
                   help="comma-separated tempo factors (below 1: slower)")
    args = p.parse_args(argv)
    rows = read_rows(args.fold / "test_single.jsonl")
    lm = digit_lm(args.fold / "train.jsonl", args.fold)
    results = []
    for rate in (float(r) for r in args.rates.split(",")):
        manifest = stretched(rows, rate, args.fold / f"tempo_{rate:g}")
        greedy = checked(evaluate(args.fold / "run", manifest, None))  # no file skipped
        with_lm = checked(evaluate(args.fold / "run", manifest, None, lm))
        results.append({"rate": rate, "n": greedy.n, "wer": greedy.wer, "wer_lm": with_lm.wer})
    table = "\n".join(["| tempo (below 1: slower) | n | WER single | single, LM |",
                       "|---:|---:|---:|---:|"] +
                      [f"| {r['rate']:g} | {r['n']} | {100 * r['wer']:.1f}% | "
                       f"{100 * r['wer_lm']:.1f}% |" for r in results])
    print(write_results(args.fold, results, table, "tempo"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
