"""Pre-training data checks: every data fault in the zoo is reported with the right code and
the offending utterance; the clean corpus reports no error or warning."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from asrlab.doctor.checks import DataThresholds, clipped_share, robust_outliers
from asrlab.doctor.featstats import compare_feature_stats
from asrlab.features import FeatureStats
from asrlab.preflight import check_manifests

from . import zoo


def codes(report, severity=None):
    return {f.code for f in report.findings if severity is None or f.severity == severity}


def only(report, code):
    found = [f for f in report.findings if f.code == code]
    assert found, f"no {code} in {[str(f) for f in report.findings]}"
    return found


def test_clean_corpus_has_no_error_or_warning(corpus, check_config):
    report = check_manifests(corpus / "train.jsonl", corpus / "val.jsonl", check_config)
    assert [str(f) for f in report.findings if f.severity != "info"] == []
    assert report.stats["train"]["used"] == 24 and report.stats["val"]["used"] == 10
    assert report.stats["features"]["shift_pooled_std"] < DataThresholds().feature_shift_warning


def test_empty_transcript(corpus, check_config, tmp_path):
    train = zoo.empty_transcript(corpus / "train.jsonl", tmp_path, i=3)
    f, = only(check_manifests(train, corpus / "val.jsonl", check_config), "EMPTY_TRANSCRIPT")
    assert f.severity == "warning" and f.evidence["ids"] == ["train_00003"]


@pytest.mark.parametrize("fault, reason", [(zoo.nan_wav, "NaN"), (zoo.unreadable_wav, "cannot be read"),
                                           (zoo.silent_wav, "silence"), (zoo.empty_wav, "0 samples")])
def test_unusable_audio(corpus, check_config, tmp_path, fault, reason):
    val = fault(corpus / "val.jsonl", tmp_path, i=2)
    report = check_manifests(corpus / "train.jsonl", val, check_config)
    f, = [f for f in only(report, "BAD_AUDIO") if f.evidence.get("split") == "val"]
    assert f.evidence["ids"] == ["val_00002"] and reason in f.evidence["reasons"]["val_00002"]
    assert f.severity == "warning"  # 1 of 10 files: skipped and listed, not a refusal


def test_clipped_audio(corpus, check_config, tmp_path):
    train = zoo.clipped_wav(corpus / "train.jsonl", tmp_path, i=5)
    report = check_manifests(train, corpus / "val.jsonl", check_config)
    f, = [f for f in only(report, "BAD_AUDIO") if f.evidence.get("kind") == "clipped"]
    assert f.evidence["ids"] == ["train_00005"]


def test_clipping_counts_flat_tops_not_single_peaks():
    peaks = np.zeros(10000, np.float32)
    peaks[::100] = 1.0  # peak-normalized audio touches full scale: not clipping
    assert clipped_share(peaks, 0.999)[0] == 0
    flat = np.sin(np.linspace(0, 60, 10000)).astype(np.float32) * 3
    assert clipped_share(np.clip(flat, -1, 1), 0.999)[1] > 0.3


def test_one_8khz_file_among_16khz(corpus, check_config, tmp_path):
    train = zoo.rate_8k(corpus / "train.jsonl", tmp_path, i=7)
    f, = only(check_manifests(train, corpus / "val.jsonl", check_config), "SAMPLE_RATE_MISMATCH")
    assert f.severity == "warning" and f.evidence["ids"] == ["train_00007"]
    assert f.evidence["id_rates"] == {"train_00007": 8000}


def test_val_at_8khz_train_at_16khz_is_an_error(corpus, check_config, tmp_path):
    val = zoo.all_8k(corpus / "val.jsonl", tmp_path)
    report = check_manifests(corpus / "train.jsonl", val, check_config)
    f, = [f for f in only(report, "SAMPLE_RATE_MISMATCH") if "splits" in f.message]
    assert f.severity == "error" and f.evidence["rates"] == {"train": 16000, "val": 8000}
    assert "FEATURE_MISMATCH" in codes(report)  # the missing band shows in the features too


def test_gain_scaled_val_is_a_feature_mismatch(corpus, check_config, tmp_path):
    val = zoo.gain(corpus / "val.jsonl", tmp_path, 0.05)  # -26 dB
    report = check_manifests(corpus / "train.jsonl", val, check_config)
    f, = [f for f in only(report, "FEATURE_MISMATCH") if f.evidence.get("split") == "val"
          and "shift_pooled_std" in f.evidence]
    assert f.evidence["shift_pooled_std"] > DataThresholds().feature_shift_warning
    assert f.evidence["level_db"] < -10 and "gain" in f.message


def test_differently_extracted_val_features_are_an_error(corpus, check_config, tmp_path):
    """int16-scaled samples (forgot / 32768): features 90 dB off, an error."""
    val = zoo.gain(corpus / "val.jsonl", tmp_path, 32768.0)
    report = check_manifests(corpus / "train.jsonl", val, check_config)
    f = [f for f in only(report, "FEATURE_MISMATCH") if "shift_pooled_std" in f.evidence][0]
    assert f.severity == "error"


def test_feature_comparison_of_other_extraction_settings():
    """Features made with different settings (log10 instead of ln, no CMVN mismatch in the
    bins) are told apart from the reference by the statistics alone."""
    rng = np.random.default_rng(0)
    ref = rng.normal(-5, 2.5, size=(4000, 40)).astype(np.float32)
    same = rng.normal(-5, 2.5, size=(1000, 40)).astype(np.float32)
    log10 = same / np.log(10)  # log10 power instead of natural log
    stats = lambda x: FeatureStats(x.mean(0), x.std(0), len(x))  # noqa: E731
    assert compare_feature_stats(stats(ref), stats(same)).shift < 0.1
    assert compare_feature_stats(stats(ref), stats(log10)).shift > 1.0


def test_one_quiet_file_is_named(corpus, check_config, tmp_path):
    val = zoo.gain(corpus / "val.jsonl", tmp_path, 0.003, ids=[4])  # -50 dB
    f, = [f for f in only(check_manifests(corpus / "train.jsonl", val, check_config),
                          "FEATURE_MISMATCH") if f.evidence.get("kind") == "loudness"]
    assert f.evidence["ids"] == ["val_00004"]


def test_oov_characters_in_val(corpus, check_config, tmp_path):
    val = zoo.oov_text(corpus / "val.jsonl", tmp_path, i=1)
    f, = only(check_manifests(corpus / "train.jsonl", val, check_config), "OOV_CHARACTERS")
    assert f.evidence["ids"] == ["val_00001"]
    # judged on the model's text (lowercased, punctuation removed): "42 été" is what it lacks
    assert set(f.evidence["characters"]) == set("42é")
    assert f.evidence["texts"]["val_00001"].endswith(" 42 ÉTÉ!")  # the manifest's own text


def test_uppercase_transcripts_are_judged_as_the_model_reads_them(corpus, check_config,
                                                                  tmp_path):
    """LibriSpeech writes UPPERCASE with apostrophes; the model's text rules lowercase it, so
    nothing is out of vocabulary (the false OOV_CHARACTERS of issue 14)."""
    rs = zoo.rows(corpus / "val.jsonl")
    val = zoo.write(tmp_path / "val.jsonl",
                    [{**r, "text": r["text"].upper() + ", SAID HE."} for r in rs])
    report = check_manifests(corpus / "train.jsonl", val, check_config)
    assert not [f for f in report.findings if f.severity != "info"], report.findings


def test_transcript_that_normalizes_to_nothing_is_an_empty_transcript(corpus, check_config,
                                                                     tmp_path):
    rs = zoo.rows(corpus / "val.jsonl")
    rs[2], rs[5] = {**rs[2], "text": "..."}, {**rs[5], "text": "?! --"}
    report = check_manifests(corpus / "train.jsonl", zoo.write(tmp_path / "val.jsonl", rs),
                             check_config)
    assert "OOV_CHARACTERS" not in codes(report)
    f, = only(report, "EMPTY_TRANSCRIPT")
    assert f.evidence["ids"] == ["val_00002", "val_00005"]
    assert f.evidence["texts"] == {"val_00002": "...", "val_00005": "?! --"}
    assert "val_00002" in f.message and "only after text normalization" in f.message


def with_speakers(manifest: Path, out: Path, speaker_of) -> Path:
    rs = zoo.rows(manifest)
    return zoo.write(out / manifest.name, [{**r, "speaker": speaker_of(i)} for i, r in enumerate(rs)])


def test_seen_speakers_only_in_validation_is_an_info(corpus, check_config, tmp_path):
    train = with_speakers(corpus / "train.jsonl", tmp_path / "t", lambda i: f"s{i % 4}")
    val = with_speakers(corpus / "val.jsonl", tmp_path / "v", lambda i: f"s{i % 2}")
    f, = only(check_manifests(train, val, check_config), "SEEN_SPEAKERS")
    assert f.severity == "info"
    assert f.evidence["train_speakers"] == 4 and f.evidence["val_speakers"] == 2
    assert "--speakers" in f.remedy and "seen speakers only" in f.message


@pytest.mark.parametrize("val_speaker", [lambda i: "new", lambda i: None])
def test_no_seen_speakers_note_with_a_new_speaker_or_without_speakers(
        corpus, check_config, tmp_path, val_speaker):
    train = with_speakers(corpus / "train.jsonl", tmp_path / "t", lambda i: f"s{i % 4}")
    val = with_speakers(corpus / "val.jsonl", tmp_path / "v",
                        lambda i: val_speaker(i) if i == 0 else f"s{i % 2}")
    assert "SEEN_SPEAKERS" not in codes(check_manifests(train, val, check_config))


def test_transcript_too_long_for_its_audio(corpus, tmp_path):
    """With the default model (4x time subsampling) a 6x repeated transcript cannot fit its
    audio: one such utterance is a warning (the trainer leaves it out, listed); more than
    5% of the training set is an error."""
    from asrlab.config import preset

    cfg = preset("default").merged({"augment": {"speed_perturb": [1.0]}})
    train = zoo.long_text(corpus / "train.jsonl", tmp_path / "one", i=2)
    f, = only(check_manifests(train, corpus / "val.jsonl", cfg), "INFEASIBLE_LENGTH")
    assert f.evidence["ids"] == ["train_00002"] and f.severity == "warning"
    assert f.evidence["frames"]["train_00002"] < f.evidence["needed"]["train_00002"]
    for i in (5, 9):
        train = zoo.long_text(train, tmp_path / f"more{i}", i=i)
    f, = only(check_manifests(train, corpus / "val.jsonl", cfg), "INFEASIBLE_LENGTH")
    assert f.severity == "error" and set(f.evidence["ids"]) == {"train_00002", "train_00005",
                                                                  "train_00009"}


def test_manifest_duration_disagreeing_with_audio(corpus, check_config, tmp_path):
    train = zoo.wrong_duration(corpus / "train.jsonl", tmp_path, i=6)
    f, = only(check_manifests(train, corpus / "val.jsonl", check_config), "DURATION_OUTLIER")
    assert f.evidence["ids"] == ["train_00006"] and f.evidence["kind"] == "manifest-duration"


def test_bad_manifest_line(corpus, check_config, tmp_path):
    train = zoo.bad_line(corpus / "train.jsonl", tmp_path)
    f, = only(check_manifests(train, corpus / "val.jsonl", check_config), "BAD_MANIFEST")
    assert f.severity == "error" and "duration" in f.evidence["lines"][0]


def test_robust_outliers_need_both_distance_and_ratio():
    values = np.array([2.0, 2.1, 1.9, 2.2, 2.05, 1.95, 2.0, 2.1, 30.0])
    assert robust_outliers(values, 5.0, 2.5).tolist() == [8]
    tight = np.array([2.0] * 8 + [2.3])  # far in MAD units, but only 1.15x: not an outlier
    assert robust_outliers(tight, 5.0, 2.5).tolist() == []


def test_check_command_exit_code_and_json(corpus, check_config, tmp_path):
    from asrlab.cli import main

    clean = main(["check", "--train", str(corpus / "train.jsonl"), "--val",
                  str(corpus / "val.jsonl"), "--preset", "seed-crnn", "--out", str(tmp_path / "a.json")])
    assert clean == 0
    assert json.loads((tmp_path / "a.json").read_text())["findings"] == []
    val = zoo.all_8k(corpus / "val.jsonl", tmp_path / "v8")
    bad = main(["check", "--train", str(corpus / "train.jsonl"), "--val", str(val),
                "--preset", "seed-crnn", "--out", str(tmp_path / "b.json")])
    assert bad == 1
    found = json.loads((tmp_path / "b.json").read_text())["findings"]
    assert found[0]["severity"] == "error"  # ranked: errors first
