"""Transcribe audio files with a trained model (PyTorch path)."""

from __future__ import annotations

from pathlib import Path

from asrlab.decode import make_decoder
from asrlab.inference import Recognizer


class Transcriber:
    def __init__(self, recognizer: Recognizer, decoder):
        self.rec, self.decoder = recognizer, decoder

    @classmethod
    def from_args(cls, args) -> "Transcriber":
        rec = Recognizer.from_path(args.model)
        return cls(rec, make_decoder(args, rec.tokenizer))

    def transcribe_wave(self, wave) -> dict:
        (lp,) = self.rec.log_probs([wave])
        hyp = self.decoder.decode(lp)
        return {"text": hyp.text, "duration": round(len(wave) / self.rec.sample_rate, 3)}

    def transcribe_file(self, path: str | Path) -> dict:
        return self.transcribe_wave(self.rec.load(path))
