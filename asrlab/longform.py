"""Long-form recognition: overlapping windows, each window's central frames kept and stitched.

Memory stays flat with the audio's length: a window of audio is read (from the file, or sliced
from an in-memory waveform), run through the recognizer's `log_probs`, and only the frames of
its centre are kept. Windows start on the encoder's frame grid, so window frame k is global
frame `first + k` and the stitched log-probs, word times included, are absolute.

    window 0: [0 ............ keep ............][ctx]
    window 1:                  [ctx][...... keep ......][ctx]
    window 2:                                   [ctx][... keep (to the end) ...]

Each kept frame has at least `overlap_s / 2` seconds of audio on both sides (except at the file's
ends, as without windows), so a bidirectional encoder sees almost what it sees on the whole
file; the stitched output equals the unchunked one up to those edges (tests/product/
test_longform.py measures it). Torch-free: used alike by asrlab.inference.Recognizer and
asrlab.onnx_infer.OnnxRecognizer, through their common `log_probs(waves)`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ChunkConfig:
    """window_s: audio per model call; overlap_s: shared by neighbouring windows (half of it is
    context on each side of the kept centre)."""
    window_s: float = 30.0
    overlap_s: float = 4.0

    def validate(self) -> "ChunkConfig":
        if not (self.window_s > 0 and 0 <= self.overlap_s < self.window_s):
            raise ValueError(f"chunking: need window_s > overlap_s >= 0 (got window "
                             f"{self.window_s} s, overlap {self.overlap_s} s); e.g. 30 and 4")
        return self


class ArraySource:
    """An in-memory waveform with the reader's surface (`read(start, stop)`)."""

    def __init__(self, wave: np.ndarray):
        self.wave = wave
        self.num_samples = len(wave)

    def read(self, start: int, stop: int) -> np.ndarray:
        return self.wave[start:stop]


def windows_log_probs(log_probs: Callable[[list[np.ndarray]], list[np.ndarray]], source,
                      sample_rate: int, frame_seconds: float, cfg: ChunkConfig = ChunkConfig(),
                      check: Callable[[np.ndarray], None] | None = None
                      ) -> tuple[np.ndarray, int]:
    """(stitched (T', V) log-probs, samples read). `source.read(start, stop)` gives model-rate
    samples, fewer at the end; `check(window)` may refuse a window (e.g. NaN samples)."""
    cfg.validate()
    fs = frame_seconds * sample_rate  # samples per encoder frame
    step = max(1, int(round((cfg.window_s - cfg.overlap_s) / frame_seconds)))  # frames kept
    ctx = int(round(cfg.overlap_s / 2 / frame_seconds))  # context frames on each side
    kept: list[np.ndarray] = []
    total = 0
    first = 0  # global index of the first frame this window keeps
    while True:
        g0 = max(0, first - ctx)
        s0, s1 = int(round(g0 * fs)), int(round((first + step + ctx) * fs))
        wave = source.read(s0, s1)
        if check is not None and len(wave):
            check(wave)
        last = len(wave) < s1 - s0
        total = max(total, s0 + len(wave))
        if len(wave) == 0:  # the file ended exactly where the previous window did
            break
        lp = log_probs([wave])[0]
        lo = first - g0
        kept.append((lp[lo:] if last else lp[lo:lo + step]).copy())  # not a view of the window
        if last:
            break
        first += step
    if not kept:
        return np.zeros((0, 0), np.float32), total
    return np.concatenate(kept), total
