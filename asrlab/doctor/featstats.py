"""Train vs val (or vs new data) feature statistics: per mel bin, how far apart the raw
log-mel means are, in pooled standard deviations.

    d_f = |mean_val[f] - mean_train[f]| / sqrt((std_val[f]^2 + std_train[f]^2) / 2)

`shift` (the mean of d_f over bins) is the number compared with the thresholds. It is a
standardized mean difference (Cohen's d) per bin, averaged: scale-free, so one threshold
serves every corpus. The signed mean difference in nats of power tells how loud: 1 nat of
log power = 4.34 dB.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from asrlab.doctor.findings import Finding
from asrlab.features import FeatureStats, StatsAccumulator, feature_dim, front_end

DB_PER_NAT = 10 / np.log(10)  # 4.343: log power in nats -> dB


def split_raw_stats(scan, features_cfg) -> FeatureStats | None:
    """Raw log-mel statistics of a scanned split's kept waveforms (None when none)."""
    logmel, acc = front_end(features_cfg), StatsAccumulator(feature_dim(features_cfg))
    for u in scan.loaded:
        acc.add(logmel(scan.waves[u.id]))
    return acc.stats() if acc.n else None


@dataclass(frozen=True)
class FeatureComparison:
    d: np.ndarray  # (F,) standardized mean difference per bin
    diff: np.ndarray  # (F,) signed mean difference (other - ref), nats of log power
    std_ratio: np.ndarray  # (F,) std_other / std_ref

    @property
    def shift(self) -> float:
        return float(self.d.mean())

    @property
    def level_db(self) -> float:
        return float(self.diff.mean() * DB_PER_NAT)

    def pattern(self) -> str:
        """A guess at the kind of difference, for the message."""
        F = len(self.d)
        low, high = self.d[: F // 2].mean(), self.d[F // 2:].mean()
        if np.all(np.sign(self.diff) == np.sign(self.diff.mean())) and \
                self.diff.std() < 0.5 * abs(self.diff.mean()):
            return (f"a uniform level shift of {self.level_db:+.1f} dB in every bin: a gain "
                    f"or loudness difference")
        if high > 2 * max(low, 1e-6):
            return ("concentrated in the high-frequency bins: a different sample rate, "
                    "bandwidth or codec")
        if np.median(np.abs(np.log(self.std_ratio))) > np.log(1.5):
            return "the spread differs too: features normalized or extracted differently"
        return "spread across the spectrum: different recording conditions or extraction"

    def summary(self) -> dict:
        worst = np.argsort(-self.d)[:5]
        return {"shift_pooled_std": round(self.shift, 4), "max_bin_shift": round(float(self.d.max()), 4),
                "worst_bins": worst.tolist(), "level_db": round(self.level_db, 2),
                "median_std_ratio": round(float(np.median(self.std_ratio)), 4)}

    def finding(self, split: str, warn: float, error: float,
                against: str = "the training split") -> Finding | None:
        if self.shift <= warn:
            return None
        severity = "error" if self.shift > error else "warning"
        return Finding(
            "FEATURE_MISMATCH", severity,
            f"{split} log-mel features differ from {against}: mean per-bin shift "
            f"{self.shift:.2f} pooled std (threshold {warn:g}; max {self.d.max():.2f}), "
            f"{self.pattern()}",
            {"split": split, **self.summary(), "threshold_warning": warn,
             "threshold_error": error},
            "make the audio consistent (same gain normalization, sample rate and codec as "
            "training); asrlab computes features with one pipeline, so the difference is in "
            "the audio itself")


def compare_feature_stats(ref: FeatureStats, other: FeatureStats) -> FeatureComparison:
    pooled = np.sqrt((ref.std.astype(np.float64) ** 2 + other.std.astype(np.float64) ** 2) / 2)
    diff = other.mean.astype(np.float64) - ref.mean
    return FeatureComparison(np.abs(diff) / np.maximum(pooled, 1e-6), diff,
                             other.std / np.maximum(ref.std, 1e-6))
