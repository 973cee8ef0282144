"""Inference with an exported .onnx model and onnxruntime alone: no torch import anywhere here.

`OnnxRecognizer` and `asrlab.inference.Recognizer` share `asrlab.recognizer.BaseRecognizer`
(batching, padding, features, load, log_probs) and differ only in `forward`, so Transcriber, the
server and the benchmarks use either. Everything but the weights comes from the model's metadata (written by
`asrlab export`): vocabulary, feature config, CMVN statistics, frame duration, and the text
rules (`text_normalizer`) that references are normalized with, as the checkpoint's are.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from asrlab.config import FeatureConfig
from asrlab.data.text import TextNormalizer
from asrlab.data.tokenizer import tokenizer_from_dict
from asrlab.features import FeaturePipeline, FeatureStats
from asrlab.recognizer import METADATA_KEY, BaseRecognizer


class OnnxRecognizer(BaseRecognizer):
    def __init__(self, path: str | Path, threads: int | None = None, batch_seconds: float = 60.0):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such ONNX model (make one with "
                                    f"`asrlab export --model RUN --out model.onnx`)")
        opts = ort.SessionOptions()
        # no per-shape memory plans: with them the arena kept growing over the first windows of a
        # long file (+16% at 10 minutes over 1 minute); same speed (docs/benchmarks.md)
        opts.enable_mem_pattern = False
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

    def forward(self, x: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lp, olens = self.session.run(None, {"feats": x, "lengths": lengths})
        return lp, olens
