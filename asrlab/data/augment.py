"""Training-time augmentation, all of it (evaluation and inference never augment).

The order, per utterance (`SpeechDataset.features` and `wave_steps` apply it):

    1. speed perturbation       speed_perturb (tempo and pitch; the length changes by 1/factor)
    2. re-excitation            vocode (an LPC vocoder: the voice source replaced)
    3. pitch shift              pitch_shift (resampling + WSOLA, duration kept)
    4. reverberation            room_impulse_response + reverberate
    5. additive noise           add_noise (load_noises' files or generated_noise)
    6. band-limiting            band_limit (telephone band or 8 kHz)
    7. gain                     a gain in dB drawn from augment.gain_db
    8. clipping                 clip
    then on the log-mel features:
    9. VTLP                     vtlp_factor draws the warp; asrlab.features warps the filterbank
   10. SpecAugment              spec_augment (frequency and time masks)

Steps 2-4 are `augment_wave` (the voice, the speaker and the room), 6-8 `channel_wave` (the
microphone and the line). With a pretrained encoder whose frozen states are cached
(asrlab.encoder_cache) only steps 1 (each speed variant encoded once) and 10 (masks over time
and the encoder's dimensions) apply; Config.validate refuses the others there.

The waveform steps after speed perturbation take a float32 waveform (S,) at `sample_rate` and
return one of the same length, so transcripts stay aligned. Each is switched on by its
AugmentConfig field and draws from the dataset's per-(seed, epoch, utterance) generator; a switch
that is off draws nothing from it (so turning one on never changes the others' draws) and
returns its input object unchanged (the feature cache relies on that).
"""

from __future__ import annotations

import logging
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import numpy as np

from asrlab.audio import AudioError, load_audio, resample
from asrlab.config import AugmentConfig

BANDLIMIT_KINDS = ("telephone", "8k")
TELEPHONE_BAND = (300.0, 3400.0)
ROOM_MIN = (3.0, 3.0, 2.4)  # metres: the simulated rooms' smallest and largest dimensions
ROOM_MAX = (9.0, 7.0, 3.6)
MAX_IMAGE_ORDER = 60  # image-source reflections kept: enough for RT60 ~0.8 s in these rooms


# ---- speed perturbation --------------------------------------------------------------------

def speed_perturb(wave: np.ndarray, factor: float) -> np.ndarray:
    """Play `factor` times faster (tempo and pitch, as Kaldi's speed perturbation)."""
    if factor == 1.0:
        return wave
    ratio = Fraction(factor).limit_denominator(20)
    from scipy.signal import resample_poly

    return resample_poly(wave, ratio.denominator, ratio.numerator).astype(np.float32)


# ---- reverberation -------------------------------------------------------------------------

@lru_cache(maxsize=256)
def room_impulse_response(seed: int, index: int, rt60_low: float, rt60_high: float,
                          sample_rate: int = 16000) -> np.ndarray:
    """Room `index` of a seeded bank: a shoebox room (dimensions in ROOM_MIN..ROOM_MAX, RT60
    uniform in [rt60_low, rt60_high], source and microphone at random places 0.5 m from the
    walls) simulated with pyroomacoustics' image-source method. Returns the impulse response
    from its direct-path peak on, scaled to unit energy. Cached: each room is made once."""
    import pyroomacoustics as pra

    rng = np.random.default_rng((seed, 7919, index))
    dims = rng.uniform(ROOM_MIN, ROOM_MAX)
    rt60 = float(rng.uniform(rt60_low, rt60_high))
    absorption, order = pra.inverse_sabine(rt60, dims)
    room = pra.ShoeBox(dims, fs=sample_rate, materials=pra.Material(absorption),
                       max_order=min(order, MAX_IMAGE_ORDER))
    room.add_source(rng.uniform(0.5, dims - 0.5))
    room.add_microphone(rng.uniform(0.5, dims - 0.5))
    room.compute_rir()
    rir = np.asarray(room.rir[0][0], np.float64)
    rir = rir[int(np.argmax(np.abs(rir))):]  # no pre-delay: the speech stays where it was
    return (rir / np.sqrt(np.sum(rir ** 2) + 1e-20)).astype(np.float32)


def reverberate(wave: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve with `rir`, cut to the input length, keep the input's RMS level."""
    from scipy.signal import fftconvolve

    if wave.size == 0:
        return wave
    wet = fftconvolve(wave, rir)[:len(wave)]
    scale = np.sqrt((np.mean(wave ** 2) + 1e-12) / (np.mean(wet ** 2) + 1e-12))
    return (wet * scale).astype(np.float32)


# ---- the voice source: LPC re-excitation ----------------------------------------------------

VOCODE_FRAME_S = 0.04  # analysis frames (Hann, half overlap): two periods of 50 Hz
VOCODE_VOICED = (0.3, 0.6)  # periodicity (autocorrelation peak, 50-400 Hz): noise..pulses


def vocode(wave: np.ndarray, f0: float, rng: np.random.Generator,
           sample_rate: int = 16000) -> np.ndarray:
    """Keep the voice's spectral envelope, replace its source: the classic LPC vocoder, which
    is how formant and parametric synthesizers make speech. Each frame's envelope is an LPC
    fit (order sample_rate/1000 + 2, autocorrelation method); its excitation is a pulse train at
    `f0` Hz (a slow +-10 % contour, continuous across frames) where the frame is voiced, white
    noise where it is not, mixed by how periodic the frame is (VOICED); each frame keeps its
    RMS level, frames overlap-add. Same length as the input. Written here: a few lines on
    scipy's Toeplitz solver, with one batched autocorrelation serving both the LPC fit and
    the voicing decision."""
    from scipy.linalg import solve_toeplitz
    from scipy.signal import lfilter

    n = len(wave)
    frame = int(VOCODE_FRAME_S * sample_rate) // 2 * 2
    hop = frame // 2
    if n < 2 * frame or f0 <= 0:
        return wave.astype(np.float32)
    order = sample_rate // 1000 + 2
    x = np.pad(wave.astype(np.float64), (hop, frame))
    starts = np.arange(0, len(x) - frame + 1, hop)
    window = np.hanning(frame)
    frames = x[starts[:, None] + np.arange(frame)] * window  # (F, frame)
    spectrum = np.fft.rfft(frames, 2 * frame)
    autocorr = np.fft.irfft(np.abs(spectrum) ** 2)[:, :frame]  # (F, lags)
    # periodicity: the frame's autocorrelation over the window's own (Boersma 1993), ~1 for
    # a periodic frame whatever the window does to the longer lags
    window_autocorr = np.fft.irfft(np.abs(np.fft.rfft(window, 2 * frame)) ** 2)[:frame]
    # pulses at f0 with a slow contour: phase accumulates over the whole signal
    t = np.arange(len(x)) / sample_rate
    contour = f0 * (1 + 0.1 * np.sin(2 * np.pi * t / rng.uniform(1.0, 2.5) + rng.uniform(0, 6.3)))
    phase = np.cumsum(contour) / sample_rate
    pulses = np.diff(np.floor(phase), prepend=0.0) * np.sqrt(sample_rate / f0)  # unit power
    noise = rng.standard_normal(len(x))
    lo, hi = sample_rate // 400, min(sample_rate // 60, frame // 2)
    # a Gaussian lag window (40 Hz): broadens the LPC fit's peaks so no pole sits on a harmonic
    lag_window = np.exp(-0.5 * (2 * np.pi * 40 / sample_rate * np.arange(order + 1)) ** 2)
    out = np.zeros(len(x))
    for i, start in enumerate(starts):
        r = autocorr[i]
        if r[0] < 1e-10:
            continue
        periodicity = float(np.max(r[lo:hi] / window_autocorr[lo:hi])
                            * window_autocorr[0] / r[0])
        voiced = float(np.clip((periodicity - VOCODE_VOICED[0]) /
                               (VOCODE_VOICED[1] - VOCODE_VOICED[0]), 0, 1))
        r = r[:order + 1] * lag_window
        r[0] *= 1 + 1e-6  # white-noise correction: a well-posed fit
        a = solve_toeplitz(r[:order], -r[1:order + 1])
        source = voiced * pulses[start:start + frame] + (1 - voiced) * noise[start:start + frame]
        y = lfilter([1.0], np.concatenate([[1.0], a]), source) * window
        target = np.sqrt(np.mean(frames[i] ** 2))
        out[start:start + frame] += y * (target / (np.sqrt(np.mean(y ** 2)) + 1e-12))
    return out[hop:hop + n].astype(np.float32)


# ---- pitch ----------------------------------------------------------------------------------

def time_stretch(wave: np.ndarray, rate: float, sample_rate: int = 16000) -> np.ndarray:
    """WSOLA (Verhelst & Roelands 1993): `rate` times faster, pitch unchanged. 40 ms Hann
    frames at 50 % overlap; each input frame is taken within +-10 ms of its nominal place where
    it best continues the previous one (highest cross-correlation)."""
    win = int(0.04 * sample_rate)
    hop = win // 2
    tol = int(0.01 * sample_rate)
    n_out = int(round(len(wave) / rate))
    if len(wave) < 2 * win or rate == 1.0:
        return wave.astype(np.float32)
    padded = np.pad(wave.astype(np.float64), (tol, win + tol + hop))
    window = np.hanning(win)
    out = np.zeros(n_out + win)
    norm = np.zeros(n_out + win)
    prev = tol  # padded-index of the previous chosen frame
    for k, o in enumerate(range(0, n_out, hop)):
        nominal = int(round(o * rate)) + tol
        if k == 0:
            start = nominal
        else:
            target = padded[prev + hop:prev + hop + win]  # the natural continuation
            lo = max(0, nominal - tol)
            region = padded[lo:nominal + tol + win]
            corr = np.correlate(region, target, mode="valid")
            start = lo + int(np.argmax(corr))
        out[o:o + win] += padded[start:start + win] * window
        norm[o:o + win] += window
        prev = start
    return (out[:n_out] / np.maximum(norm[:n_out], 1e-3)).astype(np.float32)


def pitch_shift(wave: np.ndarray, semitones: float, sample_rate: int = 16000) -> np.ndarray:
    """Raise the pitch by `semitones` (negative: lower) keeping the duration: resampling
    changes pitch and tempo together, WSOLA then restores the tempo. Formants move with the
    pitch, as in a speed change (VTLP moves formants alone)."""
    if semitones == 0 or wave.size == 0:
        return wave
    factor = 2.0 ** (semitones / 12)
    faster = speed_perturb(wave, factor)  # pitch x factor, length / factor
    out = time_stretch(faster, len(faster) / len(wave), sample_rate)
    return _fit(out, len(wave))


def _fit(wave: np.ndarray, n: int) -> np.ndarray:
    """Pad with zeros or cut to n samples (rounding in resampling leaves a sample or two)."""
    return np.pad(wave, (0, max(0, n - len(wave))))[:n].astype(np.float32)


# ---- additive noise ------------------------------------------------------------------------

def add_noise(wave: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Mix `noise` (tiled or cut to length) into `wave` at `snr_db`."""
    reps = -(-len(wave) // max(1, len(noise)))
    noise = np.tile(noise, reps)[:len(wave)]
    p_sig = float(np.mean(wave ** 2)) + 1e-12
    p_noise = float(np.mean(noise ** 2)) + 1e-12
    return (wave + noise * np.sqrt(p_sig / (p_noise * 10 ** (snr_db / 10)))).astype(np.float32)


NOISE_KINDS = ("white", "pink")
NOISE_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


def generated_noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance Gaussian noise of n samples: white (flat spectrum) or pink (power falling
    as 1/f, shaped in the frequency domain). Used when augment.noise_dir is None."""
    noise = rng.standard_normal(n)
    if kind == "pink":
        spectrum = np.fft.rfft(noise)
        spectrum /= np.sqrt(np.maximum(np.arange(spectrum.size), 1))
        noise = np.fft.irfft(spectrum, n)
    elif kind != "white":
        raise ValueError(f"noise kind {kind!r}: use one of {NOISE_KINDS}")
    return (noise / (noise.std() + 1e-12)).astype(np.float32)


def load_noises(folder: str | Path, sample_rate: int) -> list[np.ndarray]:
    """Every readable, non-silent audio file under `folder` (recursively), at `sample_rate`.
    Unusable files are logged by name; a folder with none usable is an error."""
    from asrlab.data.scan import audio_problem

    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in NOISE_SUFFIXES)
    noises = []
    for path in files:
        try:
            wave = load_audio(path, sample_rate)
            problem = audio_problem(wave)
        except AudioError as e:
            problem = str(e)
        if problem:
            logging.getLogger("asrlab.train").warning("noise file %s not used: %s", path, problem)
        else:
            noises.append(wave)
    if not noises:
        raise FileNotFoundError(f"augment.noise_dir {folder}: no usable noise file "
                                f"({len(files)} with suffixes {', '.join(NOISE_SUFFIXES)})")
    return noises


# ---- channel: band-limiting, gain, clipping -------------------------------------------------

@lru_cache(maxsize=8)
def _telephone_filter(sample_rate: int) -> np.ndarray:
    from scipy.signal import butter

    return butter(4, TELEPHONE_BAND, btype="bandpass", fs=sample_rate, output="sos")


def band_limit(wave: np.ndarray, kind: str, sample_rate: int = 16000) -> np.ndarray:
    """"telephone": a 4th-order Butterworth band-pass 300-3400 Hz (the classic telephone
    channel); "8k": down to 8 kHz and back (no energy above 4 kHz)."""
    from scipy.signal import sosfilt

    if kind == "telephone":
        return sosfilt(_telephone_filter(sample_rate), wave).astype(np.float32)
    if kind == "8k":
        return _fit(resample(resample(wave, sample_rate, 8000), 8000, sample_rate), len(wave))
    raise ValueError(f"band-limiting kind {kind!r}: use one of {BANDLIMIT_KINDS}")


def clip(wave: np.ndarray, level: float) -> np.ndarray:
    """Hard-clip at `level` times the waveform's peak (mild: 0.5-0.9 of the peak)."""
    peak = float(np.max(np.abs(wave))) if wave.size else 0.0
    return np.clip(wave, -level * peak, level * peak).astype(np.float32)


# ---- on the features: VTLP and SpecAugment -------------------------------------------------

def vtlp_factor(cfg: AugmentConfig, rng: np.random.Generator) -> float:
    """A warp factor drawn uniformly from cfg.vtlp, rounded to 0.01 (so at most a few dozen
    filterbanks are ever built); 1.0 when VTLP is off."""
    low, high = cfg.vtlp
    return 1.0 if low == high == 1.0 else round(float(rng.uniform(low, high)), 2)


def speed_factor(cfg: AugmentConfig, rng: np.random.Generator) -> float:
    """The utterance's speed-perturbation factor, drawn from cfg.speed_perturb (no draw when
    it is only 1.0)."""
    if len(cfg.speed_perturb) > 1 or cfg.speed_perturb[0] != 1.0:
        return float(rng.choice(cfg.speed_perturb))
    return 1.0


def spec_augment(feats: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator,
                 width_scale: float = 1.0) -> np.ndarray:
    """Frequency and time masks (SpecAugment); time masks scale with the utterance length.
    Masks fill with 0, the global mean after CMVN. `feats` is (T, F), or (T, ..., F) (a frozen
    encoder's states (T, S, D): the same dimensions masked in every layer, each mask up to
    freq_mask_width x `width_scale` of them)."""
    feats = feats.copy()
    T, F = feats.shape[0], feats.shape[-1]
    for _ in range(cfg.freq_masks):
        w = int(rng.integers(0, int(cfg.freq_mask_width * width_scale) + 1))
        f0 = int(rng.integers(0, max(1, F - w + 1)))
        feats[..., f0:f0 + w] = 0.0
    max_t = int(cfg.time_mask_ratio * T)
    for _ in range(cfg.time_masks):
        w = int(rng.integers(0, max_t + 1))
        t0 = int(rng.integers(0, max(1, T - w + 1)))
        feats[t0:t0 + w, :] = 0.0
    return feats


# ---- the training-time chain ----------------------------------------------------------------

def augment_wave(wave: np.ndarray, aug: AugmentConfig, rng: np.random.Generator, seed: int,
                 sample_rate: int = 16000) -> tuple[np.ndarray, dict]:
    """Re-excitation, pitch shift and reverberation: the voice, the speaker and the room,
    applied before additive noise. Returns the waveform and what was drawn (for tests and
    logs)."""
    drawn: dict = {}
    if aug.vocode_prob > 0 and rng.random() < aug.vocode_prob:
        drawn["vocode_f0"] = round(float(rng.uniform(*aug.vocode_f0)), 1)
        wave = vocode(wave, drawn["vocode_f0"], rng, sample_rate)
    if aug.pitch_prob > 0 and rng.random() < aug.pitch_prob:
        drawn["semitones"] = round(float(rng.uniform(*aug.pitch_semitones)), 2)
        wave = pitch_shift(wave, drawn["semitones"], sample_rate)
    if aug.reverb_prob > 0 and rng.random() < aug.reverb_prob:
        drawn["room"] = int(rng.integers(aug.reverb_rooms))
        rir = room_impulse_response(seed, drawn["room"], *aug.reverb_rt60, sample_rate)
        wave = reverberate(wave, rir)
    return wave, drawn


def channel_wave(wave: np.ndarray, aug: AugmentConfig, rng: np.random.Generator,
                 sample_rate: int = 16000) -> tuple[np.ndarray, dict]:
    """Band-limiting, gain and clipping: the microphone and the line, applied after noise."""
    drawn: dict = {}
    if aug.bandlimit_prob > 0 and rng.random() < aug.bandlimit_prob:
        drawn["band"] = aug.bandlimit_kinds[int(rng.integers(len(aug.bandlimit_kinds)))]
        wave = band_limit(wave, drawn["band"], sample_rate)
    low, high = aug.gain_db
    if (low, high) != (0.0, 0.0):
        drawn["gain_db"] = float(rng.uniform(low, high))
        wave = (wave * 10 ** (drawn["gain_db"] / 20)).astype(np.float32)
    if aug.clip_prob > 0 and rng.random() < aug.clip_prob:
        drawn["clip"] = float(rng.uniform(*aug.clip_level))
        wave = clip(wave, drawn["clip"])
    return wave, drawn
