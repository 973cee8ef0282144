"""Transcribe audio with a trained model: PyTorch checkpoint or exported ONNX model.

    tr = Transcriber.load("runs/x", DecoderOptions(beam=8), threads=1)  # or "model.onnx"
    tr.transcribe_file("a.wav")        # {"text", "words": [{"word","start","end","confidence"}],
                                       #  "duration"}

The ONNX path imports neither torch nor asrlab.inference: `--onnx` runs with onnxruntime alone.
Times are in seconds (encoder frames x frame_seconds); see asrlab.words for the confidence.

Audio longer than one window (ChunkConfig, 30 s) goes through asrlab.longform: overlapping
windows read from the file one at a time, so memory stays flat with the audio's length (an hour
of audio takes what 30 s take, plus the stitched log-probs: about 10 MB per hour). Files are
checked against `AudioLimits` from their header before decoding; empty and NaN/inf audio are
refused with AudioError, as the server refuses them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from asrlab.audio import AudioLimits, AudioReader, check_samples, load_audio
from asrlab.decode import DecoderOptions, make_decoder
from asrlab.longform import ArraySource, ChunkConfig, windows_log_probs
from asrlab.recognizer import BaseRecognizer
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
                    threads: int | None = None) -> BaseRecognizer:
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

    def __init__(self, recognizer: BaseRecognizer, decoder, limits: AudioLimits = AudioLimits(),
                 chunking: ChunkConfig = ChunkConfig()):
        self.rec, self.decoder = recognizer, decoder
        self.limits, self.chunking = limits.validate(), chunking.validate()

    @classmethod
    def load(cls, model: str | Path, options: DecoderOptions = DecoderOptions(),
             threads: int | None = None, limits: AudioLimits = AudioLimits(),
             chunking: ChunkConfig = ChunkConfig()) -> "Transcriber":
        """`model`: a run folder or checkpoint (PyTorch), or an exported .onnx file (onnxruntime
        only, no torch import)."""
        rec = load_recognizer(model, threads=threads)
        return cls(rec, make_decoder(options, rec.tokenizer), limits, chunking)

    @property
    def sample_rate(self) -> int:
        return self.rec.sample_rate

    @property
    def window_samples(self) -> int:
        return int(self.chunking.window_s * self.rec.sample_rate)

    def transcribe_waves(self, waves: list[np.ndarray]) -> list[Transcript]:
        """Several waveforms in one batched forward pass (the server micro-batches with it);
        any longer than a window goes through overlapping windows on its own."""
        for w in waves:
            check_samples(w)
        sr = self.rec.sample_rate
        short = [i for i, w in enumerate(waves) if len(w) <= self.window_samples]
        out: list[Transcript | None] = [None] * len(waves)
        if short:
            for i, lp in zip(short, self.rec.log_probs([waves[i] for i in short])):
                out[i] = self._decode(lp, round(len(waves[i]) / sr, 3))
        for i, w in enumerate(waves):
            if out[i] is None:
                lp, n = windows_log_probs(self.rec.log_probs, ArraySource(w), sr,
                                          self.rec.frame_seconds, self.chunking)
                out[i] = self._decode(lp, round(n / sr, 3))
        return out  # type: ignore[return-value]

    def transcribe_wave(self, wave: np.ndarray) -> dict:
        return self.transcribe_waves([wave])[0].to_dict()

    def transcribe_file(self, path: str | Path) -> dict:
        """A file of any length: read whole when it is at most one window, else window by
        window (never all in memory). AudioError naming the file for what cannot be used."""
        sr, name = self.rec.sample_rate, f"{path}: "
        with AudioReader(path, sr, self.limits) as reader:
            n = reader.num_samples
            if n is not None and n <= self.window_samples:
                wave = load_audio(path, sr, limits=self.limits)
                check_samples(wave, name)
                return self.transcribe_wave(wave)
            lp, total = windows_log_probs(self.rec.log_probs, reader, sr, self.rec.frame_seconds,
                                          self.chunking, lambda w: check_samples(w, name))
        if total == 0:
            check_samples(np.zeros(0, np.float32), name)
        return self._decode(lp, round(total / sr, 3)).to_dict()

    def _decode(self, log_probs: np.ndarray, duration: float) -> Transcript:
        hyp = self.decoder.decode(log_probs)
        words = words_for(hyp, log_probs, self.rec.tokenizer, self.rec.frame_seconds, duration,
                          self.decoder.blank_penalty)
        return Transcript(hyp.text, words, duration)
