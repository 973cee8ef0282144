"""Features: what an encoder takes in, made one way for training, validation, test and
inference (`FeaturePipeline`). Three kinds (`features.kind`, asrlab.config.FEATURE_KINDS):

    logmel    asrlab's log-mel filterbank (`LogMel`), optional per-utterance mean removal,
              then global CMVN with statistics estimated once on the training set
    whisper   Whisper's own log-mel (`WhisperLogMel`), for Whisper encoders; no statistics
    waveform  the samples as (S, 1) (`Waveform`), zero-mean unit-variance per utterance when
              `normalize` is on, for wav2vec2 / HuBERT / WavLM encoders

Statistics of the raw features are estimated and stored in the checkpoint for every kind (the
doctor compares data against them); only `logmel` is normalized with them. That is how a
train/val feature mismatch is ruled out by construction. Also the warped filterbanks of
vocal-tract-length perturbation (training only; the warp is drawn, like SpecAugment's masks, in
asrlab.data.augment).

Written in NumPy (not torch) so that the ONNX inference path runs without importing torch.
Shapes: a waveform is (S,) samples; features are (T, F) frames x mel bins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from asrlab.config import FeatureConfig

LOG_FLOOR = 1e-10


def hz_to_mel(hz):
    return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)


def mel_to_hz(mel):
    return 700.0 * (10.0 ** (np.asarray(mel) / 2595.0) - 1.0)


def warp_freq(hz: np.ndarray, factor: float, fmin: float, fmax: float) -> np.ndarray:
    """Kaldi's piecewise-linear VTLN warp (feat/mel-computations.cc, VtlnWarpFreq): frequencies
    between the cutoffs are divided by `factor`; below and above them straight lines keep fmin
    and fmax fixed, so the warped filters still cover exactly [fmin, fmax]."""
    if factor == 1.0:
        return hz
    low = max(fmin, 100.0) * max(1.0, factor)  # Kaldi: vtln-low 100 Hz
    high = (fmax - 0.1 * (fmax - fmin)) * min(1.0, factor)  # Kaldi: vtln-high nyquist - 500
    scale = 1.0 / factor
    left = fmin + (scale * low - fmin) / max(low - fmin, 1e-6) * (hz - fmin)
    right = fmax + (fmax - scale * high) / (fmax - high) * (hz - fmax)
    return np.where(hz < low, left, np.where(hz < high, scale * hz, right))


def mel_filterbank(cfg: FeatureConfig, warp: float = 1.0) -> np.ndarray:
    """(n_fft//2+1, n_mels) triangular HTK-mel filters; `warp` != 1 moves their edges by
    warp_freq, as if the speaker's formants were `warp` times higher (a vocal tract about
    1/warp times as long)."""
    n_bins = cfg.n_fft // 2 + 1
    freqs = np.linspace(0, cfg.sample_rate / 2, n_bins)
    mel_pts = np.linspace(hz_to_mel(cfg.fmin), hz_to_mel(cfg.fmax), cfg.n_mels + 2)
    hz_pts = warp_freq(mel_to_hz(mel_pts), warp, cfg.fmin, cfg.fmax)
    lower, center, upper = hz_pts[:-2, None], hz_pts[1:-1, None], hz_pts[2:, None]
    up = (freqs[None, :] - lower) / (center - lower)
    down = (upper - freqs[None, :]) / (upper - center)
    return np.maximum(0.0, np.minimum(up, down)).T.astype(np.float32)


class LogMel:
    """Waveform (S,) at cfg.sample_rate -> log-mel (T, F); T = 1 + (S - win) // hop."""

    def __init__(self, cfg: FeatureConfig):
        self.cfg = cfg
        self.win = int(round(cfg.sample_rate * cfg.win_ms / 1000))
        self.hop = int(round(cfg.sample_rate * cfg.hop_ms / 1000))
        self.window = np.hanning(self.win + 1)[:-1].astype(np.float32)  # periodic Hann
        self.fbank = mel_filterbank(cfg)
        self.warped: dict[float, np.ndarray] = {}  # VTLP filterbanks, by factor

    def num_frames(self, num_samples: int) -> int:
        return 0 if num_samples < self.win else 1 + (num_samples - self.win) // self.hop

    def filterbank(self, warp: float) -> np.ndarray:
        if warp == 1.0:
            return self.fbank
        if warp not in self.warped:
            self.warped[warp] = mel_filterbank(self.cfg, warp)
        return self.warped[warp]

    def __call__(self, wave: np.ndarray, warp: float = 1.0) -> np.ndarray:
        """`warp`: VTLP factor, for training only (see AugmentConfig.vtlp)."""
        wave = np.asarray(wave, dtype=np.float32)
        if wave.shape[0] < self.win:  # shorter than one window: pad to one frame
            wave = np.pad(wave, (0, self.win - wave.shape[0]))
        frames = np.lib.stride_tricks.sliding_window_view(wave, self.win)[::self.hop]  # (T, win)
        frames = (frames - frames.mean(axis=1, keepdims=True)) * self.window
        power = np.abs(np.fft.rfft(frames, n=self.cfg.n_fft, axis=1)) ** 2  # (T, n_fft//2+1)
        feats = np.log(np.maximum(power @ self.filterbank(warp), LOG_FLOOR)).astype(np.float32)
        return subtract_utterance_mean(feats) if self.cfg.utterance_mean else feats


SPEECH_RANGE = float(np.log(1e5))  # 50 dB: frames this close to the loudest set the mean


def subtract_utterance_mean(feats: np.ndarray) -> np.ndarray:
    """(T, F) log-mel minus its mean over the frames within 50 dB of the loudest one, so that
    leading or trailing silence (digital zeros included) does not set the mean."""
    energy = np.logaddexp.reduce(feats, axis=1)  # (T,) log frame energy
    speech = energy >= energy.max() - SPEECH_RANGE
    return feats - feats[speech].mean(axis=0)


@dataclass(frozen=True)
class FeatureStats:
    """Global mean/std per mel bin, estimated on the training set."""
    mean: np.ndarray  # (F,)
    std: np.ndarray  # (F,)
    frames: int  # how many frames they were estimated from

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "frames": self.frames}

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureStats":
        return cls(np.asarray(d["mean"], np.float32), np.asarray(d["std"], np.float32),
                   int(d["frames"]))


class StatsAccumulator:
    """Summable running sums for mean/variance (works across files and ranks)."""

    def __init__(self, n_mels: int):
        self.n = 0
        self.sum = np.zeros(n_mels, np.float64)
        self.sumsq = np.zeros(n_mels, np.float64)

    def add(self, feats: np.ndarray) -> None:
        self.n += feats.shape[0]
        self.sum += feats.sum(axis=0)
        self.sumsq += (feats.astype(np.float64) ** 2).sum(axis=0)

    def stats(self) -> FeatureStats:
        if self.n == 0:
            raise ValueError("no frames to estimate feature statistics from")
        mean = self.sum / self.n
        var = np.maximum(self.sumsq / self.n - mean ** 2, 1e-8)
        return FeatureStats(mean.astype(np.float32), np.sqrt(var).astype(np.float32), self.n)


class Waveform:
    """Waveform (S,) -> (S, 1) float32 "features" for encoders that take the samples; zero-mean
    unit-variance per utterance when cfg.normalize (a feature extractor's do_normalize: the
    statistics of the utterance's own samples, as transformers' Wav2Vec2FeatureExtractor)."""

    def __init__(self, cfg: FeatureConfig):
        self.cfg = cfg

    def num_frames(self, num_samples: int) -> int:
        return num_samples

    def __call__(self, wave: np.ndarray, warp: float = 1.0) -> np.ndarray:
        wave = np.asarray(wave, dtype=np.float32)
        if self.cfg.normalize:
            wave = (wave - wave.mean()) / np.sqrt(wave.var() + 1e-7)
        return wave[:, None].astype(np.float32)


def front_end(cfg: FeatureConfig):
    """The features step `cfg.kind` names: a callable wave (S,) -> (T, F) with num_frames."""
    if cfg.kind == "whisper":
        return WhisperLogMel(cfg.n_mels, cfg.sample_rate, cfg.n_fft,
                             int(round(cfg.sample_rate * cfg.hop_ms / 1000)), cfg.pad_end_s)
    if cfg.kind == "waveform":
        return Waveform(cfg)
    return LogMel(cfg)


class FeaturePipeline:
    """Waveform -> features (T, F) of the config's kind, normalized as that kind is. The only
    way features are made in asrlab."""

    def __init__(self, cfg: FeatureConfig, stats: FeatureStats | None = None):
        self.cfg = cfg
        self.logmel = front_end(cfg)  # the raw features step (a log-mel unless kind waveform)
        self.stats = stats

    def raw(self, wave: np.ndarray, warp: float = 1.0) -> np.ndarray:
        """`warp` (VTLP) warps asrlab's log-mel filterbank; config validation allows it for
        kind logmel only."""
        return self.logmel(wave, warp) if warp != 1.0 else self.logmel(wave)

    def normalize(self, feats: np.ndarray) -> np.ndarray:
        if not self.cfg.uses_stats:  # Whisper's log-mel and waveforms are their own scale
            return np.asarray(feats, dtype=np.float32)
        if self.stats is None:
            raise RuntimeError("feature statistics are not set: estimate them on the training "
                               "set (asrlab.features.estimate_stats) or load a checkpoint")
        return ((feats - self.stats.mean) / self.stats.std).astype(np.float32)

    def __call__(self, wave: np.ndarray, warp: float = 1.0) -> np.ndarray:
        return self.normalize(self.raw(wave, warp))


def feature_dim(cfg: FeatureConfig) -> int:
    """F of the (T, F) features: the mel bins, or 1 for waveforms."""
    return 1 if cfg.kind == "waveform" else cfg.n_mels


def estimate_stats(waves, cfg: FeatureConfig) -> FeatureStats:
    """Estimate CMVN statistics from an iterable of waveforms."""
    logmel, acc = front_end(cfg), StatsAccumulator(feature_dim(cfg))
    for wave in waves:
        acc.add(logmel(wave))
    return acc.stats()


class WhisperLogMel:
    """Whisper's own log-mel (openai/whisper audio.py `log_mel_spectrogram`), in NumPy: waveform
    (S,) float32 at 16 kHz -> (T, n_mels) float32, T = S // hop (a centered STFT, reflect padding,
    the last frame dropped). Power spectrum of a periodic-Hann 400-sample window every 160
    samples, Slaney mel filters (librosa's defaults, as Whisper's mel_filters.npz), log10 of at
    least 1e-10, floored 8 below the utterance's maximum, then (x + 4) / 4. Not padded to 30 s
    (asrlab.models.whisper.WhisperEncoder pads when asked to); `pad_end_s` of silence appended
    (features.pad_end_s). No statistics: the weights fix it."""

    def __init__(self, n_mels: int = 80, sample_rate: int = 16000, n_fft: int = 400,
                 hop: int = 160, pad_end_s: float = 0.0):
        self.n_mels, self.sample_rate, self.n_fft, self.hop = n_mels, sample_rate, n_fft, hop
        self.cfg = FeatureConfig(kind="whisper", sample_rate=sample_rate, n_mels=n_mels,
                                 n_fft=n_fft, hop_ms=1000 * hop / sample_rate,
                                 win_ms=1000 * n_fft / sample_rate, pad_end_s=pad_end_s)
        self.window = np.hanning(n_fft + 1)[:-1]  # periodic Hann (torch.hann_window's default)
        self.fbank = self.slaney_filterbank(sample_rate, n_fft, n_mels)

    def num_frames(self, num_samples: int) -> int:
        return self.cfg.padded_samples(num_samples) // self.hop

    def __call__(self, wave: np.ndarray) -> np.ndarray:
        wave = np.asarray(wave, dtype=np.float32)
        total = self.cfg.padded_samples(wave.shape[0])  # with features.pad_end_s of silence
        n = total // self.hop
        if n == 0:
            return np.zeros((0, self.n_mels), np.float32)
        wave = np.pad(wave, (0, total - wave.shape[0])) if total > wave.shape[0] else wave
        padded = np.pad(wave, self.n_fft // 2, mode="reflect")  # torch.stft(center=True)
        frames = np.lib.stride_tricks.sliding_window_view(padded, self.n_fft)[::self.hop][:n]
        power = np.abs(np.fft.rfft(frames * self.window, axis=1)) ** 2  # (T, n_fft//2+1)
        log = np.log10(np.maximum(power @ self.fbank, LOG_FLOOR))  # (T, n_mels)
        log = np.maximum(log, log.max() - 8.0)
        return ((log + 4.0) / 4.0).astype(np.float32)

    @staticmethod
    def slaney_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0,
                          fmax: float | None = None) -> np.ndarray:
        """(n_fft//2+1, n_mels) triangles on Slaney's mel scale (linear below 1 kHz,
        logarithmic above), each scaled to unit area: librosa.filters.mel's defaults, written
        here so that the feature code stays free of librosa and torch."""
        f_sp, min_log_hz = 200.0 / 3, 1000.0
        min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0

        def to_mel(hz):
            hz = np.asarray(hz, np.float64)
            return np.where(hz >= min_log_hz,
                            min_log_mel + np.log(np.maximum(hz, min_log_hz) / min_log_hz) / logstep,
                            hz / f_sp)

        def to_hz(mel):
            return np.where(mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)),
                            f_sp * mel)

        fmax = sample_rate / 2 if fmax is None else fmax
        freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
        edges = to_hz(np.linspace(to_mel(fmin), to_mel(fmax), n_mels + 2))
        lower, center, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
        up = (freqs[None, :] - lower) / (center - lower)
        down = (upper - freqs[None, :]) / (upper - center)
        area = 2.0 / (upper - lower)  # Slaney normalization
        return (np.maximum(0.0, np.minimum(up, down)) * area).T.astype(np.float32)
