"""Peak memory and time of `asrlab transcribe` (or `asrlab evaluate`) on 1, 10 and 60 minutes.

    python bench/long_audio.py --out /tmp/long_audio [--model RUN_OR_ONNX] [--minutes 1 10 60]
    python bench/long_audio.py --out /tmp/long_audio --verb evaluate --minutes 1 10

Each length is one WAV (FSDD digit recordings, 8 kHz, joined with pauses and repeated to the
length) given to `asrlab transcribe --json --threads 1`, or, with --verb evaluate, a one-line
manifest of it (the digits as reference) to `asrlab evaluate --threads 1`, in a fresh
subprocess; the peak memory is that process's own high-water resident set size (VmHWM, read by
the process itself at its end: the rusage of a child spawned from this script would count this
script's peak too), the time its wall time. Long audio is read and recognized in 30 s windows
(asrlab.longform) by both verbs, so the peak should not grow with the length: the script
reports each peak relative to the shortest and exits 1 when one is more than --tolerance (10%)
above it.

Without --model it builds an untrained checkpoint of the default architecture (crnn-sub4,
2 x 256 BiLSTM) in OUT: memory and time depend on the architecture, not on the weights.
Writes OUT/results.json (OUT/results_evaluate.json) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
FSDD = REPO.parent / "shared" / "data" / "fsdd" / "recordings"
if not FSDD.is_dir():
    FSDD = Path("/work/shared/data/fsdd/recordings")
SR = 8000


def make_audio(path: Path, minutes: float) -> str:
    """Digits with 0.3 s pauses, repeated to `minutes`, written block by block (16-bit WAV);
    returns the words of the recordings that fit whole (the reference for evaluate)."""
    files = sorted(FSDD.glob("*.wav"))[:200]
    if not files:
        raise SystemExit(f"FSDD recordings not found in {FSDD}")
    pause = np.zeros(int(0.3 * SR), np.float32)
    parts = [np.concatenate([sf.read(f, dtype="float32")[0], pause]) for f in files]
    digits = "zero one two three four five six seven eight nine".split()
    words = [digits[int(f.name.split("_")[0])] for f in files]
    total = int(minutes * 60 * SR)
    said = []
    with sf.SoundFile(path, "w", SR, 1, "PCM_16") as out:
        written, i = 0, 0
        while written < total:
            part = parts[i % len(parts)][:total - written]
            out.write(part)
            written += len(part)
            if len(part) == len(parts[i % len(parts)]):
                said.append(words[i % len(words)])
            i += 1
    return " ".join(said)


def make_model(out: Path) -> Path:
    """An untrained default-architecture checkpoint (8 kHz features, character vocabulary)."""
    from asrlab.checkpoint import save_checkpoint
    from asrlab.config import Config
    from asrlab.data.tokenizer import build_tokenizer
    from asrlab.features import FeatureStats
    from asrlab.models import build_model

    cfg = Config().merged({"features": {"sample_rate": SR}})
    tok = build_tokenizer("char", ["zero one two three four five six seven eight nine"])
    model = build_model(cfg, tok.vocab_size)
    n = cfg.features.n_mels
    stats = FeatureStats(np.full(n, -5.0, np.float32), np.full(n, 3.0, np.float32), 1)
    return save_checkpoint(out / "untrained.pt", model=model, config=cfg, tokenizer=tok,
                           stats=stats, meta={"epoch": 0, "note": "untrained, for benchmarks"})


PEAK_RSS = """
import sys
from asrlab.cli import main
rc = main(sys.argv[1:])
print("VmHWM", open("/proc/self/status").read().split("VmHWM:")[1].split()[0], file=sys.stderr)
sys.exit(rc)
"""


def run_measured(args: list[str], stdout: Path | None = None, threads: int = 1
                 ) -> tuple[float, float]:
    """`asrlab ARGS` in a fresh process: (its own peak RSS in MB, wall seconds). Linux (reads
    /proc/self/status); SystemExit with the process's stderr when it fails."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    with open(stdout or os.devnull, "w") as fo:
        proc = subprocess.run([sys.executable, "-c", PEAK_RSS, *args], env=env, cwd=REPO,
                              stdout=fo, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0 or "VmHWM" not in proc.stderr:
        raise SystemExit(f"asrlab {' '.join(args[:1])} failed: {proc.stderr[-2000:]}")
    return int(proc.stderr.rsplit("VmHWM", 1)[1].split()[0]) / 1024, wall


def measure(verb: str, model: Path, wav: Path, text: str) -> dict:
    out = wav.with_name(f"{wav.stem}_{verb}.json")
    if verb == "transcribe":
        peak, wall = run_measured(["transcribe", "--model", str(model), "--json", "--threads",
                                   "1", str(wav)], out)
        result = json.loads(out.read_text().splitlines()[-1])
        return {"peak_mb": peak, "wall_s": wall, "duration_s": result["duration"],
                "words": len(result["words"])}
    manifest = wav.with_suffix(".jsonl")
    manifest.write_text(json.dumps({"audio_filepath": str(wav), "duration": sf.info(wav).duration,
                                    "text": text}) + "\n")
    peak, wall = run_measured(["evaluate", "--model", str(model), "--data", str(manifest),
                               "--out", str(out), "--threads", "1"])
    report = json.loads(out.read_text())
    hyp = json.loads(out.with_suffix(".utterances.jsonl").read_text())["hyp"]
    return {"peak_mb": peak, "wall_s": wall, "duration_s": report["audio_seconds"],
            "words": len(hyp.split()), "wer": report["wer"]}


def cpu_model() -> tuple[str, bool]:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    name = next((line.split(":", 1)[1].strip() for line in text.splitlines()
                 if line.startswith("model name")), platform.processor())
    return name, "avx512f" in text


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--model", type=Path, help="run folder, checkpoint or model.onnx")
    p.add_argument("--verb", choices=("transcribe", "evaluate"), default="transcribe")
    p.add_argument("--minutes", type=float, nargs="+", default=[1, 10, 60])
    p.add_argument("--tolerance", type=float, default=0.10,
                   help="most a peak may exceed the shortest file's (default 0.10: 10%%)")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    model = args.model or make_model(args.out)
    rows = []
    for minutes in args.minutes:
        wav = args.out / f"audio_{minutes:g}min.wav"
        text = make_audio(wav, minutes)
        r = {"minutes": minutes, **measure(args.verb, model, wav, text)}
        rows.append(r)
        print(f"{minutes:g} min: peak {r['peak_mb']:.0f} MB, {r['wall_s']:.1f} s", flush=True)
    base = min(rows, key=lambda r: r["minutes"])["peak_mb"]
    cpu, avx512 = cpu_model()
    info = {"verb": args.verb, "model": str(model), "cpu": cpu, "avx512": avx512,
            "cores": os.cpu_count(), "load_1min": os.getloadavg()[0],
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    print(f"\n{info}\n")
    print(f"| audio ({args.verb}) | peak RSS MB | vs shortest | wall s | real-time factor | words |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['minutes']:g} min | {r['peak_mb']:.0f} | {r['peak_mb'] / base - 1:+.1%} | "
              f"{r['wall_s']:.1f} | {r['wall_s'] / r['duration_s']:.4f} | {r['words']} |")
    name = "results.json" if args.verb == "transcribe" else f"results_{args.verb}.json"
    (args.out / name).write_text(json.dumps({"info": info, "rows": rows}, indent=2))
    flat = all(r["peak_mb"] <= (1 + args.tolerance) * base for r in rows)
    print(f"\npeak memory {'flat' if flat else 'NOT flat'} within {args.tolerance:.0%}")
    return 0 if flat else 1


if __name__ == "__main__":
    raise SystemExit(main())
