"""Wall time to validation CER <= target, median of several seeds, and training throughput.

    python bench/time_to_cer.py --data data/default --model crnn-sub4 --seeds 0 1 2
    python bench/time_to_cer.py --data data/default --preset seed-crnn --seeds 0 1 2 --max-minutes 30
    python bench/time_to_cer.py --data data/default --threads 1            # slow-CPU stand-in
    python bench/time_to_cer.py --data data/default --contend    # a busy process beside it
    python bench/time_to_cer.py --data data/default --stop-at-target   # end each run at the target
    python bench/time_to_cer.py --data data/default --encoder whisper-tiny.en --target 0.05 \
        --seeds 0 1 --stop-at-target       # a frozen pretrained encoder (its encoding counted)

Each run is a real `asrlab train` process. Time to target = set-up (reading audio, CMVN, checks)
+ training-loop time at the end of the first epoch whose validation CER is <= the target.
Prints a markdown table and writes the raw numbers to --out (JSON).

`--contend` runs one busy process (a pure-Python spin loop) for the whole of each run, as a
shared laptop or CI box would; `--env KEY=VALUE` sets the training process's environment (e.g.
`--env OMP_WAIT_POLICY=PASSIVE` or `--env GOMP_SPINCOUNT=10000` to compare OpenMP waiting).
`--stop-at-target` ends each run at its first epoch at or below the target (the time to target
is the same; best and final CER are then that epoch's).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def reached(metrics: Path, target: float) -> bool:
    try:
        lines = metrics.read_text().splitlines()
    except OSError:
        return False
    return any(json.loads(line)["val_cer"] <= target for line in lines if line.endswith("}"))


def run_once(data: Path, out: Path, seed: int, args) -> dict:
    cmd = [sys.executable, "-m", "asrlab", "train", "--train", str(data / "train.jsonl"),
           "--val", str(data / "val.jsonl"), "--out", str(out), "--seed", str(seed),
           "--no-progress", "--preset", args.preset, "--max-minutes", str(args.max_minutes)]
    if args.model:
        cmd += ["--model", args.model]
    if args.encoder:
        cmd += ["--encoder", args.encoder]
    if args.epochs:
        cmd += ["--epochs", str(args.epochs)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    for item in args.set:
        cmd += ["--set", item]
    env = dict(os.environ, **dict(item.split("=", 1) for item in args.env))
    busy = (subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.contend
            else None)
    t0 = time.time()
    stopped = False
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        # a previous run of the same name would be read as this one's (and training refuses
        # its folder): --runs is this script's own scratch area, so the old run goes
        shutil.rmtree(out, ignore_errors=True)
        with open(out.parent / f"{out.name}.log", "w") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True, env=env)
            while proc.poll() is None:  # --stop-at-target: end the run at its first hit
                time.sleep(1)
                if args.stop_at_target and reached(out / "metrics.jsonl", args.target):
                    proc.terminate()
                    proc.wait()
                    stopped = True
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    wall = time.time() - t0
    if proc.returncode != 0 and not stopped:
        tail = (out.parent / f"{out.name}.log").read_text()[-3000:]
        raise RuntimeError(f"run failed ({proc.returncode}):\n{tail}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    setup = wall - rows[-1]["elapsed_s"]
    hit = next((r for r in rows if r["val_cer"] <= args.target), None)
    return {"seed": seed, "wall_s": round(wall, 1), "setup_s": round(setup, 1),
            "time_to_target_s": round(setup + hit["elapsed_s"], 1) if hit else None,
            "epoch_at_target": hit["epoch"] if hit else None,
            "best_val_cer": min(r["val_cer"] for r in rows),
            "final_val_cer": rows[-1]["val_cer"], "epochs": len(rows),
            "empty_hyps_final": rows[-1]["empty_hyps"],
            "throughput_audio_s_per_s": statistics.median(r["audio_seconds_per_s"] for r in rows),
            "threads_per_epoch": [r.get("threads") for r in rows], "stopped_at_target": stopped}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="corpus folder from asrlab synth")
    p.add_argument("--preset", default="default")
    p.add_argument("--model")
    p.add_argument("--encoder", help="a pretrained encoder (asrlab train --encoder); its states "
                                     "are computed within the budget and counted in the time")
    p.add_argument("--epochs", type=int)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--target", type=float, default=0.10)
    p.add_argument("--max-minutes", type=float, default=10.0)
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--threads", type=int, help="torch threads for training (default: asrlab's)")
    p.add_argument("--contend", action="store_true",
                   help="run one busy process beside each training run")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="environment for the training process")
    p.add_argument("--stop-at-target", action="store_true",
                   help="end each run at its first epoch at or below the target (saves time; "
                        "best/final val CER are then those of that epoch)")
    p.add_argument("--runs", type=Path, default=Path("bench/out/time_to_cer"))
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    name = args.model or args.preset
    results = []
    for seed in args.seeds:
        r = run_once(args.data, args.runs / f"{name}_seed{seed}", seed, args)
        print(json.dumps(r), flush=True)
        results.append(r)
    times = [r["time_to_target_s"] for r in results]
    reached = [t for t in times if t is not None]
    summary = {
        "model": name, "target_cer": args.target, "seeds": args.seeds,
        "cpu_threads": os.cpu_count(), "torch_threads": args.threads, "contend": args.contend,
        "env": args.env, "max_minutes": args.max_minutes,
        "median_time_to_target_s": statistics.median(reached) if len(reached) == len(times) else None,
        "reached": f"{len(reached)}/{len(times)}",
        "median_best_val_cer": statistics.median(r["best_val_cer"] for r in results),
        "median_throughput_audio_s_per_s": statistics.median(
            r["throughput_audio_s_per_s"] for r in results),
        "runs": results,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=2))
    t = summary["median_time_to_target_s"]
    print(f"\n| model | runs reaching CER <= {args.target} | median time to target | "
          f"median best val CER | throughput (audio s / s) |\n|---|---|---|---|---|\n"
          f"| {name} | {summary['reached']} | {f'{t:.0f} s' if t else 'not reached'} | "
          f"{summary['median_best_val_cer']:.3f} | "
          f"{summary['median_throughput_audio_s_per_s']:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
