import numpy as np

from asrlab.audio import load_audio, resample
from asrlab.config import AugmentConfig, FeatureConfig
from asrlab.data.augment import spec_augment
from asrlab.features import FeaturePipeline, LogMel, estimate_stats


def test_frame_count_and_shape():
    lm = LogMel(FeatureConfig())
    wave = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    feats = lm(wave)
    assert feats.shape == (lm.num_frames(16000), 80) == (98, 80)
    assert feats.dtype == np.float32


def test_tone_energy_lands_in_the_right_mel_bin():
    cfg = FeatureConfig()
    t = np.arange(16000) / 16000
    low = LogMel(cfg)(np.sin(2 * np.pi * 300 * t).astype(np.float32)).mean(0).argmax()
    high = LogMel(cfg)(np.sin(2 * np.pi * 3000 * t).astype(np.float32)).mean(0).argmax()
    assert low < high


def test_cmvn_normalizes_training_data():
    rng = np.random.default_rng(1)
    waves = [rng.standard_normal(8000).astype(np.float32) * s for s in (0.1, 0.5, 1.0)]
    stats = estimate_stats(waves, FeatureConfig())
    feats = np.concatenate([FeaturePipeline(FeatureConfig(), stats)(w) for w in waves])
    assert np.allclose(feats.mean(0), 0, atol=1e-3) and np.allclose(feats.std(0), 1, atol=1e-2)


def test_resample_and_downmix(tmp_path):
    import soundfile as sf

    sr = 8000
    stereo = np.stack([np.sin(2 * np.pi * 440 * np.arange(sr) / sr)] * 2, 1).astype(np.float32)
    sf.write(tmp_path / "s.wav", stereo, sr, subtype="PCM_U8")
    wave = load_audio(tmp_path / "s.wav", 16000)
    assert wave.ndim == 1 and abs(len(wave) - 16000) <= 2
    assert len(resample(wave, 16000, 22050)) == 22050


def test_spec_augment_masks_scale_with_length_and_leave_shape():
    cfg = AugmentConfig(freq_masks=1, freq_mask_width=10, time_masks=2, time_mask_ratio=0.1)
    feats = np.ones((500, 80), np.float32)
    out = spec_augment(feats, cfg, np.random.default_rng(0))
    assert out.shape == feats.shape and (out == 0).any()
    masked_rows = int((out == 0).all(axis=1).sum())
    assert masked_rows <= 2 * 50  # two masks of at most 10% of 500 frames


def test_utterance_mean_removes_a_fixed_channel_and_ignores_silence():
    """A fixed gain per mel bin (a microphone's colouring) adds a constant to the log-mel;
    utterance_mean removes it, and digital silence around the speech does not move the mean."""
    from dataclasses import replace

    cfg = replace(FeatureConfig(), utterance_mean=True)
    rng = np.random.default_rng(0)
    speech = (rng.standard_normal(16000) * np.sin(np.linspace(0, 20, 16000)) ** 2).astype(np.float32)
    coloured = np.convolve(speech, [1.0, 0.9], mode="same").astype(np.float32)  # a filter
    plain, filtered = LogMel(FeatureConfig())(speech), LogMel(FeatureConfig())(coloured)
    assert np.abs((filtered - plain).mean(0)).max() > 0.5  # the filter moves the plain features
    a, b = LogMel(cfg)(speech), LogMel(cfg)(coloured)
    assert np.abs(b.mean(0) - a.mean(0)).max() < 0.1
    padded = np.concatenate([np.zeros(8000, np.float32), speech, np.zeros(8000, np.float32)])
    c = LogMel(cfg)(padded)[50:-50]  # the speech frames of the padded utterance
    assert np.abs(c.mean(0) - a.mean(0)).max() < 0.2  # only the edge frames differ
    naive = LogMel(FeatureConfig())(padded)
    naive = (naive - naive.mean(0))[50:-50]  # a plain mean, silence included
    assert np.abs(naive.mean(0) - a.mean(0)).max() > 5
