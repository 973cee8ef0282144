"""The decode path (asrlab.audio): streamed downmix + resampling equals resampling the whole
signal at once, and one decode holds its output plus a bounded working set, whatever the file's
rate, channel count or length."""

from __future__ import annotations

import io
import tracemalloc

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from asrlab.audio import (DECODE_WORK_BYTES, AudioLimits, AudioReader, StreamResampler,
                          decode_audio_bytes, load_audio, resample)

# The streamed output is the whole-signal resample_poly up to float32 rounding: measured
# bit-identical on every case here; the tolerance allows a different summation order only.
ATOL = 1e-6


def _signal(sr: int, seconds: float, channels: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)[:, None]
    return (tone + 0.1 * rng.standard_normal((len(t), channels))).astype(np.float32)


def _whole(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """The pre-streaming path: downmix everything, then one resample_poly over it all."""
    mono = x.mean(axis=1, dtype=np.float32) if x.shape[1] > 1 else x[:, 0]
    if sr_in == sr_out:
        return mono
    from fractions import Fraction

    r = Fraction(sr_out, sr_in).limit_denominator(1000)
    return resample_poly(mono, r.numerator, r.denominator).astype(np.float32)


@pytest.mark.parametrize("sr,channels,seconds", [
    (8000, 1, 3.3), (22050, 2, 5.1), (44100, 2, 9.7), (48000, 8, 3.0), (96000, 1, 6.2),
    (11025, 1, 1.0), (32000, 3, 4.0), (16000, 2, 2.0), (44100, 1, 0.01)])
def test_streamed_decode_equals_resampling_the_whole_file(sr, channels, seconds):
    x = _signal(sr, seconds, channels)
    buf = io.BytesIO()
    sf.write(buf, x, sr, format="WAV", subtype="FLOAT")
    got = decode_audio_bytes(buf.getvalue(), 16000)
    want = _whole(x, sr, 16000)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)


def test_stream_resampler_pieces_of_any_size_give_the_same_output():
    x = _signal(44100, 8.0, 1)[:, 0]
    want = _whole(x[:, None], 44100, 16000)
    rng = np.random.default_rng(1)
    rs, outs, i = StreamResampler(44100, 16000), [], 0
    while i < len(x):
        n = int(rng.integers(1, 50_000))
        outs.append(rs.push(x[i:i + n]))
        i += n
    outs.append(rs.flush())
    got = np.concatenate(outs)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)
    for sr_out in (8000, 22050):  # the public function, down and up
        np.testing.assert_allclose(resample(x, 44100, sr_out), _whole(x[:, None], 44100, sr_out),
                                   rtol=0, atol=ATOL)


def test_reader_windows_equal_the_same_span_of_the_whole_file(tmp_path):
    x = _signal(44100, 12.0, 2)
    path = tmp_path / "a.wav"
    sf.write(path, x, 44100, subtype="FLOAT")
    whole = load_audio(path, 16000)
    with AudioReader(path, 16000) as r:
        assert r.num_samples == len(whole)
        for start, stop in [(0, 16000), (7777, 40000), (32000, 10 ** 7)]:
            np.testing.assert_allclose(r.read(start, stop), whole[start:stop], rtol=0, atol=ATOL)


@pytest.mark.parametrize("sr,channels", [(96000, 1), (48000, 8)])
def test_one_decode_holds_its_output_and_a_bounded_working_set(sr, channels):
    """60 s at 96 kHz (or 8 x 48 kHz): the file's own rate is never held whole (that alone would
    be 23 MB; the pre-streaming decode peaked at about twice it)."""
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", sr, channels, format="FLAC", subtype="PCM_16") as f:
        quiet = (np.random.default_rng(0).integers(-50, 50, (sr * 5, channels))).astype(np.int16)
        for _ in range(12):
            f.write(quiet)
    data = buf.getvalue()
    limits = AudioLimits(max_seconds=600, max_sample_rate=192_000,
                         max_decoded_samples=600 * sr * channels)
    decode_audio_bytes(data, 16000, limits)  # imports and the filter cache, outside the count
    tracemalloc.start()
    try:
        wave = decode_audio_bytes(data, 16000, limits)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(wave) == 16000 * 60
    assert peak <= wave.nbytes + DECODE_WORK_BYTES, (peak / 2 ** 20, wave.nbytes / 2 ** 20)
    assert peak < 2 * wave.nbytes + 2 ** 20  # nothing like a copy at 96 kHz
