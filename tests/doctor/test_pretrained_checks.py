"""The doctor's pre-flight for a run on a pretrained encoder (`asrlab check --encoder`): audio
recorded below the encoder's rate (fairseq#1931), integer-range samples (transformers#19888),
and CTC feasibility at the encoder's frame rate; the same data with an ordinary model, or at
the right rate and scale, draws none of these."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from asrlab.preflight import check_manifests, resolve_config


def rewrite(corpus: Path, out: Path, rate: int = 16000, scale: float = 1.0, trim: bool = False,
            silence_s: float = 0.0) -> dict[str, Path]:
    """The corpus's train and val manifests with their audio resampled to `rate` and multiplied
    by `scale` (float WAVs, so values beyond [-1, 1] stay as they are); `trim`: each cut 10 ms
    after its loudest sample, as a tight trim cuts a word; `silence_s` appended to each."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split in ("train", "val"):
        rows = []
        for line in (corpus / f"{split}.jsonl").read_text().splitlines():
            row = json.loads(line)
            wave, sr = sf.read(corpus / row["audio_filepath"], dtype="float32")
            wave = resample_poly(wave, rate, sr) if rate != sr else wave
            wave = wave[:int(np.argmax(np.abs(wave))) + rate // 100] if trim else wave
            wave = np.concatenate([wave, np.zeros(int(silence_s * rate), wave.dtype)])
            path = out / f"{row['id']}.wav"
            sf.write(path, (wave * scale).astype(np.float32), rate, subtype="FLOAT")
            rows.append({**row, "audio_filepath": path.name})
        paths[split] = out / f"{split}.jsonl"
        paths[split].write_text("".join(json.dumps(r) + "\n" for r in rows))
    return paths


def findings(paths, encoder=None, overrides=None):
    o = {"model": {"name": "pretrained", "pretrained": {"source": str(encoder)}}} \
        if encoder else {}
    o.update(overrides or {})
    cfg = resolve_config("default", None, o).validate()
    return {(f.code, f.evidence.get("kind")): f
            for f in check_manifests(paths["train"], paths["val"], cfg).findings}


def test_8khz_audio_into_a_16khz_encoder_is_named_with_the_encoder(tiny_corpus, whisper_folder,
                                                                    tmp_path):
    narrow = rewrite(tiny_corpus, tmp_path / "8k", rate=8000)
    got = findings(narrow, whisper_folder)
    f = got[("SAMPLE_RATE_MISMATCH", "band-limited")]
    assert "pretrained on 16000 Hz" in f.message and "features.sample_rate" not in f.remedy
    plain = findings(narrow)  # an ordinary model: match the features to the data instead
    assert ("SAMPLE_RATE_MISMATCH", "band-limited") not in plain
    assert "features.sample_rate=8000" in plain[("SAMPLE_RATE_MISMATCH", None)].remedy
    wide = findings(rewrite(tiny_corpus, tmp_path / "16k"), whisper_folder)
    assert not [k for k in wide if k[0] == "SAMPLE_RATE_MISMATCH"]


def test_int16_range_samples_are_an_input_scale_error(tiny_corpus, whisper_folder, tmp_path):
    loud = findings(rewrite(tiny_corpus, tmp_path / "int16", scale=32767.0), whisper_folder)
    f = loud[("INPUT_SCALE", "int16")]
    assert f.severity == "error" and "32768" in f.remedy
    fine = findings(rewrite(tiny_corpus, tmp_path / "fine"), whisper_folder)
    assert not [k for k in fine if k[0] == "INPUT_SCALE"]


def test_feasibility_is_judged_at_the_encoders_frame_rate(tiny_corpus, whisper_folder):
    """Whisper's 50 frames a second against the default model's 25: the median frames per
    label the pre-flight reports doubles (the CTC rule counted on the encoder's frames)."""
    paths = {s: tiny_corpus / f"{s}.jsonl" for s in ("train", "val")}
    cfg_w = resolve_config("default", None, {"model": {"name": "pretrained", "pretrained": {
        "source": str(whisper_folder)}}}).validate()
    cfg_d = resolve_config("default", None, {}).validate()
    w = check_manifests(paths["train"], paths["val"], cfg_w).stats["lengths"]["train"]
    d = check_manifests(paths["train"], paths["val"], cfg_d).stats["lengths"]["train"]
    assert w["median_frames_per_label"] == pytest.approx(2 * d["median_frames_per_label"],
                                                         rel=0.05)


def test_clips_cut_while_speech_is_loud_are_named_for_a_whisper_encoder(tiny_corpus,
                                                                       whisper_folder,
                                                                       tmp_path):
    """TRIMMED_AUDIO: every clip cut at its loudest sample (FSDD-like), unpadded into Whisper;
    not with features.pad_end_s, not for an ordinary model, not for the same clips followed by
    0.3 s of silence. (espeak-ng's clips as synthesized are cut too: 15 of the 20 here.)"""
    cut = rewrite(tiny_corpus, tmp_path / "cut", trim=True)
    f = findings(cut, whisper_folder)[("TRIMMED_AUDIO", None)]
    assert f.severity == "info" and f.evidence["share"] == 1.0
    assert f.evidence["median_tail_db"] > -20 and "features.pad_end_s=0.4" in f.remedy
    padded = {"features": {"pad_end_s": 0.4}}
    assert ("TRIMMED_AUDIO", None) not in findings(cut, whisper_folder, padded)
    assert ("TRIMMED_AUDIO", None) not in findings(cut)
    quiet_end = rewrite(tiny_corpus, tmp_path / "quiet_end", trim=True, silence_s=0.3)
    assert ("TRIMMED_AUDIO", None) not in findings(quiet_end, whisper_folder)
