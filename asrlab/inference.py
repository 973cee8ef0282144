"""Batched inference with a trained PyTorch checkpoint: waveforms -> log-probs.

Used by evaluate, transcribe, diagnose and the server, so all of them see the same model output.
Batching, padding and feature extraction are asrlab.recognizer.BaseRecognizer's (shared with
the ONNX recognizer); this class adds only the torch forward call.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from asrlab.checkpoint import Checkpoint, load
from asrlab.frames import frame_seconds
from asrlab.recognizer import BaseRecognizer, pad_frames


class Recognizer(BaseRecognizer):
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
        """Seconds per encoder output frame (asrlab.frames)."""
        return frame_seconds(self.ckpt.config)

    @torch.inference_mode()
    def forward(self, x: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lp, olens = self.model(torch.from_numpy(x), torch.from_numpy(lengths))  # (B, T', V)
        return lp.float().numpy(), olens.numpy()


def pad(feats: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """List of (T, F) -> (B, T_max, F) zero-padded, (B,) lengths, as tensors (export's parity
    check feeds the same arrays to torch and onnxruntime)."""
    x, lengths = pad_frames(feats)
    return torch.from_numpy(x), torch.from_numpy(lengths)
