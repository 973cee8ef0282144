"""Transcribe audio with a trained model: PyTorch checkpoint or exported ONNX model.

    tr = Transcriber.load("runs/x", DecoderOptions(beam=8), threads=1)  # or "model.onnx"
    tr.transcribe_file("a.wav")        # {"text", "words": [{"word","start","end","confidence"}],
                                       #  "duration"}
    tr.transcribe_files(["a.wav", AudioSpan(Path("b.flac"), 3.0, 2.5)])  # Transcript or AudioError
    tr.file_log_probs(files)           # Emissions or AudioError per file: evaluate, tune-lm

`file_log_probs` is the one path from audio files to log-probs for every verb that reads files
(transcribe, evaluate, tune-lm), so they give the same text for the same file and model.

The ONNX path imports neither torch nor asrlab.inference: `--onnx` runs with onnxruntime alone.
Times are in seconds (encoder frames x frame_seconds); see asrlab.words for the confidence.

Audio longer than one window (ChunkConfig, 30 s) goes through asrlab.longform: overlapping
windows read from the file one at a time, so memory stays flat with the audio's length (an hour
of audio takes what 30 s take, plus the stitched log-probs: about 10 MB per hour). Files are
checked against `AudioLimits` from their header before decoding and read through
`audio.load_checked`; empty and NaN/inf audio are refused with AudioError, as the server refuses
them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from asrlab.audio import AudioError, AudioLimits, AudioReader, check_samples, load_checked
from asrlab.decode import DecoderOptions, make_decoder
from asrlab.longform import ArraySource, ChunkConfig, windows_log_probs
from asrlab.model_loader import load_recognizer
from asrlab.recognizer import BaseRecognizer
from asrlab.words import Word, words_for

PENDING_SECONDS = 300.0  # short files held for one length-sorted pass (19 MB at 16 kHz)


@dataclass
class Transcript:
    text: str
    words: list[Word] = field(default_factory=list)
    duration: float = 0.0

    def to_dict(self) -> dict:
        return {"text": self.text, "words": [w.to_dict() for w in self.words],
                "duration": self.duration}


@dataclass(frozen=True)
class AudioSpan:
    """A file to recognize, or a segment of it (`offset`/`duration` in seconds: Kaldi
    `segments`; duration None: to the end)."""
    path: Path
    offset: float = 0.0
    duration: float | None = None


@dataclass
class Emissions:
    """A file's log-probs (T', V) and its length in samples at the model's rate."""
    log_probs: np.ndarray
    samples: int


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

    def waves_log_probs(self, waves: list[np.ndarray]) -> list[Emissions]:
        """Several waveforms: those of at most one window in one batched forward pass, any
        longer one in overlapping windows on its own. AudioError for empty or NaN/inf ones."""
        for w in waves:
            check_samples(w)
        short = [i for i, w in enumerate(waves) if len(w) <= self.window_samples]
        out: list[Emissions | None] = [None] * len(waves)
        if short:
            for i, lp in zip(short, self.rec.log_probs([waves[i] for i in short])):
                out[i] = Emissions(lp, len(waves[i]))
        for i, w in enumerate(waves):
            if out[i] is None:
                out[i] = Emissions(*windows_log_probs(self.rec.log_probs, ArraySource(w),
                                                      self.sample_rate, self.rec.frame_seconds,
                                                      self.chunking))
        return out  # type: ignore[return-value]

    def file_log_probs(self, files: Iterable[str | Path | AudioSpan]
                       ) -> Iterator[Emissions | AudioError]:
        """Each file's log-probs in input order, or the AudioError (naming the file) that says
        why it cannot be used: the one path from files to log-probs (transcribe, evaluate,
        tune-lm). A file of at most one window is read whole (`audio.load_checked`) and held,
        up to PENDING_SECONDS of audio, for one batched pass; a longer one is read and recognized
        window by window from the file (AudioReader), so memory stays flat with its length. A
        segment is read whole within the limits (then windowed in memory if long)."""
        pending: list[np.ndarray | AudioError] = []
        held = 0
        for f in files:
            span = f if isinstance(f, AudioSpan) else AudioSpan(Path(f))
            try:
                source = self._open(span)
            except AudioError as e:
                pending.append(e)
                continue
            if isinstance(source, np.ndarray):
                pending.append(source)
                held += len(source)
                if held >= PENDING_SECONDS * self.sample_rate:
                    yield from self._flush(pending)
                    pending, held = [], 0
                continue
            yield from self._flush(pending)
            pending, held = [], 0
            yield self._windows(source)
        yield from self._flush(pending)

    def _open(self, span: AudioSpan) -> np.ndarray | AudioReader:
        """The whole waveform (a file of at most one window, or a segment), else a reader for
        windows; AudioError for what the limits or the samples refuse."""
        sr = self.sample_rate
        if span.offset or span.duration is not None:
            return load_checked(span.path, sr, self.limits, span.offset, span.duration)
        reader = AudioReader(span.path, sr, self.limits)  # the header against the limits
        n = reader.num_samples
        if n is not None and n <= self.window_samples:
            reader.close()
            return load_checked(span.path, sr, self.limits)
        return reader

    def _windows(self, reader: AudioReader) -> Emissions | AudioError:
        name = reader.name
        try:
            lp, total = windows_log_probs(self.rec.log_probs, reader, self.sample_rate,
                                          self.rec.frame_seconds, self.chunking,
                                          lambda w: check_samples(w, name))
            if total == 0:
                check_samples(np.zeros(0, np.float32), name)
        except AudioError as e:
            return e
        finally:
            reader.close()
        return Emissions(lp, total)

    def _flush(self, pending: list[np.ndarray | AudioError]) -> Iterator[Emissions | AudioError]:
        waves = [p for p in pending if isinstance(p, np.ndarray)]
        done = iter(self.waves_log_probs(waves) if waves else [])
        for p in pending:
            yield p if isinstance(p, AudioError) else next(done)

    def transcribe_waves(self, waves: list[np.ndarray]) -> list[Transcript]:
        """Several waveforms in one batched forward pass (the server micro-batches with it);
        any longer than a window goes through overlapping windows on its own."""
        return [self._decode(e) for e in self.waves_log_probs(waves)]

    def transcribe_wave(self, wave: np.ndarray) -> dict:
        return self.transcribe_waves([wave])[0].to_dict()

    def transcribe_files(self, files: Iterable[str | Path | AudioSpan]
                         ) -> Iterator[Transcript | AudioError]:
        """Each file's transcript in input order, or its AudioError (see `file_log_probs`)."""
        for result in self.file_log_probs(files):
            yield result if isinstance(result, AudioError) else self._decode(result)

    def transcribe_file(self, path: str | Path) -> dict:
        """A file of any length: read whole when it is at most one window, else window by
        window (never all in memory). AudioError naming the file for what cannot be used."""
        result = next(self.transcribe_files([path]))
        if isinstance(result, AudioError):
            raise result
        return result.to_dict()

    def _decode(self, emissions: Emissions) -> Transcript:
        log_probs = emissions.log_probs
        duration = round(emissions.samples / self.sample_rate, 3)
        hyp = self.decoder.decode(log_probs)
        words = words_for(hyp, log_probs, self.rec.tokenizer, self.rec.frame_seconds, duration,
                          self.decoder.blank_penalty)
        return Transcript(hyp.text, words, duration)
