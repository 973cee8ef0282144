"""Seconds to encode a minute of audio with Whisper's encoder: asrlab's PyTorch module (float32)
on 1 and 2 threads against CTranslate2's own `encode` (float32 and int8) on the same input.

    python bench/encoder_speed.py [--encoders whisper-tiny.en whisper-base] [--seconds 60]
                                  [--repeats 3] [--threads 1 2]

The audio (synthetic, speech-like) becomes Whisper's log-mel once (not timed), cut into 30 s
windows encoded as one batch (60 s: a batch of two 3000-frame windows, as Whisper runs them).
Each row is the median of --repeats runs after one warm-up; the max abs difference of the
PyTorch output against CTranslate2 float32 is printed beside it. Needs an idle machine for
numbers worth comparing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from asrlab.features import WhisperLogMel  # noqa: E402
from asrlab.models.pretrained import load_backbone  # noqa: E402
from asrlab.pretrained import resolve_encoder  # noqa: E402

WINDOW = 3000  # mel frames: 30 s


def speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    wave = sum(np.sin(k * phase) / k for k in range(1, 8)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return (0.1 * wave + 0.005 * rng.standard_normal(t.size)).astype(np.float32)


def windows(mels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T, 80) -> (N, 3000, 80) zero-padded windows and their lengths."""
    n = -(-len(mels) // WINDOW)
    out = np.zeros((n, WINDOW, mels.shape[1]), np.float32)
    lengths = np.zeros(n, np.int64)
    for i in range(n):
        chunk = mels[i * WINDOW:(i + 1) * WINDOW]
        out[i, :len(chunk)] = chunk
        lengths[i] = len(chunk)
    return out, lengths


def timed(fn, repeats: int) -> tuple[float, object]:
    result = fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def ct2_model(source, compute_type: str, threads: int):
    import ctranslate2

    folder = source.folder
    files = None
    if len(source.files) > 1:  # a bundle in parts: joined in memory, not on disk
        files = {f.name: f.read_bytes() for f in folder.iterdir()
                 if f.is_file() and not f.name.startswith("model.bin")}
        files["model.bin"] = b"".join(f.read_bytes() for f in source.files)
    return ctranslate2.models.Whisper(str(folder), device="cpu", compute_type=compute_type,
                                      intra_threads=threads, files=files)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--encoders", nargs="+", default=["whisper-tiny.en", "whisper-base"])
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    args = p.parse_args(argv)
    import ctranslate2

    mels = WhisperLogMel()(speechlike(args.seconds))
    batch, lengths = windows(mels)
    print(f"{args.seconds:.0f} s of audio -> {len(batch)} windows of {WINDOW} frames; "
          f"torch {torch.__version__}, ctranslate2 {ctranslate2.__version__}, median of "
          f"{args.repeats} after a warm-up\n")
    print("| encoder | backend | threads | seconds | x real time | max abs diff vs ct2 float32 |")
    print("|---|---|---|---|---|---|")
    for name in args.encoders:
        source = resolve_encoder(name)
        model = load_backbone(source)
        x, lens = torch.from_numpy(batch), torch.from_numpy(lengths)
        features = ctranslate2.StorageView.from_array(np.ascontiguousarray(batch.transpose(0, 2, 1)))
        reference = None
        rows = []
        for threads in args.threads:
            for compute_type in ("float32", "int8"):
                ct2 = ct2_model(source, compute_type, threads)
                seconds, out = timed(lambda: np.array(ct2.encode(features)), args.repeats)
                if compute_type == "float32" and reference is None:
                    reference = out
                rows.append((f"ctranslate2 {compute_type}", threads, seconds, out))
            torch.set_num_threads(threads)
            with torch.inference_mode():
                seconds, out = timed(lambda: model(x, lens)[0].numpy(), args.repeats)
            rows.append(("asrlab torch float32", threads, seconds, out))
        for backend, threads, seconds, out in rows:
            # like for like when --seconds is a multiple of 30 (CTranslate2 attends to the
            # zeros of a last window cut short, asrlab masks them)
            diff = np.abs(out - reference).max()
            print(f"| {name} | {backend} | {threads} | {seconds:.2f} | "
                  f"{args.seconds / seconds:.0f} | {diff:.1e} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
