"""Transcribe audio with a trained model: PyTorch checkpoint or exported ONNX model.

    tr = Transcriber.from_args(args)   # --model RUN | --onnx model.onnx (or --model x.onnx)
    tr.transcribe_file("a.wav")        # {"text", "words": [{"word","start","end","confidence"}],
                                       #  "duration"}

The ONNX path imports neither torch nor asrlab.inference: `--onnx` runs with onnxruntime alone.
Times are in seconds (encoder frames x frame_seconds); see asrlab.words for the confidence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from asrlab.decode import make_decoder
from asrlab.words import Word, words_for


@dataclass
class Transcript:
    text: str
    words: list[Word] = field(default_factory=list)
    duration: float = 0.0

    def to_dict(self) -> dict:
        return {"text": self.text, "words": [w.to_dict() for w in self.words],
                "duration": self.duration}


def load_recognizer(model: str | Path | None = None, onnx: str | Path | None = None,
                    threads: int | None = None):
    """A Recognizer (PyTorch) or OnnxRecognizer; a --model path ending in .onnx means ONNX."""
    if onnx is None and model is not None and str(model).endswith(".onnx"):
        onnx = model
    if onnx is not None:
        from asrlab.onnx_infer import OnnxRecognizer

        return OnnxRecognizer(onnx, threads=threads)
    if model is None:
        raise ValueError("give --model RUN (a run folder or checkpoint) or --onnx model.onnx")
    from asrlab.inference import Recognizer

    if threads:
        import torch

        torch.set_num_threads(threads)
    return Recognizer.from_path(model)


class Transcriber:
    """Recognizer + decoder + word timing. Safe to call from several threads at once."""

    def __init__(self, recognizer, decoder):
        self.rec, self.decoder = recognizer, decoder

    @classmethod
    def from_args(cls, args) -> "Transcriber":
        rec = load_recognizer(getattr(args, "model", None), getattr(args, "onnx", None),
                              getattr(args, "threads", None))
        return cls(rec, make_decoder(args, rec.tokenizer))

    @property
    def sample_rate(self) -> int:
        return self.rec.sample_rate

    def transcribe_waves(self, waves: list[np.ndarray]) -> list[Transcript]:
        """Several waveforms in one batched forward pass (the server micro-batches with it)."""
        if not waves:
            return []
        return [self._decode(lp, round(len(w) / self.rec.sample_rate, 3))
                for w, lp in zip(waves, self.rec.log_probs(waves))]

    def transcribe_wave(self, wave: np.ndarray) -> dict:
        return self.transcribe_waves([wave])[0].to_dict()

    def transcribe_file(self, path: str | Path) -> dict:
        return self.transcribe_wave(self.rec.load(path))

    def _decode(self, log_probs: np.ndarray, duration: float) -> Transcript:
        hyp = self.decoder.decode(log_probs)
        words = words_for(hyp, log_probs, self.rec.tokenizer, self.rec.frame_seconds, duration,
                          getattr(self.decoder, "blank_penalty", 0.0))
        return Transcript(hyp.text, words, duration)
