"""asrlab.features.WhisperLogMel against transformers' WhisperFeatureExtractor (unpadded)."""

from __future__ import annotations

import numpy as np
import pytest

from asrlab.features import WhisperLogMel

# Measured: 1.2e-7 against the extractor's NumPy path, 1.8e-5 against its torch.stft path
# (float32 FFT), on values in [-1.5, 1.5].
TOLERANCE = 1e-4


def waves() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(16000 * 3) / 16000
    tone = 0.3 * np.sin(2 * np.pi * 440 * t) * (1 + np.sin(3 * t)) + 0.01 * rng.standard_normal(t.size)
    silence_then_noise = np.concatenate([np.zeros(4000), 0.1 * rng.standard_normal(8345)])
    return [w.astype(np.float32) for w in (tone, silence_then_noise, 0.5 * rng.standard_normal(201))]


@pytest.fixture(scope="module")
def extractor():
    transformers = pytest.importorskip("transformers")
    return transformers.WhisperFeatureExtractor(feature_size=80)


def test_filters_are_whispers(extractor):
    ours = WhisperLogMel()
    assert ours.fbank.shape == (201, 80)
    assert np.abs(ours.fbank - extractor.mel_filters).max() < 1e-6
    from transformers.audio_utils import mel_filter_bank  # large-v3's 128 bins too

    ref = mel_filter_bank(num_frequency_bins=201, num_mel_filters=128, min_frequency=0.0,
                          max_frequency=8000.0, sampling_rate=16000, norm="slaney",
                          mel_scale="slaney")
    assert np.abs(WhisperLogMel(n_mels=128).fbank - ref).max() < 1e-6


@pytest.mark.parametrize("i", range(3))
def test_equals_whisper_feature_extractor_unpadded(extractor, i):
    wave = waves()[i]
    ours = WhisperLogMel()(wave)
    assert ours.dtype == np.float32 and ours.shape == (len(wave) // 160, 80)
    assert WhisperLogMel().num_frames(len(wave)) == ours.shape[0]
    # the extractor's default path (torch.stft when torch is there), unpadded
    ref = extractor(wave, sampling_rate=16000, padding="longest",
                    return_tensors="np").input_features[0].T
    assert ref.shape == ours.shape and np.abs(ref - ours).max() < TOLERANCE
    ref_np = extractor._np_extract_fbank_features(wave[None], "cpu")[0].T
    assert np.abs(ref_np - ours).max() < 1e-5
    assert ours.max() - ours.min() <= 2.0 + 1e-6  # floored 8 log10 units below the max


def test_shorter_than_a_hop_has_no_frames():
    assert WhisperLogMel()(np.zeros(159, np.float32)).shape == (0, 80)
    assert WhisperLogMel()(np.ones(160, np.float32)).shape == (1, 80)


def test_pad_end_appends_the_silence_whispers_padding_gives(extractor):
    """features.pad_end_s: the log-mel of the wave followed by that many zero samples (the floor
    set by the wave's own maximum), never past the 30 s window; feature_frames counts it."""
    from asrlab.frames import feature_frames

    wave = waves()[0][:16000]
    ours = WhisperLogMel(pad_end_s=0.4)(wave)
    assert ours.shape == (140, 80) == (WhisperLogMel(pad_end_s=0.4).num_frames(16000), 80)
    ref = extractor(np.concatenate([wave, np.zeros(6400, np.float32)]), sampling_rate=16000,
                    padding="longest", return_tensors="np").input_features[0].T
    assert np.abs(ref - ours).max() < TOLERANCE
    floor = ours.max() - 2.0  # (max - 8 + 4) / 4 in the normalized units
    assert np.allclose(ours[-35:], floor, atol=1e-5)  # the last frames are all silence
    cfg = WhisperLogMel(pad_end_s=0.4).cfg
    for n in (0, 16000, 479_000, 480_000, 500_000):  # up to the window, not past it
        frames = WhisperLogMel(pad_end_s=0.4)(np.full(n, 0.01, np.float32)).shape[0]
        assert frames == feature_frames(cfg, n) == int(feature_frames(cfg, np.array([n]))[0])
        assert frames == (min(n + 6400, max(n, 480_000)) // 160)
