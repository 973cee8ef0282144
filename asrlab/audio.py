"""Audio in: read any file soundfile can, downmix to mono, resample to the model's rate.

Everything that touches a waveform (training, evaluation, inference, the server) goes through
`load_audio`, so a file is read the same way everywhere.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf


class AudioError(ValueError):
    """An audio file that cannot be used; the message names the file and the reason."""


def resample(wave: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Polyphase resampling (scipy's resample_poly: anti-aliased, exact for rational ratios)."""
    if sr_in == sr_out or wave.size == 0:
        return wave.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    ratio = Fraction(sr_out, sr_in).limit_denominator(1000)
    return resample_poly(wave, ratio.numerator, ratio.denominator).astype(np.float32)


def to_mono(wave: np.ndarray) -> np.ndarray:
    """(S,) or (S, C) -> (S,), averaging channels."""
    return wave if wave.ndim == 1 else wave.mean(axis=1)


def load_audio(path: str | Path, sample_rate: int = 16000, offset: float = 0.0,
               duration: float | None = None) -> np.ndarray:
    """Read `path` as float32 mono at `sample_rate`. Raises AudioError naming the file.

    `offset`/`duration` (seconds) read a segment only (Kaldi `segments`); None reads to the end."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: " + ("is a folder, not an audio file" if path.is_dir()
                                        else "file not found"))
    try:
        with sf.SoundFile(str(path)) as f:
            sr = f.samplerate
            start = int(round(offset * sr))
            if start:
                f.seek(min(start, f.frames))
            frames = -1 if duration is None else int(round(duration * sr))
            wave = f.read(frames, dtype="float32", always_2d=False)
    except Exception as e:  # soundfile raises several types (LibsndfileError, RuntimeError...)
        raise AudioError(f"{path}: cannot be read as audio ({e})") from None
    return resample(to_mono(wave), sr, sample_rate)


def decode_audio_bytes(data: bytes, sample_rate: int = 16000) -> np.ndarray:
    """Like load_audio, for an in-memory file (uploads)."""
    import io

    try:
        wave, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    except Exception as e:
        raise AudioError(f"not a readable audio file ({e})") from None
    return resample(to_mono(wave), sr, sample_rate)


def speed_perturb(wave: np.ndarray, factor: float) -> np.ndarray:
    """Play `factor` times faster (tempo and pitch, as Kaldi's speed perturbation)."""
    if factor == 1.0:
        return wave
    ratio = Fraction(factor).limit_denominator(20)
    from scipy.signal import resample_poly

    return resample_poly(wave, ratio.denominator, ratio.numerator).astype(np.float32)
