"""Conformer vs the default CRNN at equal wall time on the default corpus.

Both runs start together (one CPU thread each) so they see the same machine load, train for
--minutes of wall time, then the best checkpoint of each is evaluated on the test split.

    python bench/conformer_vs_default.py --corpus data/default --minutes 10

Writes OUT/results.json and OUT/results.md and prints the markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench_results import write_results  # bench/bench_results.py, beside this script

# model name -> extra overrides. The conformer gets the usual Conformer dropout (0.1); the
# shared default (0.25) is tuned for the CRNN.
MODELS = {"crnn-sub4": [], "conformer": ["--set", "model.dropout=0.1"]}


@dataclass
class ModelResult:
    model: str
    params_m: float
    epochs: int
    updates: int
    audio_s_per_s: float
    best_val_cer: float
    test_cer: float
    test_wer: float


def train_command(model: str, corpus: Path, run: Path, args) -> list[str]:
    return [sys.executable, "-m", "asrlab", "train", "--train", str(corpus / "train.jsonl"),
            "--val", str(corpus / "val.jsonl"), "--out", str(run), "--model", model,
            "--epochs", "200", "--max-minutes", str(args.minutes), "--threads", "1",
            "--no-progress", "--seed", str(args.seed), *MODELS[model]]


def summarize(model: str, run: Path, corpus: Path) -> ModelResult:
    from asrlab.checkpoint import load
    from asrlab.evaluate import evaluate

    metrics = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    report = evaluate(run, corpus / "test.jsonl", run / "test.report.json")
    params = sum(p.numel() for p in load(run).model.parameters()) / 1e6
    return ModelResult(model, round(params, 2), len(metrics), metrics[-1]["step"],
                       round(sum(m["audio_seconds_per_s"] for m in metrics) / len(metrics), 1),
                       min(m["val_cer"] for m in metrics), report.cer, report.wer)


def markdown(results: list[ModelResult], minutes: float) -> str:
    lines = [f"| model ({minutes:g} min, 1 thread) | params | epochs / updates | audio-s/s "
             "| best val CER | test CER | test WER |", "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.model} | {r.params_m:.2f} M | {r.epochs} / {r.updates} | "
                     f"{r.audio_s_per_s:.0f} | {100 * r.best_val_cer:.1f}% | "
                     f"{100 * r.test_cer:.1f}% | {100 * r.test_wer:.1f}% |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=Path, default=Path("/tmp/synth_default"),
                   help="folder with train.jsonl, val.jsonl, test.jsonl")
    p.add_argument("--out", type=Path, default=Path("/tmp/conformer_vs_default"))
    p.add_argument("--minutes", type=float, default=4.0, help="wall time per model")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    for split in ("train", "val", "test"):
        if not (args.corpus / f"{split}.jsonl").is_file():
            p.error(f"{args.corpus / f'{split}.jsonl'} not found: make the corpus first "
                    "(asrlab synth ...)")
    args.out.mkdir(parents=True, exist_ok=True)
    procs = {}
    for model in MODELS:  # started together: equal wall time under the same load
        cmd = train_command(model, args.corpus, args.out / model, args)
        print(" ".join(cmd[1:]), flush=True)
        log = open(args.out / f"{model}.log", "w")
        procs[model] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log)
    for model, (proc, log) in procs.items():
        if proc.wait() != 0:
            raise SystemExit(f"{model} training failed: see {args.out / (model + '.log')}")
        log.close()
    import torch

    torch.set_num_threads(1)
    results = [summarize(m, args.out / m, args.corpus) for m in MODELS]
    print(write_results(args.out, results, markdown(results, args.minutes)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
