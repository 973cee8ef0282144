"""The inference core both recognizers share; torch-free (the ONNX path imports it).

`BaseRecognizer.log_probs(waves)` is the one path from waveforms to log-probs: features through
the model's `FeaturePipeline`, batches by length (`length_batches`, a budget of
`batch_seconds` of padded feature frames at `asrlab.frames.input_rate`), zero-padding
(`pad_frames`), then the subclass's `forward(x, lengths)`:

    asrlab.inference.Recognizer       PyTorch checkpoint: the torch module
    asrlab.onnx_infer.OnnxRecognizer  exported .onnx: an onnxruntime session

Everything else (sample_rate, frame_seconds, tokenizer, pipeline, text_normalizer, load) has
the same meaning in both, so Transcriber, the server, evaluate and the benchmarks use either.
`METADATA_KEY` names the ONNX metadata entry `asrlab export` writes and OnnxRecognizer reads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from asrlab.audio import AudioLimits, load_checked
from asrlab.frames import input_rate

METADATA_KEY = "asrlab"  # the ONNX model's custom metadata entry (asrlab.export writes it)


def length_batches(lengths: list[int], frames_per_batch: int) -> list[list[int]]:
    """Indices sorted by length, grouped while padded frames stay within the budget."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches, start = [], 0
    while start < len(order):
        end = start + 1
        while end < len(order) and lengths[order[end]] * (end - start + 1) <= frames_per_batch:
            end += 1
        batches.append(order[start:end])
        start = end
    return batches


def pad_frames(feats: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """List of (T, F) -> (B, T_max, F) float32 zero-padded, (B,) int64 lengths."""
    T = max(f.shape[0] for f in feats)
    x = np.zeros((len(feats), T, feats[0].shape[1]), np.float32)
    for b, f in enumerate(feats):
        x[b, :f.shape[0]] = f
    return x, np.array([f.shape[0] for f in feats], np.int64)


class BaseRecognizer:
    """Subclasses set tokenizer, pipeline, sample_rate, frame_seconds, text_normalizer and
    batch_seconds, and implement `forward`."""

    batch_seconds: float = 60.0

    def forward(self, x: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, T, F) float32, (B,) int64 -> log-probs (B, T', V) float32, lengths (B,)."""
        raise NotImplementedError

    def load(self, path: str | Path, offset: float = 0.0, duration: float | None = None,
             limits: AudioLimits = AudioLimits()) -> np.ndarray:
        """`path` (a segment with `offset`/`duration`) at the model's rate through
        `audio.load_checked`: within `limits`, empty and NaN/inf audio refused (AudioError)."""
        return load_checked(path, self.sample_rate, limits, offset, duration)

    def log_probs(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        """One (T', V) float32 array per waveform; batched by length, returned in input order."""
        feats = [self.pipeline(w) for w in waves]
        out: list[np.ndarray | None] = [None] * len(feats)
        budget = max(1, int(self.batch_seconds * input_rate(self.pipeline.cfg)))
        for idx in length_batches([f.shape[0] for f in feats], budget):
            lp, olens = self.forward(*pad_frames([feats[i] for i in idx]))
            for b, i in enumerate(idx):
                out[i] = lp[b, :int(olens[b])]
        return out  # type: ignore[return-value]
