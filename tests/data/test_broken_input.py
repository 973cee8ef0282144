"""Bad input never stops or corrupts a run.

Broken manifests and audio go through `read_manifest(strict=False)`, `scan_split` and a real
1-epoch `train(..., force=True)`. Every item is either used or skipped with a reason that names
the file or line, and read == used + skipped everywhere. Audio that is merely unusual (stereo,
8-bit, 8/22.05/44.1/48 kHz, clipped) is fixed on the fly and used, never skipped.
"""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asrlab.audio import load_audio
from asrlab.config import Config
from asrlab.data.manifest import ManifestError, read_manifest
from asrlab.data.scan import scan_split
from asrlab.data.tokenizer import CharTokenizer

SR = 16000
TINY = Config().merged({"model": {"hidden": 16, "layers": 1, "conv_channels": 4},
                        "train": {"epochs": 1, "threads": 1, "tensorboard": False,
                                  "max_minutes": None}})


def tone(seconds: float, sr: int, channels: int = 1, hz: float = 300.0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * hz * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def row(path: str, text: str, duration: float = 1.0, **extra) -> str:
    return json.dumps({"audio_filepath": path, "duration": duration, "text": text, **extra})


# Audio that must be fixed on the fly and used: name -> (writer args)
FIXABLE = {
    "stereo": dict(data=tone(1, SR, 2), samplerate=SR),
    "pcm_u8": dict(data=tone(1, SR), samplerate=SR, subtype="PCM_U8"),
    "sr8000": dict(data=tone(1, 8000), samplerate=8000),
    "sr22050": dict(data=tone(1, 22050), samplerate=22050),
    "sr44100": dict(data=tone(1, 44100), samplerate=44100),
    "sr48000": dict(data=tone(1, 48000), samplerate=48000, subtype="PCM_24"),
    "clipped": dict(data=np.clip(tone(1, SR) * 10, -1, 1), samplerate=SR),
}
# Audio that must be skipped: name -> reason substring
UNUSABLE = {
    "not_audio": "cannot be read as audio",
    "zero_bytes": "cannot be read as audio",
    "empty": "empty audio",
    "silent": "silence",
    "nan": "NaN",
    "inf": "NaN or inf",
    "missing": "file not found",
}


def write_audio_files(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(4):
        sf.write(folder / f"good{i}.wav", tone(1 + 0.1 * i, SR, hz=250 + 50 * i), SR)
    for name, kw in FIXABLE.items():
        sf.write(folder / f"{name}.wav", **kw)
    (folder / "not_audio.wav").write_text("this is not audio")
    (folder / "zero_bytes.wav").write_bytes(b"")
    sf.write(folder / "empty.wav", np.zeros(0), SR)
    sf.write(folder / "silent.wav", np.zeros(SR), SR)
    x = tone(1, SR).astype(np.float32)
    x[100:200] = np.nan
    sf.write(folder / "nan.wav", x, SR, subtype="FLOAT")
    x = tone(1, SR).astype(np.float32)
    x[5] = np.inf
    sf.write(folder / "inf.wav", x, SR, subtype="FLOAT")


GOOD_TEXTS = ["a cab", "bad cab", "dab a cab", "cab bad"]


def audio_manifest(root: Path) -> tuple[Path, dict[str, str | None]]:
    """Parseable lines with audio/text problems; returns (manifest, {id: reason substring or
    None for used})."""
    write_audio_files(root / "audio")
    lines, expect = [], {}
    for i in range(8):
        lines.append(row(f"audio/good{i % 4}.wav", GOOD_TEXTS[i % 4], 1 + 0.1 * (i % 4),
                         id=f"good{i}"))
        expect[f"good{i}"] = None
    for name in FIXABLE:
        lines.append(row(f"audio/{name}.wav", "a cab", id=name))
        expect[name] = None
    for name, reason in UNUSABLE.items():
        lines.append(row(f"audio/{name}.wav", "bad cab", id=name))
        expect[name] = reason
    sf.write(root / "audio" / "tiny.wav", tone(0.01, SR), SR)  # too short for any transcript
    lines.append(row("audio/tiny.wav", "dab a cab", 0.01, id="tiny"))
    expect["tiny"] = None
    lines += [row("audio/good0.wav", "", id="empty_text"), row("audio/good0.wav", " \t", id="ws")]
    expect.update(empty_text="empty transcript", ws="empty transcript")
    (root / "train.jsonl").write_text("\n".join(lines) + "\n\n")  # a blank line is ignored
    return root / "train.jsonl", expect


BAD_LINES = [  # (line, what the problem message must say)
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object, got list"),
    ("null", "got NoneType"),
    ('"just a string"', "got str"),
    (json.dumps({"audio_filepath": "audio/good0.wav", "duration": 1}), "missing key(s) text"),
    (json.dumps({"duration": 1}), "audio_filepath, text"),
    (json.dumps({"audio_filepath": 5, "duration": 1, "text": "a"}), "audio_filepath must be"),
    (json.dumps({"audio_filepath": "", "duration": 1, "text": "a"}), "audio_filepath must be"),
    (row("audio/good0.wav", "a", "1.0"), "duration must be"),
    (row("audio/good0.wav", "a", True), "duration must be"),
    (row("audio/good0.wav", "a", 0), "duration must be"),
    (row("audio/good0.wav", "a", -2.5), "duration must be"),
    ('{"audio_filepath": "audio/good0.wav", "duration": NaN, "text": "a"}', "got nan"),
    ('{"audio_filepath": "audio/good0.wav", "duration": Infinity, "text": "a"}', "got inf"),
    (json.dumps({"audio_filepath": "audio/good0.wav", "duration": 1, "text": None}),
     "text must be a string"),
    (json.dumps({"audio_filepath": "audio/good0.wav", "duration": 1, "text": ["a"]}),
     "text must be a string"),
]


def with_bad_lines(manifest: Path) -> dict[int, str]:
    """Append BAD_LINES; returns {line number: message substring}."""
    n = len(manifest.read_text().splitlines())
    with open(manifest, "a") as f:
        for line, _ in BAD_LINES:
            f.write(line + "\n")
    return {n + 1 + i: msg for i, (_, msg) in enumerate(BAD_LINES)}


def val_manifest(root: Path) -> Path:
    lines = [row("audio/good1.wav", "bad cab", 1.1, id="v1"),
             row("audio/sr8000.wav", "a cab", id="v2"),
             row("audio/good2.wav", "Zebra \u00fc", 1.2, id="v_oov")]  # OOV for a-d
    (root / "val.jsonl").write_text("\n".join(lines) + "\n")
    return root / "val.jsonl"


def tokenizer() -> CharTokenizer:
    return CharTokenizer.train(GOOD_TEXTS)


# ---- read_manifest ----------------------------------------------------------------------

def test_read_manifest_reports_every_bad_line_with_its_number(tmp_path):
    manifest, expect = audio_manifest(tmp_path)
    bad = with_bad_lines(manifest)
    utts, problems = read_manifest(manifest, strict=False)
    assert len(utts) == len(expect)  # every parseable line, whatever its audio
    assert {p.line: p for p in problems}.keys() == bad.keys()
    for p in problems:
        assert bad[p.line] in p.reason, (p.line, p.reason)
        assert str(p).startswith(f"{manifest}:{p.line}: ")


def test_strict_read_names_all_bad_lines_at_once(tmp_path):
    manifest, _ = audio_manifest(tmp_path)
    bad = with_bad_lines(manifest)
    with pytest.raises(ManifestError) as e:
        read_manifest(manifest)
    assert [p.line for p in e.value.problems] == sorted(bad)
    assert f"{manifest}:{min(bad)}:" in str(e.value)


def test_utf8_bom_is_not_a_bad_line(tmp_path):
    sf.write(tmp_path / "a.wav", tone(1, SR), SR)
    (tmp_path / "m.jsonl").write_text("\ufeff" + row("a.wav", "a cab") + "\n", encoding="utf-8")
    utts, problems = read_manifest(tmp_path / "m.jsonl", strict=False)
    assert len(utts) == 1 and problems == []


# ---- scan_split -------------------------------------------------------------------------

def test_scan_fixes_unusual_audio_and_skips_unusable_with_reasons(tmp_path):
    manifest, expect = audio_manifest(tmp_path)
    utts, _ = read_manifest(manifest, strict=False)
    result = scan_split("train", utts, SR, tokenizer())
    assert result.read == len(result.used) + len(result.skipped) == len(expect)
    assert {u.id for u in result.used} == {k for k, v in expect.items() if v is None}
    for s in result.skipped:
        assert expect[s.id] in s.reason, (s.id, s.reason)
        assert re.search(r"train\.jsonl:\d+$", s.source)
        if expect[s.id] in ("cannot be read as audio", "file not found"):
            assert f"{s.id}.wav" in s.reason  # the message names the file
    for name in FIXABLE:  # resampled to 16 kHz, downmixed to mono, same length in seconds
        wave = result.waves[name]
        assert wave.ndim == 1 and wave.dtype == np.float32
        assert abs(len(wave) - SR) <= 2, (name, len(wave))
        spectrum = np.abs(np.fft.rfft(wave))
        assert abs(np.argmax(spectrum) * SR / len(wave) - 300) < 5, name  # the tone survived
    assert result.sample_rates == {SR: 8 + 3 + 1, 8000: 1, 22050: 1, 44100: 1, 48000: 1}


def test_scan_skips_audio_outside_the_duration_bounds_naming_the_setting(tmp_path):
    lines = []
    for seconds in (0.3, 1.2, 3.0):
        sf.write(tmp_path / f"d{seconds}.wav", tone(seconds, SR), SR)
        lines.append(row(f"d{seconds}.wav", "a cab", 1.0, id=f"d{seconds}"))  # duration key lies
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    utts, _ = read_manifest(tmp_path / "m.jsonl")
    result = scan_split("train", utts, SR, duration_bounds=(0.5, 2.0))
    assert [u.id for u in result.used] == ["d1.2"]
    reasons = {s.id: s.reason for s in result.skipped}
    assert "0.30 s, shorter than train.min_duration (0.5 s)" in reasons["d0.3"]
    assert "3.0 s, longer than train.max_duration (2 s)" in reasons["d3.0"]
    assert len(scan_split("train", utts, SR).used) == 3  # no bounds: all used


def test_scan_skips_oov_transcripts_naming_the_characters(tmp_path):
    audio_manifest(tmp_path)
    utts, _ = read_manifest(val_manifest(tmp_path), strict=False)
    result = scan_split("val", utts, SR, tokenizer())
    assert [s.id for s in result.skipped] == ["v_oov"]
    reason = result.skipped[0].reason
    assert "not in the vocabulary" in reason and "Z" in reason and "\u00fc" in reason


def test_paths_outside_the_manifest_folder(tmp_path):
    """Policy: relative paths resolve from the manifest's folder and may climb out of it
    (write_manifest writes such paths when a manifest is saved elsewhere); a missing file is
    skipped with its resolved absolute path in the reason."""
    (tmp_path / "outside").mkdir()
    sf.write(tmp_path / "outside" / "x.wav", tone(1, SR), SR)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "m.jsonl").write_text(
        row("../outside/x.wav", "a cab", id="out") + "\n"
        + row("../elsewhere/y.wav", "a cab", id="gone") + "\n"
        + row(str(tmp_path / "outside" / "x.wav"), "a cab", id="abs") + "\n")
    utts, problems = read_manifest(tmp_path / "m" / "m.jsonl", strict=False)
    result = scan_split("train", utts, SR, tokenizer())
    assert problems == [] and {u.id for u in result.used} == {"out", "abs"}
    (gone,) = result.skipped
    assert str((tmp_path / "elsewhere" / "y.wav").resolve()) in gone.reason
    assert "not found" in gone.reason


def test_truncated_and_mislabeled_audio_is_used_as_decoded(tmp_path):
    """A truncated file or a wrong manifest duration is not a reason to skip: the audio is used
    as it decodes (the doctor's DURATION_OUTLIER check reports the disagreement, and an
    utterance too short for its transcript gets a named inf loss, not NaN weights)."""
    sf.write(tmp_path / "good.wav", tone(1, SR), SR)
    data = (tmp_path / "good.wav").read_bytes()
    (tmp_path / "truncated.wav").write_bytes(data[:44 + 200])  # header promises 1 s
    sf.write(tmp_path / "tiny.wav", tone(0.01, SR), SR)
    (tmp_path / "m.jsonl").write_text("\n".join([
        row("truncated.wav", "a cab", 1.0, id="truncated"),
        row("tiny.wav", "a cab", 1.0, id="tiny"),
        row("good.wav", "a cab", 1e9, id="huge")]) + "\n")
    utts, _ = read_manifest(tmp_path / "m.jsonl")
    result = scan_split("train", utts, SR, tokenizer())
    assert [u.id for u in result.used] == ["truncated", "tiny", "huge"]
    assert len(result.waves["truncated"]) == 100  # what the file really holds
    assert len(result.waves["tiny"]) == 160 and len(result.waves["huge"]) == SR


def test_scan_reads_only_the_segment_when_offset_is_given(tmp_path):
    sf.write(tmp_path / "long.wav", tone(3, SR), SR)
    (tmp_path / "m.jsonl").write_text(row("long.wav", "a cab", 0.5, offset=1.25, id="seg") + "\n")
    utts, _ = read_manifest(tmp_path / "m.jsonl")
    result = scan_split("train", utts, SR, tokenizer())
    np.testing.assert_allclose(result.waves["seg"], load_audio(tmp_path / "long.wav", SR)[
        int(1.25 * SR):int(1.75 * SR)], atol=1e-6)


# ---- fuzz -------------------------------------------------------------------------------

def random_line(rng: np.random.Generator) -> str:
    kind = rng.integers(5)
    if kind == 0:  # raw bytes decoded leniently, like a damaged file
        return bytes(rng.integers(32, 256, rng.integers(1, 60)).tolist()).decode("latin-1")
    values = [None, True, 0, -1, 1.5, 1e308, "", "x", "1.0", [], {}, "a.wav", "../a.wav",
              "/dev/null", "\u00e9\u00e9"]
    obj = {}
    for key in ("audio_filepath", "duration", "text", "id", "offset"):
        if rng.random() < 0.8:
            obj[key] = values[rng.integers(len(values))]
    line = json.dumps(obj)
    if kind == 1:  # truncated JSON
        line = line[:rng.integers(1, max(2, len(line)))]
    return line


def random_audio(path: Path, rng: np.random.Generator) -> float:
    """Writes a random (often broken) file; returns the duration a manifest would claim."""
    kind = rng.integers(4)
    if kind == 0:  # random bytes
        path.write_bytes(bytes(rng.integers(0, 256, rng.integers(0, 3000)).tolist()))
        return 1.0
    if kind == 1:  # a real header followed by garbage or cut short
        sf.write(path, tone(0.3, SR), SR)
        data = path.read_bytes()
        cut = int(rng.integers(0, len(data)))
        path.write_bytes(data[:cut] + bytes(rng.integers(0, 256, rng.integers(0, 200)).tolist()))
        return 0.3
    # valid audio with random rate, channels, format, loudness
    sr = int(rng.choice([8000, 11025, 16000, 22050, 32000, 44100, 48000]))
    ch = int(rng.integers(1, 3))
    seconds = float(rng.uniform(0.05, 1.0))
    data = tone(seconds, sr, ch) * float(rng.choice([0, 1e-7, 1, 50]))
    subtype = str(rng.choice(["PCM_16", "PCM_U8", "FLOAT", "PCM_24"]))
    fmt = "FLAC" if subtype in ("PCM_16", "PCM_24") and rng.random() < 0.5 else "WAV"
    sf.write(path, np.clip(data, -1, 1) if subtype != "FLOAT" else data, sr,
             subtype=subtype, format=fmt)
    return seconds * float(rng.uniform(0.9, 1.1))


def test_fuzz_random_lines_and_files_never_crash_and_counts_add_up(tmp_path):
    rng = np.random.default_rng(1234)
    claimed = [random_audio(tmp_path / f"f{i}.wav", rng) for i in range(40)]
    lines = [random_line(rng) for _ in range(150)]
    lines += [row(f"f{i}.wav", "a cab", claimed[i], id=f"f{i}") for i in range(40)]
    order = rng.permutation(len(lines))
    (tmp_path / "m.jsonl").write_text("\n".join(lines[i] for i in order) + "\n")
    utts, problems = read_manifest(tmp_path / "m.jsonl", strict=False)
    nonblank = sum(1 for l in (tmp_path / "m.jsonl").read_text().split("\n") if l.strip())
    assert len(utts) + len(problems) == nonblank
    assert all(p.reason for p in problems)
    result = scan_split("train", utts, SR, tokenizer())
    assert result.read == len(result.used) + len(result.skipped) == len(utts)
    assert all(s.reason and s.source for s in result.skipped)
    for u in result.used:  # whatever was used is clean mono 16 kHz audio
        wave = result.waves[u.id]
        assert wave.ndim == 1 and wave.size > 0 and np.isfinite(wave).all()
    assert len(result.used) >= 5  # the fuzz does produce usable files


# ---- a real training run ----------------------------------------------------------------

def log_counts(run: Path) -> dict[str, tuple[int, int]]:
    text = (run / "train.log").read_text()
    m = re.search(r"train: (\d+) used, (\d+) skipped; val: (\d+) used, (\d+) skipped", text)
    assert m, text
    a, b, c, d = map(int, m.groups())
    return {"train": (a, b), "val": (c, d)}


def skipped_jsonl(run: Path) -> list[dict]:
    return [json.loads(l) for l in (run / "skipped.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_train_survives_broken_audio_and_transcripts(tmp_path):
    from asrlab.train import train

    manifest, expect = audio_manifest(tmp_path)
    run = tmp_path / "run"
    result = train(manifest, val_manifest(tmp_path), run, TINY, force=True, show_progress=False)
    assert result.epochs == 1 and np.isfinite(result.metrics[0].train_loss)
    counts = log_counts(run)
    rows = skipped_jsonl(run)
    assert counts["train"] == (sum(v is None for v in expect.values()),
                               sum(v is not None for v in expect.values()))
    assert counts["val"] == (2, 1)
    data = json.loads((run / "data.json").read_text())
    for split, (used, skipped) in counts.items():
        assert (data[split]["used"], data[split]["skipped"]) == (used, skipped)
        assert data[split]["read"] == used + skipped
    assert {r["id"] for r in rows if r["split"] == "train"} == \
        {k for k, v in expect.items() if v is not None}
    assert all(r["reason"] and r["source"] for r in rows)


@pytest.mark.slow
def test_forced_train_skips_bad_manifest_lines_and_lists_them(tmp_path):
    from asrlab.train import train

    manifest, expect = audio_manifest(tmp_path)
    bad = with_bad_lines(manifest)
    run = tmp_path / "run"
    train(manifest, val_manifest(tmp_path), run, TINY, force=True, show_progress=False)
    used, skipped = log_counts(run)["train"]
    assert used + skipped == len(expect) + len(bad)  # read = used + skipped
    listed = [r for r in skipped_jsonl(run) if r["split"] == "train"]
    assert len(listed) == skipped
    sources = {r["source"] for r in listed}
    for line in bad:
        assert f"{manifest}:{line}" in sources
    # train's pre-flight and asrlab check judge the bad lines alike: BAD_MANIFEST, an error
    from asrlab.preflight import check_manifests

    trained = json.loads((run / "check.json").read_text())["findings"]
    checked = [f.to_dict() for f in check_manifests(manifest, val_manifest(tmp_path), TINY).findings]
    f, = [f for f in trained if f["code"] == "BAD_MANIFEST"]
    assert f["severity"] == "error" and f["evidence"]["count"] == len(bad)
    assert finding_summary(trained) == finding_summary(checked)


def finding_summary(findings: list[dict]) -> list[tuple]:
    """What must agree between two verbs' findings: code, severity, split, kind, count."""
    return sorted((f["code"], f["severity"], str(f["evidence"].get("split")),
                   str(f["evidence"].get("kind")), f["evidence"].get("count", -1))
                  for f in findings)


def test_no_training_transcript_refuses_train_and_is_checks_finding(tmp_path):
    from asrlab.preflight import check_manifests
    from asrlab.train import TrainingRefused, train

    (tmp_path / "m.jsonl").write_text(row("wavs/a.wav", "...") + "\n" + row("wavs/b.wav", "") + "\n")
    with pytest.raises(TrainingRefused, match="no training utterance has a transcript after "
                                              "text normalization"):
        train(tmp_path / "m.jsonl", tmp_path / "m.jsonl", tmp_path / "run", TINY,
              show_progress=False)
    f, = check_manifests(tmp_path / "m.jsonl", tmp_path / "m.jsonl", TINY).findings
    assert (f.code, f.severity, f.evidence["texts"]) == ("EMPTY_TRANSCRIPT", "error", ["..."])


def test_unforced_train_refuses_bad_manifest_lines_naming_them(tmp_path):
    from asrlab.train import TrainingRefused, train

    manifest, _ = audio_manifest(tmp_path)
    bad = with_bad_lines(manifest)
    with pytest.raises((TrainingRefused, ManifestError)) as e:
        train(manifest, val_manifest(tmp_path), tmp_path / "run", TINY, show_progress=False)
    for line in bad:
        assert f"train.jsonl:{line}:" in str(e.value)


def test_all_audio_missing_refuses_with_a_hint_and_lists_reasons(tmp_path):
    from asrlab.train import TrainingRefused, train

    (tmp_path / "m.jsonl").write_text(row("wavs/a.wav", "a cab") + "\n")
    with pytest.raises(TrainingRefused, match="manifest moved"):
        train(tmp_path / "m.jsonl", tmp_path / "m.jsonl", tmp_path / "run", TINY,
              show_progress=False)
    assert "file not found" in skipped_jsonl(tmp_path / "run")[0]["reason"]
