"""Batched inference with a trained model: waveforms -> log-probs -> hypotheses.

Used by evaluate, transcribe, diagnose and the server, so all of them see the same model output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from asrlab.audio import load_audio
from asrlab.checkpoint import Checkpoint, load
from asrlab.decode.greedy import Hypothesis, greedy_decode
from asrlab.onnx_infer import FRAMES_PER_SECOND, length_batches  # torch-free, shared batching


class Recognizer:
    def __init__(self, ckpt: Checkpoint, batch_seconds: float = 60.0):
        self.ckpt = ckpt
        self.model = ckpt.model.eval()
        self.pipeline = ckpt.pipeline
        self.tokenizer = ckpt.tokenizer
        self.sample_rate = ckpt.config.features.sample_rate
        self.batch_seconds = batch_seconds

    @classmethod
    def from_path(cls, path: str | Path, **kw) -> "Recognizer":
        return cls(load(path), **kw)

    @property
    def text_normalizer(self):
        """The model's transcript rules (asrlab.data.text.TextNormalizer): references are
        normalized with them before scoring."""
        return self.ckpt.config.text

    @property
    def frame_seconds(self) -> float:
        """Seconds per encoder output frame (feature hop x subsampling)."""
        hop = self.ckpt.config.features.hop_ms / 1000
        probe = torch.tensor([1000])
        return hop * 1000 / int(self.model.output_lengths(probe))

    def load(self, path: str | Path, offset: float = 0.0, duration: float | None = None
             ) -> np.ndarray:
        return load_audio(path, self.sample_rate, offset, duration)

    @torch.inference_mode()
    def log_probs(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        """One (T', V) float32 array per waveform; batched by length, returned in input order."""
        feats = [self.pipeline(w) for w in waves]
        out: list[np.ndarray | None] = [None] * len(feats)
        budget = max(1, int(self.batch_seconds * FRAMES_PER_SECOND))
        for idx in length_batches([f.shape[0] for f in feats], budget):
            x, lens = pad([feats[i] for i in idx])
            lp, olens = self.model(x, lens)  # (B, T', V)
            for b, i in enumerate(idx):
                out[i] = lp[b, :int(olens[b])].float().numpy()
        return out  # type: ignore[return-value]

    def transcribe(self, waves: list[np.ndarray], blank_penalty: float = 0.0) -> list[Hypothesis]:
        return [greedy_decode(lp, len(lp), self.tokenizer, blank_penalty)
                for lp in self.log_probs(waves)]


def pad(feats: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """List of (T, F) -> (B, T_max, F) zero-padded, (B,) lengths."""
    T = max(f.shape[0] for f in feats)
    x = torch.zeros(len(feats), T, feats[0].shape[1])
    for b, f in enumerate(feats):
        x[b, :f.shape[0]] = torch.from_numpy(f)
    return x, torch.tensor([f.shape[0] for f in feats])
