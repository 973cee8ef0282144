"""Read every utterance of a split once: usable items, skipped items with reasons, CMVN sums.

Nothing is dropped silently: each skipped item carries its id, manifest line and reason, and
`read == used + skipped` always holds. The trainer writes the skipped list to RUN/skipped.jsonl.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from asrlab.audio import AudioError, load_audio
from asrlab.data.manifest import Skipped, Utterance
from asrlab.features import StatsAccumulator, feature_dim


EMPTY_TRANSCRIPT = "empty transcript"
EMPTY_AFTER_NORMALIZATION = "empty transcript after text normalization"
OOV_REASON = "characters not in the vocabulary"
BAD_LINE = "bad manifest line"


def text_problem(u: Utterance, tokenizer=None) -> str | None:
    """Why an utterance's (normalized) transcript cannot train or score, or None. Zero-length
    targets are refused here: CTC accepts them, and then rewards blank on every frame."""
    if not u.text.strip():
        return EMPTY_AFTER_NORMALIZATION if u.original_text.strip() else EMPTY_TRANSCRIPT
    oov = tokenizer.oov(u.text) if tokenizer is not None else None
    return f"{OOV_REASON}: {''.join(sorted(oov))!r}" if oov else None


@dataclass
class ScanResult:
    split: str
    read: int
    used: list[Utterance]
    skipped: list[Skipped]
    waves: dict[str, np.ndarray] = field(default_factory=dict)  # id -> waveform (kept if asked)
    # id -> the raw log-mel the statistics were estimated from (kept only if asked), so the
    # training feature cache starts with every 1.0x variant (asrlab.train_setup.feature_cache)
    feats: dict[str, np.ndarray] = field(default_factory=dict)
    sample_rates: dict[int, int] = field(default_factory=dict)  # native rate -> count
    stats: StatsAccumulator | None = None

    @property
    def loaded(self) -> list[Utterance]:
        """The used utterances whose waveform was kept (in `waves`), in manifest order."""
        return [u for u in self.used if u.id in self.waves]


def audio_problem(wave: np.ndarray) -> str | None:
    """Why a decoded waveform is unusable, or None."""
    if wave.size == 0:
        return "empty audio (0 samples)"
    if not np.all(np.isfinite(wave)):
        return "audio contains NaN or inf samples"
    if float(np.max(np.abs(wave))) < 1e-5:
        return "audio is all silence (peak below 1e-5)"
    return None


def duration_problem(seconds: float, bounds: tuple[float, float | None]) -> str | None:
    low, high = bounds
    if seconds < low:
        return f"audio is {seconds:.2f} s, shorter than train.min_duration ({low:g} s)"
    if high is not None and seconds > high:
        return (f"audio is {seconds:.1f} s, longer than train.max_duration ({high:g} s): "
                "cut it into segments, or raise train.max_duration")
    return None


def problem_skipped(split: str, p: Skipped) -> Skipped:
    """A bad manifest line (read_manifest) as one of the split's skipped items."""
    return replace(p, split=split, reason=f"{BAD_LINE}: {p.reason}")


def native_rate(path: Path) -> int | None:
    try:
        import soundfile as sf

        return int(sf.info(str(path)).samplerate)
    except Exception:
        return None


def scan_split(split: str, utts: list[Utterance], sample_rate: int, tokenizer=None,
               logmel=None, keep_waves: bool = True,
               keep_feats: bool = False,
               problems: list[Skipped] = (),
               duration_bounds: tuple[float, float | None] = (0.0, None)) -> ScanResult:
    """Load each utterance; skip (with a reason) empty text, OOV text, unusable audio, and audio
    whose duration is outside `duration_bounds` (seconds; None: no upper bound).
    `problems` (bad manifest lines from read_manifest(strict=False)) count as read and skipped."""
    result = ScanResult(split, len(utts) + len(problems), [],
                        [problem_skipped(split, p) for p in problems])
    if logmel is not None:
        result.stats = StatsAccumulator(feature_dim(logmel.cfg))
    for u in utts:
        reason = text_problem(u, tokenizer)
        if reason is not None:
            result.skipped.append(Skipped(u.id, u.source, reason, split, u.original_text))
            continue
        try:
            wave = load_audio(u.audio_filepath, sample_rate, u.offset, u.span)
            reason = audio_problem(wave) or duration_problem(len(wave) / sample_rate,
                                                             duration_bounds)
        except AudioError as e:
            reason = str(e)
        if reason is not None:
            result.skipped.append(Skipped(u.id, u.source, reason, split))
            continue
        rate = native_rate(u.audio_filepath)
        if rate is not None:
            result.sample_rates[rate] = result.sample_rates.get(rate, 0) + 1
        if result.stats is not None:
            feats = logmel(wave)
            result.stats.add(feats)
            if keep_feats:
                result.feats[u.id] = feats
        if keep_waves:
            result.waves[u.id] = wave
        result.used.append(u)
    assert result.read == len(result.used) + len(result.skipped)
    return result


def write_counts(path: str | Path, results: list[ScanResult], sample_rate: int) -> Path:
    """Per split: items read, used and skipped (read = used + skipped) and hours used."""
    counts = {r.split: {"read": r.read, "used": len(r.used), "skipped": len(r.skipped),
                        "hours_used": round(sum(len(w) for w in r.waves.values())
                                            / sample_rate / 3600, 4) if r.waves else None}
              for r in results}
    path = Path(path)
    path.write_text(json.dumps(counts, indent=1) + "\n")
    return path
