"""Peak memory and time of `asrlab transcribe` on 1, 10 and 60 minutes of audio.

    python bench/long_audio.py --out /tmp/long_audio [--model RUN_OR_ONNX] [--minutes 1 10 60]

Each length is one WAV (FSDD digit recordings, 8 kHz, joined with pauses and repeated to the
length) transcribed by `asrlab transcribe --json --threads 1` in a subprocess; the peak memory is
that process's maximum resident set size (os.wait4's ru_maxrss), the time its wall time. Long
audio is read and recognized in 30 s windows (asrlab.longform), so the peak should not grow with
the length: the script reports each peak relative to the shortest and exits 1 when one is more
than 20% above it.

Without --model it builds an untrained checkpoint of the default architecture (crnn-sub4,
2 x 256 BiLSTM) in OUT: memory and time depend on the architecture, not on the weights.
Writes OUT/results.json and prints a markdown table.
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


def make_audio(path: Path, minutes: float) -> None:
    """Digits with 0.3 s pauses, repeated to `minutes`, written block by block (16-bit WAV)."""
    files = sorted(FSDD.glob("*.wav"))[:200]
    if not files:
        raise SystemExit(f"FSDD recordings not found in {FSDD}")
    pause = np.zeros(int(0.3 * SR), np.float32)
    unit = np.concatenate([np.concatenate([sf.read(f, dtype="float32")[0], pause]) for f in files])
    total = int(minutes * 60 * SR)
    with sf.SoundFile(path, "w", SR, 1, "PCM_16") as out:
        written = 0
        while written < total:
            part = unit[:total - written]
            out.write(part)
            written += len(part)


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


def measure(model: Path, wav: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "asrlab", "transcribe", "--model", str(model), "--json",
           "--threads", "1", str(wav)]
    out, err = wav.with_suffix(".json"), wav.with_suffix(".err")
    t0 = time.perf_counter()
    with open(out, "wb") as fo, open(err, "wb") as fe:
        proc = subprocess.Popen(cmd, env=env, stdout=fo, stderr=fe)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"transcribe failed: {err.read_text()[-2000:]}")
    result = json.loads(out.read_text().splitlines()[-1])
    return {"peak_mb": usage.ru_maxrss / 1024, "wall_s": wall, "duration_s": result["duration"],
            "words": len(result["words"])}


def cpu_model() -> tuple[str, bool]:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    name = next((line.split(":", 1)[1].strip() for line in text.splitlines()
                 if line.startswith("model name")), platform.processor())
    return name, "avx512f" in text


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--model", type=Path, help="run folder, checkpoint or model.onnx")
    p.add_argument("--minutes", type=float, nargs="+", default=[1, 10, 60])
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    model = args.model or make_model(args.out)
    rows = []
    for minutes in args.minutes:
        wav = args.out / f"audio_{minutes:g}min.wav"
        if not wav.is_file():
            make_audio(wav, minutes)
        r = {"minutes": minutes, **measure(model, wav)}
        rows.append(r)
        print(f"{minutes:g} min: peak {r['peak_mb']:.0f} MB, {r['wall_s']:.1f} s", flush=True)
    base = min(rows, key=lambda r: r["minutes"])["peak_mb"]
    cpu, avx512 = cpu_model()
    info = {"model": str(model), "cpu": cpu, "avx512": avx512, "cores": os.cpu_count(),
            "load_1min": os.getloadavg()[0], "date": time.strftime("%Y-%m-%d %H:%M UTC",
                                                                   time.gmtime())}
    print(f"\n{info}\n")
    print("| audio | peak RSS MB | vs shortest | wall s | real-time factor | words |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['minutes']:g} min | {r['peak_mb']:.0f} | {r['peak_mb'] / base - 1:+.1%} | "
              f"{r['wall_s']:.1f} | {r['wall_s'] / r['duration_s']:.4f} | {r['words']} |")
    (args.out / "results.json").write_text(json.dumps({"info": info, "rows": rows}, indent=2))
    flat = all(r["peak_mb"] <= 1.2 * base for r in rows)
    print(f"\npeak memory {'flat' if flat else 'NOT flat'} within 20%")
    return 0 if flat else 1


if __name__ == "__main__":
    raise SystemExit(main())
