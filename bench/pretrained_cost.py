"""What a pretrained encoder costs on a CPU: encoding (frozen, cached), an epoch of the
downstream, and inference (real-time factor and peak memory, PyTorch and ONNX).

    python bench/pretrained_cost.py --data data/espeak1111 --out /tmp/cost \
        --encoders whisper-tiny.en whisper-base --threads 2

For each encoder: `asrlab train --encoder E` for --epochs epochs on the corpus (no time
budget; its train.log says how long the frozen encoder's states took: seconds per audio hour),
the second epoch's time (the first includes the short-first ordering's ramp) and its
training throughput; then `asrlab export`, and `asrlab evaluate --threads N` of the test split
with the checkpoint and with the .onnx, each in a fresh process whose own peak RSS (VmHWM) is
read (bench/long_audio.py's measurement): the real-time factor is evaluate's (decode seconds,
audio reading included, over audio seconds). Writes OUT/results.json and prints a markdown
table. Run it alone on the machine: every figure here is a time.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

from bench_results import write_results  # bench/bench_results.py
from long_audio import cpu_model, run_measured  # bench/long_audio.py

REPO = Path(__file__).resolve().parents[1]


def train(data: Path, run: Path, encoder: str, args) -> dict:
    cmd = [sys.executable, "-m", "asrlab", "train", "--train", str(data / "train.jsonl"),
           "--val", str(data / "val.jsonl"), "--out", str(run), "--encoder", encoder,
           "--epochs", str(args.epochs), "--max-minutes", "0", "--threads", str(args.threads),
           "--no-progress", "--overwrite"] + [x for s in args.set for x in ("--set", s)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"training failed:\n{done.stderr[-3000:]}")
    log = (run / "train.log").read_text()
    m = re.search(r"encoder states, train: (\d+) utterance variants \((\d+) s of audio\) in "
                  r"([\d.]+) s", log)
    audio_s, encode_s = float(m.group(2)), float(m.group(3))
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    epoch_s = rows[1]["elapsed_s"] - rows[0]["elapsed_s"]
    return {"encode_s_per_audio_hour": round(encode_s / audio_s * 3600, 1),
            "encode_x_real_time": round(audio_s / encode_s, 1),
            "epoch_s": round(epoch_s, 1), "train_audio_s_per_s": rows[1]["audio_seconds_per_s"],
            "val_cer_after": rows[-1]["val_cer"], "epochs": len(rows)}


def infer(model: Path, data: Path, out: Path, threads: int) -> dict:
    peak, wall = run_measured(["evaluate", "--model", str(model), "--data",
                               str(data / "test.jsonl"), "--out", str(out), "--threads",
                               str(threads)], threads=threads)
    report = json.loads(out.read_text())
    return {"rtf": report["rtf"], "peak_mb": round(peak), "cer": report["cer"],
            "wer": report["wer"], "audio_s": report["audio_seconds"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="corpus folder (asrlab synth)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--encoders", nargs="+", default=["whisper-tiny.en", "whisper-base"])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--set", action="append", default=[], help="extra asrlab train --set items")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for encoder in args.encoders:
        run = args.out / encoder
        r = {"train": train(args.data, run, encoder, args)}
        onnx = args.out / f"{encoder}.onnx"
        done = subprocess.run([sys.executable, "-m", "asrlab", "export", "--model", str(run),
                               "--out", str(onnx)], capture_output=True, text=True, cwd=REPO)
        if done.returncode != 0:
            raise SystemExit(f"export failed:\n{done.stderr[-3000:]}")
        r["parity"] = json.loads(done.stdout)["parity"]["max_abs_diff_batch"]
        r["torch"] = infer(run, args.data, args.out / f"{encoder}.torch.json", args.threads)
        r["onnx"] = infer(onnx, args.data, args.out / f"{encoder}.onnx.json", args.threads)
        results[encoder] = r
        print(encoder, json.dumps(r), flush=True)
    name, avx512 = cpu_model()
    lines = [f"CPU: {name} ({'AVX-512' if avx512 else 'no AVX-512'}), {args.threads} threads",
             "", "| encoder | encoder s / audio h (x real time) | epoch s (audio-s/s) | "
             "RTF torch | peak MB torch | RTF ONNX | peak MB ONNX |",
             "|---|---|---|---|---|---|---|"]
    for encoder, r in results.items():
        t = r["train"]
        lines.append(f"| {encoder} | {t['encode_s_per_audio_hour']:.0f} "
                     f"({t['encode_x_real_time']:.0f}x) | {t['epoch_s']:.0f} "
                     f"({t['train_audio_s_per_s']:.0f}) | {r['torch']['rtf']:.3f} | "
                     f"{r['torch']['peak_mb']} | {r['onnx']['rtf']:.3f} | "
                     f"{r['onnx']['peak_mb']} |")
    print(write_results(args.out, results, "\n".join(lines)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
