"""Inference with an exported .onnx model and onnxruntime alone: no torch import anywhere here.

`OnnxRecognizer` has the same surface as `asrlab.inference.Recognizer` (sample_rate,
frame_seconds, tokenizer, pipeline, load, log_probs), so Transcriber, the server and the
benchmarks use either. Everything but the weights comes from the model's metadata (written by
`asrlab export`): vocabulary, feature config, CMVN statistics, frame duration, and the text
rules (`text_normalizer`) that references are normalized with, as the checkpoint's are.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from asrlab.audio import load_audio
from asrlab.config import FeatureConfig
from asrlab.data.text import TextNormalizer
from asrlab.data.tokenizer import tokenizer_from_dict
from asrlab.features import FeaturePipeline, FeatureStats

METADATA_KEY = "asrlab"  # same as asrlab.export.METADATA_KEY (not imported: export needs torch)
FRAMES_PER_SECOND = 100  # budget unit for batching, as in Recognizer (10 ms features)


class OnnxRecognizer:
    def __init__(self, path: str | Path, threads: int | None = None, batch_seconds: float = 60.0):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such ONNX model (make one with "
                                    f"`asrlab export --model RUN --out model.onnx`)")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(self.path), opts,
                                                providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise ValueError(f"{self.path}: not a loadable ONNX model ({e})") from None
        meta = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if meta is None:
            raise ValueError(f"{self.path}: no asrlab metadata in this ONNX model; export it "
                             f"with `asrlab export` (it stores vocabulary and feature settings)")
        self.meta = json.loads(meta)
        self.tokenizer = tokenizer_from_dict(self.meta["tokenizer"])
        # the checkpoint's transcript rules (exports before they were stored: the defaults,
        # which every earlier checkpoint used)
        self.text_normalizer = TextNormalizer.from_dict(self.meta.get("text"))
        features = FeatureConfig(**self.meta["features"])
        stats = FeatureStats.from_dict(self.meta["feature_stats"])
        self.pipeline = FeaturePipeline(features, stats)
        self.sample_rate = features.sample_rate
        self.frame_seconds = float(self.meta["frame_seconds"])
        self.batch_seconds = batch_seconds

    @classmethod
    def from_path(cls, path: str | Path, **kw) -> "OnnxRecognizer":
        return cls(path, **kw)

    def load(self, path: str | Path, offset: float = 0.0, duration: float | None = None
             ) -> np.ndarray:
        return load_audio(path, self.sample_rate, offset, duration)

    def log_probs(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        """One (T', V) float32 array per waveform; batched by length, in input order."""
        feats = [self.pipeline(w) for w in waves]
        out: list[np.ndarray | None] = [None] * len(feats)
        budget = max(1, int(self.batch_seconds * FRAMES_PER_SECOND))
        for idx in length_batches([f.shape[0] for f in feats], budget):
            x, lengths = pad_numpy([feats[i] for i in idx])
            lp, olens = self.session.run(None, {"feats": x, "lengths": lengths})
            for b, i in enumerate(idx):
                out[i] = lp[b, :int(olens[b])]
        return out  # type: ignore[return-value]


def length_batches(lengths: list[int], frames_per_batch: int) -> list[list[int]]:
    """Indices sorted by length, grouped while padded frames stay within the budget (both
    recognizers batch with it)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches, start = [], 0
    while start < len(order):
        end = start + 1
        while end < len(order) and lengths[order[end]] * (end - start + 1) <= frames_per_batch:
            end += 1
        batches.append(order[start:end])
        start = end
    return batches


def pad_numpy(feats: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """List of (T, F) -> (B, T_max, F) float32 zero-padded, (B,) int64 lengths."""
    T = max(f.shape[0] for f in feats)
    x = np.zeros((len(feats), T, feats[0].shape[1]), np.float32)
    for b, f in enumerate(feats):
        x[b, :f.shape[0]] = f
    return x, np.array([f.shape[0] for f in feats], np.int64)
