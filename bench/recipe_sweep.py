"""Learning per audio-second: recipe variants trained for the same number of epochs, compared on
the epochs, updates and audio-hours each needs to reach a validation CER.

    python bench/recipe_sweep.py --data D --epochs 35 --seeds 0 1 \\
        --variant default= --variant lr5e-3=train.lr=0.005 \\
        --variant h320=model.hidden=320 --variant drop0.1=model.dropout=0.1,train.lr=0.004
    python bench/recipe_sweep.py --data D --epochs 35 --jobs 8 --device cuda ...   # on a GPU box

A variant is NAME=KEY=VALUE[,KEY=VALUE...] (asrlab's `--set` keys; `NAME=` is the default recipe).
Each run is a real `asrlab train` with `--epochs N --max-minutes 0`: the cosine schedule spans the
N epochs, as the 10-minute budget spans the epochs a machine fits in it, so choose N = the epochs
the target machine reaches in its budget (`bench/time_to_cer.py` prints them). Learning per
update does not depend on the machine, so the sweep may run on any machine (a GPU box runs
several variants at once with --jobs); what a variant costs per epoch on the CPU is measured
apart (`bench/train_step.py`, `bench/time_to_cer.py`), and a variant wins only if
epochs-to-target x its CPU cost per epoch is lower.

Prints a markdown table (medians over seeds) and writes every run's metrics to --out (JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def parse_variant(text: str) -> tuple[str, list[str]]:
    name, _, sets = text.partition("=")
    if not name:
        raise SystemExit(f"--variant {text!r}: write NAME=KEY=VALUE[,KEY=VALUE...] "
                         f"(NAME= alone for the default recipe)")
    # split at the commas that start the next KEY= (SECTION.KEY), so list values keep theirs:
    # gain=augment.gain_db=[-6,6],augment.clip_prob=0.1
    return name, [s for s in re.split(r",(?=[A-Za-z_]+\.[A-Za-z_]+=)", sets) if s]


def train_seconds(manifest: Path) -> float:
    from asrlab.data.manifest import load_manifest  # the project's reader: every manifest format

    return sum(u.duration for u in load_manifest(manifest))


def run_one(name: str, sets: list[str], seed: int, args) -> dict:
    out = args.runs / f"{name}_seed{seed}"
    log = out.parent / f"{out.name}.log"
    cmd = [sys.executable, "-m", "asrlab", "train", "--train", str(args.data / "train.jsonl"),
           "--val", str(args.data / "val.jsonl"), "--out", str(out), "--overwrite",
           "--seed", str(seed), "--epochs", str(args.epochs), "--max-minutes", "0",
           "--no-progress", "--set", f"train.device={args.device}"]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    for item in args.set + sets:
        cmd += ["--set", item]
    t0 = time.time()
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        done = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    wall = time.time() - t0
    if done.returncode != 0 or not (out / "metrics.jsonl").is_file():
        tail = log.read_text()[-2000:]
        print(f"{name} seed {seed}: failed ({done.returncode}):\n{tail}", flush=True)
        return {"variant": name, "seed": seed, "failed": done.returncode, "log_tail": tail}
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    curve = [{"epoch": r["epoch"], "step": r["step"], "val_cer": round(r["val_cer"], 4),
              "train_loss": round(r["train_loss"], 4), "val_loss": round(r["val_loss"], 4),
              "elapsed_s": r["elapsed_s"]} for r in rows]
    hit = {t: next((r for r in rows if r["val_cer"] <= t), None) for t in args.targets}
    result = {"variant": name, "sets": sets, "seed": seed, "wall_s": round(wall, 1),
              "epochs": len(rows), "best_val_cer": min(r["val_cer"] for r in rows),
              "final_val_cer": rows[-1]["val_cer"],
              "at_target": {str(t): ({"epoch": h["epoch"], "updates": h["step"]} if h else None)
                            for t, h in hit.items()},
              "curve": curve}
    print(f"{name} seed {seed}: best val CER {result['best_val_cer']:.3f}, "
          + ", ".join(f"<= {t}: epoch {h['epoch'] if h else '-'}" for t, h in hit.items())
          + f" ({wall:.0f} s)", flush=True)
    return result


def median_or_none(values: list) -> float | None:
    """Median over seeds when every seed reached the target; otherwise None (not reached)."""
    return statistics.median(values) if values and all(v is not None for v in values) else None


def table(results: list[dict], variants: list[str], targets: list[float], hours: float) -> str:
    head = "| variant | seeds | " + " | ".join(
        f"epoch to {t} | audio-h to {t}" for t in targets) + " | best val CER | final val CER |"
    lines = [head, "|" + "---|" * (2 + 2 * len(targets) + 2)]
    for name in variants:
        runs = [r for r in results if r["variant"] == name and "failed" not in r]
        if not runs:
            lines.append(f"| {name} | failed |" + " |" * (2 * len(targets) + 2))
            continue
        cells = []
        for t in targets:
            e = median_or_none([(r["at_target"][str(t)] or {}).get("epoch") for r in runs])
            cells += [f"{e:g}" if e else "not reached", f"{e * hours:.1f}" if e else "-"]
        best = statistics.median(r["best_val_cer"] for r in runs)
        final = statistics.median(r["final_val_cer"] for r in runs)
        lines.append(f"| {name} | {len(runs)} | " + " | ".join(cells)
                     + f" | {best:.3f} | {final:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="corpus folder (train/val.jsonl)")
    p.add_argument("--epochs", type=int, required=True, help="epochs per run (cosine spans them)")
    p.add_argument("--variant", action="append", required=True, metavar="NAME=KEY=VALUE,...")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--targets", type=float, nargs="+", default=[0.15, 0.10])
    p.add_argument("--set", action="append", default=[], help="applied to every variant")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, help="torch threads per run")
    p.add_argument("--jobs", type=int, default=1, help="runs at once (a GPU box: several)")
    p.add_argument("--runs", type=Path, default=Path("bench/out/recipe_sweep"))
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    variants = [parse_variant(v) for v in args.variant]
    names = [n for n, _ in variants]
    if len(set(names)) != len(names):
        raise SystemExit("--variant: each NAME once")
    hours = train_seconds(args.data / "train.jsonl") / 3600
    jobs = [(n, s, seed) for seed in args.seeds for n, s in variants]
    t0 = time.time()
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        results = list(pool.map(lambda j: run_one(*j, args), jobs))
    md = table(results, names, args.targets, hours)
    summary = {"data": str(args.data), "train_hours": round(hours, 4), "epochs": args.epochs,
               "seeds": args.seeds, "targets": args.targets, "device": args.device,
               "jobs": args.jobs, "threads": args.threads, "host": platform.node(),
               "cpu_count": os.cpu_count(), "wall_s": round(time.time() - t0, 1),
               "date": time.strftime("%Y-%m-%d"), "results": results, "table": md}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=1))
    print(f"\n{len(args.seeds)} seed(s), {args.epochs} epochs, {hours:.2f} h of training audio "
          f"per epoch\n\n{md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
