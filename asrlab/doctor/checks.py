"""Pre-training data checks: `asrlab check`, and the first thing `asrlab train` does (both
through asrlab.preflight: one scan, these findings).

`check_scanned(train_scan, val_scan, config, tokenizer, pipeline)` works on what
`asrlab.data.scan.scan_split` already read (every utterance, once) and returns findings:

- BAD_MANIFEST, EMPTY_TRANSCRIPT, OOV_CHARACTERS, BAD_AUDIO (unreadable, empty, silent, NaN):
  the items the scan skipped, by reason, ids in evidence; BAD_AUDIO also for clipped audio
  that is used;
- SAMPLE_RATE_MISMATCH: native rates differing between splits, within a split, or below the
  feature rate (upsampled audio is empty above its old Nyquist frequency);
- INFEASIBLE_LENGTH: encoder output frames (the model's real subsampling) < labels + repeats;
- DURATION_OUTLIER: manifest duration != audio duration, far-off durations or speaking rates;
- FEATURE_MISMATCH: val (or new data) raw log-mel statistics far from the training ones.

Severities: an error when a problem is systematic (it would make training or validation
meaningless), a warning when a few items are affected (they are skipped and listed). The
thresholds are in `DataThresholds`; docs/doctor.md says why each value.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from asrlab.data.manifest import Skipped, Utterance
from asrlab.data.scan import (BAD_LINE, EMPTY_AFTER_NORMALIZATION, EMPTY_TRANSCRIPT, OOV_REASON,
                               ScanResult, native_rate)
from asrlab.ctc import frames_needed_rows
from asrlab.doctor.featstats import compare_feature_stats, split_raw_stats
from asrlab.doctor.findings import Finding, rank
from asrlab.doctor.pretrained import input_scale_findings, trimmed_end_findings
from asrlab.features import FeatureStats
from asrlab.frames import output_frames

MAX_IDS = 50  # utterance ids listed in evidence per finding
INPUT_SCALE_SAMPLE = 200  # training waveforms whose scale is judged for a pretrained encoder


@dataclass(frozen=True)
class DataThresholds:
    skipped_error_fraction: float = 0.10  # more unusable items than this in a split: error
    oov_error_fraction: float = 0.10  # val utterances with unseen characters: error above
    infeasible_error_fraction: float = 0.05  # train utterances CTC cannot align: error above
    clip_level: float = 0.999  # |sample| at or above: clipped
    clip_fraction: float = 0.001  # share of samples clipped that makes a file "clipped"
    clip_min_samples: int = 10
    clip_run: int = 3  # consecutive samples at the rail: a flat top (single full-scale peaks are not clipping)
    duration_mismatch_s: float = 0.25  # manifest vs audio duration: warn above both of these
    duration_mismatch_rel: float = 0.10
    outlier_z: float = 5.0  # robust z (median/MAD of log values) for duration and speaking rate
    outlier_ratio: float = 2.5  # ... and at least this factor from the median
    feature_shift_warning: float = 0.35  # mean |val - train| / pooled std over mel bins
    feature_shift_error: float = 1.0
    loudness_db: float = 25.0  # an utterance this far (dB) from the train median RMS


@dataclass
class CheckReport:
    findings: list[Finding]
    stats: dict = field(default_factory=dict)


# ---- entry points ----------------------------------------------------------------------

def check_scanned(train_scan: ScanResult, val_scan: ScanResult, config, tokenizer, pipeline,
                  thresholds: DataThresholds | None = None) -> list[Finding]:
    """The checks `asrlab train` runs before training (see the module docstring), most
    likely cause first."""
    return rank(run_checks(train_scan, val_scan, config, tokenizer, pipeline, thresholds).findings)


def run_checks(train_scan: ScanResult, val_scan: ScanResult, config, tokenizer, pipeline=None,
               thresholds: DataThresholds | None = None) -> CheckReport:
    th = thresholds or DataThresholds()
    scans = [train_scan, val_scan]
    findings: list[Finding] = []
    stats: dict = {s.split: {"read": s.read, "used": len(s.used), "skipped": len(s.skipped)}
                   for s in scans}
    for s in scans:
        findings += skipped_findings(s, th)
    findings += clipping_findings(scans, th)
    encoder = config.model.pretrained.source if config.model.name == "pretrained" else None
    findings += sample_rate_findings(scans, config.features.sample_rate, encoder)
    if encoder:
        findings += pretrained_input_findings(train_scan, config)
    lf, stats["lengths"] = length_findings(scans, config, tokenizer, th)
    findings += lf
    findings += duration_findings(scans, config.features.sample_rate, th)
    ff, stats["features"] = feature_findings(train_scan, val_scan, config, pipeline, th)
    findings += ff
    findings += speaker_findings(train_scan, val_scan)
    return CheckReport(findings, stats)


# ---- speakers ---------------------------------------------------------------------------

def speaker_findings(train_scan: ScanResult, val_scan: ScanResult) -> list[Finding]:
    """SEEN_SPEAKERS (info) when the manifests carry `speaker` and every validation speaker
    also speaks in training: the validation CER then says nothing about new voices."""
    def speakers(scan: ScanResult) -> Counter | None:
        spk = [u.extra.get("speaker") for u in scan.used]
        return Counter(map(str, spk)) if spk and all(s not in (None, "") for s in spk) else None

    train, val = speakers(train_scan), speakers(val_scan)
    if not train or not val or not set(val) <= set(train):
        return []
    shared = sorted(val)
    return [Finding(
        "SEEN_SPEAKERS", "info",
        f"all {len(val)} validation speaker(s) also speak in training ({len(train)} training "
        f"speakers): validation CER measures seen speakers only, and will be lower than on "
        f"new voices",
        {"train_speakers": len(train), "val_speakers": len(val),
         "val_utterances": sum(val.values()), "speakers": shared[:MAX_IDS],
         "train_utterances_of_val_speakers": sum(train[s] for s in shared)},
        "to measure new voices, hold speakers out: `asrlab prepare FORMAT SRC --speakers A,B "
        "--out val.jsonl` and `asrlab prepare FORMAT SRC --exclude-speakers A,B --out "
        "train.jsonl`")]


# ---- skipped items: empty text, OOV text, unusable audio --------------------------------

def _reason_code(reason: str) -> str:
    if reason.startswith(BAD_LINE):
        return "BAD_MANIFEST"
    if reason.startswith(EMPTY_TRANSCRIPT):
        return "EMPTY_TRANSCRIPT"
    if reason.startswith(OOV_REASON):
        return "OOV_CHARACTERS"
    return "BAD_AUDIO"


def skipped_findings(scan: ScanResult, th: DataThresholds) -> list[Finding]:
    groups: dict[str, list] = {}
    for s in scan.skipped:
        groups.setdefault(_reason_code(s.reason), []).append(s)
    out = []
    for code, items in groups.items():
        if code == "BAD_MANIFEST":
            out.append(bad_manifest_finding(scan.split, items))
            continue
        frac = len(items) / max(1, scan.read)
        limit = th.oov_error_fraction if code == "OOV_CHARACTERS" else th.skipped_error_fraction
        severity = "error" if frac > limit else "warning"
        ev = {"split": scan.split, "count": len(items), "fraction": round(frac, 4),
              "ids": [s.id for s in items[:MAX_IDS]],
              "reasons": {s.id: f"{s.source}: {s.reason}" for s in items[:MAX_IDS]}}
        texts = {s.id: s.text for s in items[:MAX_IDS] if s.text is not None}
        if texts:  # the manifest's own text; the finding judged the normalized one
            ev["texts"] = texts
        if code == "EMPTY_TRANSCRIPT":
            emptied = [s for s in items if s.reason.startswith(EMPTY_AFTER_NORMALIZATION)]
            msg = (f"{len(items)} {scan.split} utterance(s) have an empty transcript (skipped): "
                   + ", ".join(s.id for s in items[:5]) + (" ..." if len(items) > 5 else ""))
            if emptied:
                msg += (f"; {len(emptied)} only after text normalization (e.g. "
                        f"{emptied[0].text!r}: nothing the model can spell)")
            fix = ("add the transcripts or remove these lines from the manifest: a zero-length "
                   "CTC target teaches the model to emit only blank")
        elif code == "OOV_CHARACTERS":
            chars = Counter(ch for s in items for ch in _oov_chars(s.reason))
            ev["characters"] = dict(chars.most_common())
            msg = (f"{len(items)} {scan.split} utterance(s) use characters the training "
                   f"transcripts never do ({''.join(sorted(chars))!r}; skipped)")
            fix = ("normalize all transcripts the same way (case, punctuation, digits as "
                   "words), or add training text with these characters")
        else:
            msg = f"{len(items)} {scan.split} audio file(s) cannot be used (skipped): " + \
                "; ".join(sorted({_short_reason(s.reason) for s in items}))
            fix = "re-export or remove these files (reasons per id in the evidence)"
        out.append(Finding(code, severity, msg, ev, fix + (
            "; the split is unusable at this rate" if severity == "error" else "")))
    return out


def bad_manifest_finding(split: str, items: list[Skipped]) -> Finding:
    """Manifest lines that cannot be read (asrlab.data.scan.problem_skipped items): always an
    error, since `asrlab train` refuses the manifest unless forced."""
    path = items[0].source.rsplit(":", 1)[0]
    return Finding(
        "BAD_MANIFEST", "error", f"{len(items)} line(s) of {path} cannot be read",
        {"split": split, "count": len(items), "lines": [str(p) for p in items[:MAX_IDS]]},
        "fix these lines (each must be a JSON object with audio_filepath, duration and text); "
        "`asrlab train` refuses the manifest until then")


def no_transcript_finding(train_path: str | Path, utts: list[Utterance]) -> Finding:
    """No training utterance has a transcript the text rules keep: nothing to learn a
    vocabulary from (no audio is read then)."""
    raw = [u.original_text for u in utts if u.original_text.strip()]
    return Finding("EMPTY_TRANSCRIPT", "error",
                   f"{train_path}: no training utterance has a transcript"
                   + (f" after text normalization ({len(raw)} have text, e.g. {raw[0]!r}, that "
                      f"the text rules remove)" if raw else ""),
                   {"split": "train", "count": len(utts), "texts": raw[:MAX_IDS]},
                   "add transcripts to the training manifest"
                   + (" or change the text rules (config `text:`)" if raw else ""))


def _oov_chars(reason: str) -> str:
    start = reason.find("'")
    return reason[start + 1:reason.rfind("'")] if start >= 0 else ""


def _short_reason(reason: str) -> str:
    """AudioError messages start with the path; keep what follows it."""
    return reason.split(": ", 1)[1] if reason.startswith("/") and ": " in reason else reason


# ---- clipping ---------------------------------------------------------------------------

def clipped_share(wave: np.ndarray, level: float, run: int = 3) -> tuple[int, float]:
    """Samples in flat tops: runs of at least `run` consecutive samples at |x| >= level.
    Isolated full-scale samples (peak-normalized audio) do not count."""
    hot = np.abs(wave) >= level
    if not hot.any():
        return 0, 0.0
    edges = np.diff(np.concatenate([[0], hot.astype(np.int8), [0]]))
    starts, ends = np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]
    lengths = ends - starts
    n = int(lengths[lengths >= run].sum())
    return n, n / max(1, wave.size)


def clipping_findings(scans: list[ScanResult], th: DataThresholds) -> list[Finding]:
    out = []
    for scan in scans:
        hits = {}
        for u in scan.loaded:
            n, share = clipped_share(scan.waves[u.id], th.clip_level, th.clip_run)
            if n >= th.clip_min_samples and share >= th.clip_fraction:
                hits[u.id] = round(share, 4)
        if hits:
            ids = sorted(hits, key=hits.get, reverse=True)
            out.append(Finding(
                "BAD_AUDIO", "warning",
                f"{len(hits)} {scan.split} file(s) are clipped ({th.clip_fraction:.1%}+ of "
                f"samples in flat tops at |x| >= {th.clip_level}); they train, but distorted",
                {"split": scan.split, "kind": "clipped", "count": len(hits),
                 "fraction": round(len(hits) / max(1, len(scan.used)), 4),
                 "ids": ids[:MAX_IDS], "clipped_share": {i: hits[i] for i in ids[:MAX_IDS]}},
                "re-record or re-export these at a lower gain, or drop them"))
    return out


# ---- sample rates -----------------------------------------------------------------------

def utterance_rates(scan: ScanResult) -> dict[str, int]:
    rates = {}
    for u in scan.used:
        r = native_rate(u.audio_filepath)
        if r is not None:
            rates[u.id] = r
    return rates


def pretrained_input_findings(scan: ScanResult, config) -> list[Finding]:
    """A pretrained encoder's input scale (doctor.pretrained.input_scale_findings) on up to
    INPUT_SCALE_SAMPLE training waveforms as the loader gives them: Whisper's log-mel takes a
    float waveform in [-1, 1]; a waveform encoder normalizes each utterance itself
    (features.normalize), so only integer-range samples matter to it. For Whisper without
    features.pad_end_s, also whether those clips end in silence (TRIMMED_AUDIO)."""
    utts = scan.loaded[:INPUT_SCALE_SAMPLE]
    whisper = config.features.kind == "whisper"
    expected = "raw" if whisper or not config.features.normalize else "any"
    waves, ids = [scan.waves[u.id] for u in utts], [u.id for u in utts]
    found = input_scale_findings(waves, expected, ids)
    if whisper and not config.features.pad_end_s:  # and whether they end in silence
        found += trimmed_end_findings(waves, config.features.sample_rate, ids)
    return found


def sample_rate_findings(scans: list[ScanResult], feature_rate: int,
                         encoder: str | None = None) -> list[Finding]:
    """Files at other rates than their split's, splits at different rates, and audio below the
    features' rate. With a pretrained `encoder` the rate is its own (no setting changes it)."""
    per_split = {s.split: utterance_rates(s) for s in scans}
    out = []
    dominant = {}
    for split, rates in per_split.items():
        if not rates:
            continue
        counts = Counter(rates.values())
        main, _ = counts.most_common(1)[0]
        dominant[split] = main
        minority = sorted(i for i, r in rates.items() if r != main)
        if minority:
            out.append(Finding(
                "SAMPLE_RATE_MISMATCH", "warning",
                f"{len(minority)} {split} file(s) are not at the split's {main} Hz "
                f"({dict(counts)}); they are resampled to {feature_rate} Hz"
                + (", but upsampled audio is empty above its Nyquist frequency"
                   if any(rates[i] < feature_rate for i in minority) else ""),
                {"split": split, "rates": {str(k): v for k, v in counts.items()},
                 "ids": minority[:MAX_IDS], "id_rates": {i: rates[i] for i in minority[:MAX_IDS]},
                 "fraction": round(len(minority) / len(rates), 4)},
                "resample the sources consistently (same rate as the rest) or drop them"))
    if len(set(dominant.values())) > 1:
        low = min(dominant.values()) < feature_rate
        out.append(Finding(
            "SAMPLE_RATE_MISMATCH", "error" if low else "warning",
            "splits have different sample rates: "
            + ", ".join(f"{k} {v} Hz" for k, v in dominant.items())
            + (f"; the {min(dominant.values())} Hz split lacks everything above "
               f"{min(dominant.values()) // 2} Hz that the other split has" if low else ""),
            {"rates": {k: v for k, v in dominant.items()}, "feature_rate": feature_rate},
            "prepare all splits from sources at the same rate"))
    all_rates = [r for rates in per_split.values() for r in rates.values()]
    if all_rates and dominant and len(set(dominant.values())) == 1:
        rate = next(iter(dominant.values()))
        if rate < feature_rate and Counter(all_rates)[rate] == len(all_rates) and encoder:
            out.append(Finding(
                "SAMPLE_RATE_MISMATCH", "warning",
                f"all audio is {rate} Hz but the encoder {encoder} was pretrained on "
                f"{feature_rate} Hz audio: asrlab resamples it (as it must), yet nothing above "
                f"{rate // 2} Hz is there, where the encoder learnt from wideband speech "
                f"(fairseq#1931)",
                {"kind": "band-limited", "native_rate": rate, "feature_rate": feature_rate,
                 "encoder": encoder},
                "expected for telephone-band recordings: the downstream learns them; if "
                "accuracy falls short, train the top layers too (--encoder-layers-trained 2) "
                "or add wideband speech; never feed the audio unresampled"))
        elif rate < feature_rate and Counter(all_rates)[rate] == len(all_rates):
            out.append(Finding(
                "SAMPLE_RATE_MISMATCH", "warning",
                f"all audio is {rate} Hz but features are computed at {feature_rate} Hz: "
                f"mel bins above {rate // 2} Hz stay empty",
                {"native_rate": rate, "feature_rate": feature_rate},
                f"match the features to the data: --set features.sample_rate={rate} "
                f"--set features.fmax={int(rate / 2 * 0.95)}"))
    return out


def loaded_splits(scans: list[ScanResult]) -> Iterator[tuple[ScanResult, list[Utterance]]]:
    """Each scan that kept waveforms, with its utterances that have one."""
    for scan in scans:
        if utts := scan.loaded:
            yield scan, utts


# ---- lengths: CTC feasibility with the model's real subsampling (asrlab.frames) ----------

def label_needs(texts: list[str], tokenizer) -> np.ndarray:
    """Frames CTC needs per transcript: labels + adjacent repeats (a blank between them)."""
    rows = [torch.tensor(tokenizer.encode(t), dtype=torch.long) for t in texts]
    return frames_needed_rows(rows).numpy()


def length_findings(scans: list[ScanResult], config, tokenizer, th: DataThresholds
                    ) -> tuple[list[Finding], dict]:
    out, stats = [], {}
    fastest = max(getattr(config.augment, "speed_perturb", (1.0,)) or (1.0,))
    for scan, utts in loaded_splits(scans):
        samples = np.asarray([scan.waves[u.id].size for u in utts])
        frames = output_frames(config, samples)
        need = label_needs([u.text for u in utts], tokenizer)
        bad = np.nonzero(frames < need)[0]
        ratio = frames / np.maximum(need, 1)
        stats[scan.split] = {"min_frames_per_label": round(float(ratio.min()), 3),
                             "median_frames_per_label": round(float(np.median(ratio)), 3),
                             "infeasible": int(bad.size)}
        if bad.size:
            frac = bad.size / len(utts)
            limit = th.infeasible_error_fraction if scan.split == "train" else 0.05
            order = bad[np.argsort(ratio[bad])]
            ids = [utts[i].id for i in order[:MAX_IDS]]
            out.append(Finding(
                "INFEASIBLE_LENGTH", "error" if frac > limit else "warning",
                f"{bad.size} {scan.split} utterance(s) have fewer encoder frames than labels + "
                f"repeats ({config.model.name} subsampling): their CTC loss is inf",
                {"split": scan.split, "count": int(bad.size), "fraction": round(frac, 4),
                 "ids": ids, "frames": {utts[i].id: int(frames[i]) for i in order[:MAX_IDS]},
                 "needed": {utts[i].id: int(need[i]) for i in order[:MAX_IDS]}},
                "fix the transcripts (are they paired with the right audio?) or drop these "
                "lines; if many are affected, use a model with less time subsampling "
                "(--model crnn-sub2, or seed-crnn) or BPE units, which need fewer frames than "
                "characters (--tokenizer bpe)"))
        if scan.split == "train" and fastest > 1.0:
            fast = output_frames(config, (samples / fastest).astype(int))
            tight = np.nonzero((fast < need) & (frames >= need))[0]
            if tight.size:
                out.append(Finding(
                    "INFEASIBLE_LENGTH", "warning",
                    f"{tight.size} train utterance(s) become infeasible under {fastest}x speed "
                    f"perturbation (they drop out of those updates)",
                    {"split": "train", "kind": "speed-perturb", "count": int(tight.size),
                     "fraction": round(tight.size / len(utts), 4),
                     "ids": [utts[i].id for i in tight[:MAX_IDS]]},
                    "fine if few; otherwise --set augment.speed_perturb=[0.9,1.0]"))
    return out, stats


# ---- durations and speaking rates ---------------------------------------------------------

def robust_outliers(values: np.ndarray, z: float, ratio: float) -> np.ndarray:
    """Indices whose log value is > z robust SDs (1.4826 MAD) from the median AND more than
    `ratio` times off it: both, so tight distributions do not flag small differences."""
    logs = np.log(np.maximum(values, 1e-9))
    med = np.median(logs)
    mad = 1.4826 * np.median(np.abs(logs - med))
    dev = np.abs(logs - med)
    return np.nonzero((dev > z * max(mad, 1e-9)) & (dev > np.log(ratio)))[0]


def duration_findings(scans: list[ScanResult], rate: int, th: DataThresholds) -> list[Finding]:
    out = []
    for scan, utts in loaded_splits(scans):
        actual = np.asarray([scan.waves[u.id].size / rate for u in utts])
        stated = np.asarray([u.duration for u in utts])
        diff = np.abs(actual - stated)
        wrong = np.nonzero((diff > th.duration_mismatch_s) &
                           (diff > th.duration_mismatch_rel * actual))[0]
        if wrong.size:
            out.append(Finding(
                "DURATION_OUTLIER", "warning",
                f"{wrong.size} {scan.split} manifest duration(s) disagree with the audio "
                f"(batching uses the manifest's)",
                {"split": scan.split, "kind": "manifest-duration", "count": int(wrong.size),
                 "ids": [utts[i].id for i in wrong[:MAX_IDS]],
                 "manifest_vs_audio_s": {utts[i].id: [round(float(stated[i]), 3),
                                                      round(float(actual[i]), 3)]
                                         for i in wrong[:MAX_IDS]}},
                "regenerate the manifest durations from the audio (asrlab prepare)"))
        if len(utts) < 8:  # too few for a distribution
            continue
        for kind, values, what in (
                ("duration", actual, "durations"),
                ("speaking-rate", np.asarray([len(u.text) for u in utts]) / np.maximum(actual, 1e-3),
                 "characters per second")):
            idx = robust_outliers(values, th.outlier_z, th.outlier_ratio)
            if idx.size:
                med = float(np.median(values))
                out.append(Finding(
                    "DURATION_OUTLIER", "warning",
                    f"{idx.size} {scan.split} utterance(s) have {what} far from the rest "
                    f"(median {med:.2f})",
                    {"split": scan.split, "kind": kind, "count": int(idx.size),
                     "median": round(med, 3), "ids": [utts[i].id for i in idx[:MAX_IDS]],
                     "values": {utts[i].id: round(float(values[i]), 3) for i in idx[:MAX_IDS]}},
                    "listen to them: a transcript paired with the wrong audio, or a long "
                    "recording that should be segmented"))
    return out


# ---- features ---------------------------------------------------------------------------

def feature_findings(train_scan: ScanResult, val_scan: ScanResult, config, pipeline,
                     th: DataThresholds) -> tuple[list[Finding], dict]:
    """Val raw log-mel statistics against the training ones (the CMVN statistics the model
    is normalized with), per mel bin; plus per-utterance loudness outliers."""
    if config.features.kind == "waveform":  # samples have no spectrum to compare: loudness only
        return loudness_findings([train_scan, val_scan], th), {}
    ref = getattr(pipeline, "stats", None)
    if ref is None:
        if train_scan.stats is not None and train_scan.stats.n:
            ref = train_scan.stats.stats()
        else:
            ref = split_raw_stats(train_scan, config.features)
    if ref is None:
        return [], {}
    other = split_raw_stats(val_scan, config.features)
    out, stats = [], {}
    if other is not None:
        cmp = compare_feature_stats(ref, other)
        stats = cmp.summary()
        f = cmp.finding("val", th.feature_shift_warning, th.feature_shift_error)
        if f:
            out.append(f)
    out += loudness_findings([train_scan, val_scan], th)
    return out, stats


def rms_db(wave: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(wave.astype(np.float64) ** 2) + 1e-12))


def loudness_findings(scans: list[ScanResult], th: DataThresholds) -> list[Finding]:
    """Utterances far quieter or louder than the training median: a gain problem that the
    split-level statistics hide when only a few files have it."""
    train = scans[0]
    levels = {s.split: {u.id: rms_db(s.waves[u.id]) for u in s.loaded} for s in scans}
    if len(levels.get(train.split, {})) < 8:
        return []
    med = float(np.median(list(levels[train.split].values())))
    out = []
    for split, lv in levels.items():
        odd = sorted((i for i, v in lv.items() if abs(v - med) > th.loudness_db),
                     key=lambda i: -abs(lv[i] - med))
        if odd:
            out.append(Finding(
                "FEATURE_MISMATCH", "warning",
                f"{len(odd)} {split} file(s) are more than {th.loudness_db:.0f} dB louder or "
                f"quieter than the training median ({med:.1f} dBFS)",
                {"split": split, "kind": "loudness", "count": len(odd),
                 "fraction": round(len(odd) / max(1, len(lv)), 4), "train_median_dbfs": round(med, 1),
                 "ids": odd[:MAX_IDS], "dbfs": {i: round(lv[i], 1) for i in odd[:MAX_IDS]}},
                "normalize the gain of these files (or check their source)"))
    return out


def check_stats_against(ref: FeatureStats, scan: ScanResult, config,
                        thresholds: DataThresholds | None = None) -> tuple[list[Finding], dict]:
    """New data (e.g. `asrlab diagnose --data`) against a checkpoint's CMVN statistics."""
    th = thresholds or DataThresholds()
    other = split_raw_stats(scan, config.features)
    if other is None:
        return [], {}
    cmp = compare_feature_stats(ref, other)
    f = cmp.finding(scan.split, th.feature_shift_warning, th.feature_shift_error,
                    against="the model's training statistics")
    return ([f] if f else []), cmp.summary()
