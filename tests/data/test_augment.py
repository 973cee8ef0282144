"""Augmentation: SpecAugment, speed perturbation, additive noise, vocal-tract-length perturbation;
all of it off at evaluation.

The last tests cover generated (white/pink) and folder noise.
"""

import numpy as np
import pytest
import soundfile as sf

from asrlab.config import AugmentConfig, FeatureConfig
from asrlab.data import augment as aug_module
from asrlab.data.augment import add_noise, spec_augment, speed_perturb
from asrlab.data.dataset import SpeechDataset
from asrlab.data.manifest import Utterance
from asrlab.data.tokenizer import CharTokenizer
from asrlab.features import FeaturePipeline, LogMel, estimate_stats, warp_freq

SR = 16000


def tone(seconds: float, hz: float = 440.0, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def dominant_hz(wave: np.ndarray, sr: int = SR) -> float:
    return float(np.argmax(np.abs(np.fft.rfft(wave))) * sr / len(wave))


def masked_rows(feats: np.ndarray) -> np.ndarray:
    return np.all(feats == 0, axis=1)


def runs(mask: np.ndarray) -> list[int]:
    """Lengths of consecutive True runs."""
    out, n = [], 0
    for m in mask.tolist() + [False]:
        if m:
            n += 1
        elif n:
            out.append(n)
            n = 0
    return out


# ---- SpecAugment ------------------------------------------------------------------------

def test_time_masks_scale_with_utterance_length():
    cfg = AugmentConfig(freq_masks=0, time_masks=1, time_mask_ratio=0.05)
    widths = {}
    for T in (200, 2000):
        w = []
        for seed in range(300):
            feats = spec_augment(np.ones((T, 80), np.float32), cfg, np.random.default_rng(seed))
            w.append(int(masked_rows(feats).sum()))
        widths[T] = np.asarray(w)
        assert widths[T].max() <= cfg.time_mask_ratio * T  # never more than the ratio
    # the same fraction of the utterance on average, so 10x longer gives ~10x wider masks
    ratio = widths[2000].mean() / widths[200].mean()
    assert 7 < ratio < 13, ratio
    assert widths[2000].max() > 5 * widths[200].max()


def test_freq_masks_bounded_by_width_and_count():
    cfg = AugmentConfig(freq_masks=2, freq_mask_width=15, time_masks=0)
    seen_any = False
    for seed in range(200):
        feats = spec_augment(np.ones((50, 80), np.float32), cfg, np.random.default_rng(seed))
        cols = np.all(feats == 0, axis=0)
        assert cols.sum() <= 2 * 15
        assert len(runs(cols)) <= 2
        seen_any |= bool(cols.any())
        assert not masked_rows(feats).any()  # no time masks asked for
    assert seen_any


def test_spec_augment_does_not_modify_its_input():
    feats = np.ones((100, 80), np.float32)
    spec_augment(feats, AugmentConfig(), np.random.default_rng(0))
    assert (feats == 1).all()


# ---- speed perturbation -----------------------------------------------------------------

@pytest.mark.parametrize("factor", [0.9, 1.0, 1.1])
def test_speed_perturbation_changes_length_and_pitch_by_the_factor(factor):
    wave = tone(2.0, 440.0)
    out = speed_perturb(wave, factor)
    assert abs(len(out) - len(wave) / factor) <= 2
    assert dominant_hz(out) == pytest.approx(440.0 * factor, abs=1.0)
    assert out.dtype == np.float32


# ---- vocal-tract-length perturbation -----------------------------------------------------

@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_vtlp_warp_scales_the_middle_and_keeps_the_band_edges(factor):
    hz = np.linspace(20, 7600, 400)
    warped = warp_freq(hz, factor, 20, 7600)
    assert warped[0] == pytest.approx(20) and warped[-1] == pytest.approx(7600)
    assert np.all(np.diff(warped) > 0)  # monotonic: filters keep their order
    middle = (hz > 200) & (hz < 5000)
    np.testing.assert_allclose(warped[middle], hz[middle] / factor, rtol=1e-9)
    np.testing.assert_array_equal(warp_freq(hz, 1.0, 20, 7600), hz)


def test_vtlp_moves_a_formant_to_higher_bins_for_factors_above_one():
    """factor > 1 places the filters lower, so a fixed tone lands in a higher bin, as the
    formants of a speaker with a shorter vocal tract would."""
    logmel = LogMel(FeatureConfig())
    peak = {f: int(logmel(tone(0.5, 1500.0), warp=f).mean(0).argmax()) for f in (0.85, 1.0, 1.15)}
    assert peak[0.85] < peak[1.0] < peak[1.15], peak


# ---- additive noise ---------------------------------------------------------------------

@pytest.mark.parametrize("snr_db", [0.0, 10.0, 25.0])
@pytest.mark.parametrize("noise_seconds", [0.3, 3.0])  # shorter noise is tiled, longer is cut
def test_noise_is_mixed_at_the_requested_snr(snr_db, noise_seconds):
    rng = np.random.default_rng(0)
    wave = tone(1.0) * (1 + 0.5 * np.sin(np.linspace(0, 20, SR))).astype(np.float32)
    noise = rng.standard_normal(int(noise_seconds * SR)).astype(np.float32) * 0.05
    mixed = add_noise(wave, noise, snr_db)
    added = mixed - wave
    measured = 10 * np.log10(np.mean(wave ** 2) / np.mean(added ** 2))
    assert len(mixed) == len(wave)
    assert measured == pytest.approx(snr_db, abs=0.1)


# ---- the dataset: on in training, off in evaluation ------------------------------------

@pytest.fixture()
def utts(tmp_path):
    out = []
    for i, text in enumerate(["a cab", "bad cab"]):
        path = tmp_path / f"u{i}.wav"
        sf.write(path, tone(1.0 + 0.3 * i, 300 + 100 * i), SR)
        out.append(Utterance(f"u{i}", path, 1.0 + 0.3 * i, text))
    return out


def make_dataset(utts, augment):
    cfg = FeatureConfig()
    stats = estimate_stats([tone(1.0), tone(1.3, 400)], cfg)
    tok = CharTokenizer.train([u.text for u in utts])
    return SpeechDataset(utts, FeaturePipeline(cfg, stats), tok, augment, seed=7), \
        FeaturePipeline(cfg, stats)


def test_evaluation_dataset_is_deterministic_and_unaugmented(utts):
    ds, pipeline = make_dataset(utts, None)
    for i, u in enumerate(utts):
        first = ds[i].feats.copy()
        ds.set_epoch(5)
        again = ds[i].feats
        np.testing.assert_array_equal(first, again)
        wave, _ = sf.read(u.audio_filepath, dtype="float32")
        np.testing.assert_array_equal(first, pipeline(wave))  # exactly the plain features


def by_epoch(ds, i: int, epochs: int) -> list[np.ndarray]:
    """Utterance i's training features in each of the first `epochs` epochs."""
    out = []
    for epoch in range(epochs):
        ds.set_epoch(epoch)
        out.append(ds[i].feats)
    return out


def test_training_dataset_augments_differently_per_epoch_but_reproducibly(utts):
    aug = AugmentConfig(speed_perturb=(0.9, 1.1), freq_masks=2, time_masks=2)
    ds, pipeline = make_dataset(utts, aug)
    plain = pipeline(sf.read(utts[1].audio_filepath, dtype="float32")[0])
    feats = by_epoch(ds, 1, 4)
    assert all(f.shape != plain.shape or not np.array_equal(f, plain) for f in feats)
    assert len({f.shape[0] for f in feats}) > 1 or \
        not all(np.array_equal(feats[0], f) for f in feats[1:])
    ds.set_epoch(2)
    np.testing.assert_array_equal(ds[1].feats, feats[2])  # same (seed, epoch, i): same


def changes_spectra_not_lengths(utts, aug: AugmentConfig) -> list[np.ndarray]:
    """Utterance 1's features in 3 epochs: each the plain shape but changed, each epoch
    different, and reproducible per (seed, epoch)."""
    ds, pipeline = make_dataset(utts, aug)
    plain = pipeline(sf.read(utts[1].audio_filepath, dtype="float32")[0])
    feats = by_epoch(ds, 1, 3)
    assert all(f.shape == plain.shape and not np.allclose(f, plain) for f in feats)
    assert not np.array_equal(feats[0], feats[1])
    ds.set_epoch(1)
    np.testing.assert_array_equal(ds[1].feats, feats[1])  # reproducible per (seed, epoch)
    return feats


def test_vtlp_in_training_changes_spectra_not_lengths(utts):
    changes_spectra_not_lengths(utts, AugmentConfig(speed_perturb=(1.0,), freq_masks=0,
                                                    time_masks=0, vtlp=(0.85, 1.15)))


def test_noise_prob_zero_adds_no_noise(utts):
    aug = AugmentConfig(speed_perturb=(1.0,), freq_masks=0, time_masks=0, noise_prob=0.0)
    ds, pipeline = make_dataset(utts, aug)
    plain = pipeline(sf.read(utts[0].audio_filepath, dtype="float32")[0])
    np.testing.assert_array_equal(ds[0].feats, plain)


# ---- generated and folder noise ---------------------------------------------------------------

def spectrum_slope(noise: np.ndarray) -> float:
    """Slope of log power vs log frequency (white: 0, pink: -1)."""
    power = np.abs(np.fft.rfft(noise)) ** 2
    f = np.arange(len(power))
    band = (f > 10) & (f < len(power) - 10)
    return float(np.polyfit(np.log(f[band]), np.log(power[band] + 1e-20), 1)[0])


def test_generated_white_and_pink_noise_have_their_spectra():
    rng = np.random.default_rng(0)
    white = aug_module.generated_noise("white", 2 * SR, rng)
    pink = aug_module.generated_noise("pink", 2 * SR, rng)
    assert white.std() == pytest.approx(1.0, rel=0.05)
    assert pink.std() == pytest.approx(1.0, rel=0.05)
    assert abs(spectrum_slope(white)) < 0.1
    assert spectrum_slope(pink) == pytest.approx(-1.0, abs=0.1)


class WaveAsFeatures:
    """A stand-in pipeline whose 'features' are the waveform itself, (S, 1): lets a test see
    exactly what the dataset mixed."""
    cfg = FeatureConfig()

    def __call__(self, wave, warp=1.0):
        assert warp == 1.0  # these tests leave VTLP off
        return np.asarray(wave, np.float32)[:, None]


def test_noise_prob_one_without_noise_dir_uses_generated_noise_at_the_snr(utts):
    aug = AugmentConfig(speed_perturb=(1.0,), freq_masks=0, time_masks=0, noise_prob=1.0,
                        noise_snr_db=(10.0, 10.0))
    tok = CharTokenizer.train([u.text for u in utts])
    ds = SpeechDataset(utts, WaveAsFeatures(), tok, aug, seed=3)
    slopes = []
    for epoch in range(6):
        ds.set_epoch(epoch)
        clean = sf.read(utts[0].audio_filepath, dtype="float32")[0]
        added = ds[0].feats[:, 0] - clean
        snr = 10 * np.log10(np.mean(clean ** 2) / (np.mean(added ** 2) + 1e-20))
        assert snr == pytest.approx(10.0, abs=0.05)
        slopes.append(spectrum_slope(added))
    # both kinds are drawn: some epochs white (slope ~0), some pink (~-1)
    assert min(slopes) < -0.8 and max(slopes) > -0.2, slopes


def test_noise_folder_is_loaded_and_bad_files_named(tmp_path, caplog):
    folder = tmp_path / "noise"
    folder.mkdir()
    sf.write(folder / "hum.wav", tone(0.5, 50.0, 8000), 8000)  # resampled to 16 kHz
    (folder / "broken.wav").write_text("not audio")
    noises = aug_module.load_noises(folder, SR)
    assert len(noises) == 1 and len(noises[0]) == SR // 2
    assert "broken.wav" in caplog.text
    with pytest.raises(FileNotFoundError, match="no usable noise"):
        aug_module.load_noises(tmp_path / "empty_dir_that_has_nothing", SR)


# ---- robustness augmentation: reverberation, pitch, band-limiting, gain, clipping -------

from asrlab.config import Config, ConfigError  # noqa: E402

ROBUST = dict(vocode_prob=1.0, reverb_prob=1.0, pitch_prob=1.0, bandlimit_prob=1.0, gain_db=(-6.0, 6.0),
              clip_prob=1.0)


def speech_like(seconds: float = 1.5, seed: int = 0) -> np.ndarray:
    """A 150 Hz buzz with harmonics, amplitude-modulated like syllables."""
    t = np.arange(int(seconds * SR)) / SR
    buzz = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 20))
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)
    noise = 0.01 * np.random.default_rng(seed).standard_normal(t.size)
    return (0.1 * buzz * env + noise).astype(np.float32)


@pytest.mark.parametrize("semitones", [-2.0, 2.0])
def test_pitch_shift_moves_the_pitch_and_keeps_the_length(semitones):
    wave = tone(2.0, 300.0)
    out = aug_module.pitch_shift(wave, semitones)
    assert out.shape == wave.shape and out.dtype == np.float32
    assert dominant_hz(out) == pytest.approx(300.0 * 2 ** (semitones / 12), rel=0.01)


def test_room_impulse_responses_are_seeded_and_reverberate_at_the_same_level():
    pytest.importorskip("pyroomacoustics")
    a = aug_module.room_impulse_response(1, 0, 0.3, 0.6)
    assert np.array_equal(a, aug_module.room_impulse_response(1, 0, 0.3, 0.6))
    assert not np.array_equal(a[:500], aug_module.room_impulse_response(1, 1, 0.3, 0.6)[:500])
    assert np.argmax(np.abs(a)) == 0 and np.sum(a ** 2) == pytest.approx(1.0, rel=1e-4)
    wave = speech_like()
    wet = aug_module.reverberate(wave, a)
    assert wet.shape == wave.shape
    assert np.sqrt(np.mean(wet ** 2)) == pytest.approx(np.sqrt(np.mean(wave ** 2)), rel=1e-3)
    # the room smears energy into the gaps: the envelope's dips are shallower
    frames = lambda x: np.sqrt(np.mean(x[:len(x) // 400 * 400].reshape(-1, 400) ** 2, axis=1))
    assert frames(wet).min() / frames(wet).max() > frames(wave).min() / frames(wave).max()
    # longer RT60 -> more energy late in the response
    short = aug_module.room_impulse_response(2, 0, 0.2, 0.2)
    long = aug_module.room_impulse_response(2, 0, 0.8, 0.8)
    late = int(0.1 * SR)
    assert np.sum(long[late:] ** 2) > 2 * np.sum(short[late:] ** 2)


def vowel(seconds: float, f0: float, formants=(700.0, 1200.0, 2600.0)) -> np.ndarray:
    """A pulse train at f0 through three formant resonances: a sustained vowel."""
    from scipy.signal import lfilter

    pulses = np.zeros(int(seconds * SR))
    pulses[::int(SR / f0)] = 1.0
    out = pulses
    for hz in formants:  # two-pole resonator, 80 Hz bandwidth
        r = np.exp(-np.pi * 80 / SR)
        out = lfilter([1.0], [1.0, -2 * r * np.cos(2 * np.pi * hz / SR), r * r], out)
    return (0.3 * out / np.abs(out).max()).astype(np.float32)


def pitch_hz(wave: np.ndarray) -> float:
    """The lag of the strongest autocorrelation peak (a local maximum) between 60 and 400 Hz."""
    r = np.correlate(wave, wave, "full")[len(wave) - 1:]
    lags = np.arange(SR // 400, SR // 60)
    peaks = lags[(r[lags] > r[lags - 1]) & (r[lags] >= r[lags + 1])]
    return SR / int(peaks[np.argmax(r[peaks])])


def envelope_peak_hz(wave: np.ndarray, low: float, high: float) -> float:
    """Where the smoothed power spectrum peaks between low and high Hz."""
    power = np.abs(np.fft.rfft(wave * np.hanning(len(wave)))) ** 2
    f = np.fft.rfftfreq(len(wave), 1 / SR)
    smooth = np.convolve(power, np.ones(101) / 101, "same")  # ~ 50 Hz wide: over the harmonics
    band = (f >= low) & (f < high)
    return float(f[band][np.argmax(smooth[band])])


def test_vocode_replaces_the_source_and_keeps_the_envelope_length_and_level():
    """The LPC vocoder's pulses carry the new F0; the formants (the envelope) stay where they
    were; silence stays silent; length and level are kept; the draws come from the rng."""
    wave = np.concatenate([vowel(0.6, 110.0), np.zeros(SR // 5, np.float32), vowel(0.6, 110.0)])
    out = aug_module.vocode(wave, 200.0, np.random.default_rng(0))
    assert out.shape == wave.shape and out.dtype == np.float32
    middle = slice(int(0.1 * SR), int(0.5 * SR))
    assert pitch_hz(wave[middle]) == pytest.approx(110, rel=0.05)
    assert pitch_hz(out[middle]) == pytest.approx(200, rel=0.12)  # the contour moves +-10 %
    for low, high in ((500, 900), (1000, 1500), (2300, 3000)):
        assert envelope_peak_hz(out[middle], low, high) == pytest.approx(
            envelope_peak_hz(wave[middle], low, high), abs=120)
    assert np.sqrt(np.mean(out ** 2)) == pytest.approx(np.sqrt(np.mean(wave ** 2)), rel=0.25)
    gap = slice(int(0.65 * SR), int(0.75 * SR))
    assert np.abs(out[gap]).max() < 1e-3
    again = aug_module.vocode(wave, 200.0, np.random.default_rng(0))
    np.testing.assert_array_equal(out, again)


def band_power(wave: np.ndarray, low: float, high: float) -> float:
    power = np.abs(np.fft.rfft(wave)) ** 2
    f = np.fft.rfftfreq(len(wave), 1 / SR)
    return float(power[(f >= low) & (f < high)].sum() / power.sum())


def test_band_limiting_removes_what_a_telephone_or_8k_line_cannot_carry():
    white = np.random.default_rng(0).standard_normal(SR).astype(np.float32)
    phone = aug_module.band_limit(white, "telephone")
    narrow = aug_module.band_limit(white, "8k")
    assert phone.shape == narrow.shape == white.shape
    assert band_power(white, 4200, 8000) > 0.4
    assert band_power(phone, 4200, 8000) < 0.01 and band_power(phone, 0, 150) < 0.001
    assert band_power(narrow, 4200, 8000) < 0.005 and band_power(narrow, 300, 3400) > 0.6
    with pytest.raises(ValueError, match="telephone"):
        aug_module.band_limit(white, "radio")


def test_clip_caps_at_the_level_times_the_peak():
    wave = tone(0.5)
    out = aug_module.clip(wave, 0.6)
    assert out.shape == wave.shape
    assert np.abs(out).max() == pytest.approx(0.6 * np.abs(wave).max())
    small = np.abs(wave) < 0.6 * np.abs(wave).max()
    np.testing.assert_array_equal(out[small], wave[small])


def test_chain_draws_are_per_seed_and_off_draws_nothing():
    pytest.importorskip("pyroomacoustics")
    cfg = AugmentConfig(**ROBUST)
    wave = speech_like()
    outs = [aug_module.channel_wave(*aug_module.augment_wave(wave, cfg,
                                    np.random.default_rng(s), 5)[:1], cfg,
                                    np.random.default_rng(s + 100)) for s in (0, 0, 1)]
    assert all(o[0].shape == wave.shape for o in outs)
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    assert not np.array_equal(outs[0][0], outs[2][0])
    # all switches off: the waveform is returned untouched and the generator is not advanced
    rng = np.random.default_rng(3)
    same, drawn = aug_module.augment_wave(wave, AugmentConfig(), rng, 5)
    same2, drawn2 = aug_module.channel_wave(same, AugmentConfig(), rng)
    assert same2 is wave and drawn == drawn2 == {}
    assert rng.random() == np.random.default_rng(3).random()


def old_features(ds, i: int) -> np.ndarray:
    """The training features as computed before the robustness switches existed."""
    vtlp_factor = aug_module.vtlp_factor
    rng = np.random.default_rng((ds.seed, ds.epoch, i))
    wave, aug = ds.wave(i), ds.augment
    if len(aug.speed_perturb) > 1 or aug.speed_perturb[0] != 1.0:
        wave = speed_perturb(wave, float(rng.choice(aug.speed_perturb)))
    if aug.noise_prob > 0 and rng.random() < aug.noise_prob:
        snr_db = float(rng.uniform(*aug.noise_snr_db))
        wave = add_noise(wave, ds.noise(len(wave), rng), snr_db)
    return spec_augment(ds.pipeline(wave, vtlp_factor(aug, rng)), aug, rng)


def test_switches_off_gives_bit_identical_features_to_before(utts):
    aug = AugmentConfig(noise_prob=0.5, vtlp=(0.9, 1.1))  # the old augmentations on
    ds, _ = make_dataset(utts, aug)
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i in range(len(utts)):
            np.testing.assert_array_equal(ds[i].feats, old_features(ds, i))


def test_training_dataset_with_every_switch_keeps_lengths_and_is_reproducible(utts):
    pytest.importorskip("pyroomacoustics")
    aug = AugmentConfig(speed_perturb=(1.0,), freq_masks=0, time_masks=0, **ROBUST)
    feats = changes_spectra_not_lengths(utts, aug)
    other, _ = make_dataset(utts, aug)
    other.seed = 8
    other.set_epoch(1)
    assert not np.array_equal(other[1].feats, feats[1])  # another seed, other draws


def test_evaluation_never_augments_even_when_the_config_asks(utts):
    """The evaluation path builds its dataset without an AugmentConfig (train_setup.make_data's
    val_ds, evaluate): whatever the config says, features are the plain pipeline's."""
    import inspect

    from asrlab import train_setup

    src = inspect.getsource(train_setup.make_data)
    assert "SpeechDataset(va.used, pipeline, tokenizer, None" in src
    ds, pipeline = make_dataset(utts, None)
    for i, u in enumerate(utts):
        np.testing.assert_array_equal(ds[i].feats,
                                      pipeline(sf.read(u.audio_filepath, dtype="float32")[0]))


@pytest.mark.parametrize("field,value,fix", [
    ("reverb_prob", 1.5, "must be in \\[0, 1\\]"),
    ("vocode_prob", -0.1, "augment.vocode_prob must be in \\[0, 1\\]"),
    ("vocode_f0", (300.0, 100.0), "e.g. \\[80, 250\\]"),
    ("pitch_semitones", (3.0, -3.0), "low <= high"),
    ("gain_db", (-60.0, 0.0), "e.g. \\[-6, 6\\]"),
    ("clip_level", (0.0, 0.9), "e.g. \\[0.5, 0.9\\]"),
    ("bandlimit_kinds", ("radio",), "telephone, 8k"),
    ("reverb_rooms", 0, "reverb_rooms must be >= 1"),
])
def test_invalid_switches_are_refused_with_the_fix(field, value, fix):
    with pytest.raises(ConfigError, match=fix):
        Config(augment=AugmentConfig(**{field: value})).validate()


def test_reverb_without_pyroomacoustics_says_how_to_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "pyroomacoustics" else real(name, *a))
    with pytest.raises(ConfigError, match="pip install pyroomacoustics"):
        Config(augment=AugmentConfig(reverb_prob=0.3)).validate()


def documented_order() -> list[str]:
    """The numbered steps of asrlab/data/augment.py's docstring, by name."""
    import re

    return [m.group(1) for m in re.finditer(r"^ *\d+\. (\S+(?: \S+)*?)  ", aug_module.__doc__,
                                            re.MULTILINE)]


def test_the_documented_order_is_the_order_the_dataset_applies(utts, monkeypatch):
    """Every step switched on; what SpeechDataset.features calls, in order, is the list of
    asrlab.data.augment's docstring (the steps inside augment_wave and channel_wave in the
    order they report their draws)."""
    pytest.importorskip("pyroomacoustics")
    from asrlab.data import dataset as ds_module

    assert documented_order() == [
        "speed perturbation", "re-excitation", "pitch shift", "reverberation", "additive noise",
        "band-limiting", "gain", "clipping", "VTLP", "SpecAugment"]
    steps: list[str] = []
    named = {"vocode_f0": "re-excitation", "semitones": "pitch shift", "room": "reverberation",
             "band": "band-limiting", "gain_db": "gain", "clip": "clipping"}

    def record(name: str, step: str, drawn: bool = False) -> None:
        original = getattr(ds_module, name)

        def wrapper(*args, **kwargs):
            out = original(*args, **kwargs)
            steps.extend([named[k] for k in out[1]] if drawn else [step])
            return out
        monkeypatch.setattr(ds_module, name, wrapper)

    for name, step in [("speed_perturb", "speed perturbation"), ("add_noise", "additive noise"),
                       ("vtlp_factor", "VTLP"), ("spec_augment", "SpecAugment")]:
        record(name, step)
    record("augment_wave", "", drawn=True)
    record("channel_wave", "", drawn=True)
    aug = AugmentConfig(speed_perturb=(0.9, 1.1), noise_prob=1.0, vtlp=(0.9, 1.1), **ROBUST)
    ds, _ = make_dataset(utts, aug)
    ds.features(0)
    assert steps == documented_order()
