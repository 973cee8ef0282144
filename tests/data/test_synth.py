"""The TTS corpus builder: manifests, audio format, determinism, clear errors."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("espeakng_loader")
sf = pytest.importorskip("soundfile")

from asrlab.data import synth  # noqa: E402
from asrlab.data.manifest import load_manifest  # noqa: E402
from asrlab.data.sentences import normalize_text  # noqa: E402
from asrlab.data.synth import (RATE_RANGE, EngineUnavailable, SynthError, add_synth_arguments,  # noqa: E402
                               make_speakers, run_synth, synthesize_corpus, trim_silence)

COUNTS = {"train": 6, "val": 2, "test": 2}


def _make(out: Path, jobs: int, **kw) -> dict[str, Path]:
    return synthesize_corpus(out, COUNTS["train"], COUNTS["val"], COUNTS["test"], seed=5,
                             jobs=jobs, progress=False, **kw)


def _rows(manifest: Path) -> list[dict]:
    return [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    out = tmp_path_factory.mktemp("synth")
    return out, _make(out, jobs=2)


def test_manifests_and_audio(corpus):
    out, manifests = corpus
    assert set(manifests) == {"train", "val", "test"}
    for split, manifest in manifests.items():
        assert manifest == out.resolve() / f"{split}.jsonl"
        rows = _rows(manifest)
        assert len(rows) == COUNTS[split]
        assert len(load_manifest(manifest)) == COUNTS[split]  # valid for the project's reader
        for row in rows:
            assert set(row) == {"audio_filepath", "duration", "text", "id", "speaker"}
            assert row["audio_filepath"] == f"wavs/{split}/{row['id']}.wav"  # relative
            info = sf.info(out / row["audio_filepath"])
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            assert row["duration"] == pytest.approx(info.frames / 16000, abs=1e-3)
            assert 0.5 < row["duration"] < 10
            assert row["speaker"].startswith("espeak:en")


def test_no_sentence_in_two_splits(corpus):
    _, manifests = corpus
    texts = {split: {r["text"] for r in _rows(m)} for split, m in manifests.items()}
    assert not texts["train"] & texts["val"]
    assert not texts["train"] & texts["test"]
    assert not texts["val"] & texts["test"]


def test_edges_trimmed_and_not_clipped(corpus):
    out, manifests = corpus
    for row in _rows(manifests["train"]):
        audio, _ = sf.read(out / row["audio_filepath"])
        loud = np.flatnonzero(np.abs(audio) > 0.01)
        assert loud[0] / 16000 <= 0.15 and (len(audio) - loud[-1]) / 16000 <= 0.15
        assert np.abs(audio).max() < 0.99


def test_corpus_json(corpus):
    out, manifests = corpus
    info = json.loads((out / "corpus.json").read_text())
    assert info["seed"] == 5 and info["engines"] == ["espeak"]
    assert info["counts"] == COUNTS
    total = sum(r["duration"] for m in manifests.values() for r in _rows(m))
    assert info["hours"]["total"] == pytest.approx(total / 3600, abs=1e-3)
    assert info["sentence_generator"] and info["version"]
    by_id = {s["id"]: s for s in info["speakers"]}
    assert len(by_id) == 64
    for split, manifest in manifests.items():
        for row in _rows(manifest):
            assert by_id[row["speaker"]]["utterances"][split] >= 1


def test_same_seed_same_corpus_whatever_jobs(corpus, tmp_path):
    out, manifests = corpus
    again = _make(tmp_path / "again", jobs=1)
    for split in manifests:
        first, second = _rows(manifests[split]), _rows(again[split])
        assert first == second  # same ids, texts, speakers and durations
        for row in first:
            wav = row["audio_filepath"]
            assert (out / wav).read_bytes() == (tmp_path / "again" / wav).read_bytes(), wav


def test_speakers_are_distinct_and_cover_voices():
    speakers = make_speakers(64, seed=0)
    assert len({s.id for s in speakers}) == 64
    assert speakers == make_speakers(64, seed=0) and speakers != make_speakers(64, seed=1)
    voices, _ = synth.espeak_inventory()
    assert {s.voice for s in speakers} == set(voices) and len(voices) >= 6
    assert all(RATE_RANGE[0] <= s.rate <= RATE_RANGE[1] and 30 <= s.pitch <= 75 for s in speakers)


def test_text_file(tmp_path):
    lines = [f"this is user sentence number {n}" for n in range(12)]
    text = tmp_path / "mine.txt"
    text.write_text("\n".join(lines) + "\n", encoding="utf-8")
    manifests = _make(tmp_path / "out", jobs=2, text_file=text)
    used = [r["text"] for m in manifests.values() for r in _rows(m)]
    assert len(used) == len(set(used)) == 10
    assert set(used) <= {normalize_text(line) for line in lines}
    info = json.loads((tmp_path / "out" / "corpus.json").read_text())
    assert info["text_file"]["kept"] == 12 and info["sentence_generator"] is None


def test_text_file_too_short(tmp_path):
    text = tmp_path / "short.txt"
    text.write_text("one small sentence\nanother small sentence\n", encoding="utf-8")
    with pytest.raises(SynthError, match=r"short\.txt has 2 usable .* needs 10"):
        _make(tmp_path / "out", jobs=1, text_file=text)


def test_engine_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="unknown TTS engine 'mbrola'"):
        _make(tmp_path / "a", jobs=1, engines=("espeak", "mbrola"))
    monkeypatch.setattr(synth.shutil, "which", lambda _: None)
    with pytest.raises(EngineUnavailable, match="apt-get install flite"):
        _make(tmp_path / "b", jobs=1, engines=("espeak", "flite"))
    with pytest.raises(EngineUnavailable, match="apt-get install festival"):
        _make(tmp_path / "c", jobs=1, engines=("festival",))


def test_refuses_a_folder_with_other_files(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SynthError, match="not empty"):
        _make(tmp_path, jobs=1)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_cli_runs_and_replaces_a_previous_corpus(tmp_path, capsys):
    parser = add_synth_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--out", str(tmp_path), "--train", "3", "--val", "1", "--test",
                              "1", "--no-progress", "--jobs", "1"])
    assert (args.seed, args.engines, args.speakers, args.text) == (0, "espeak", 64, None)
    assert run_synth(args) == 0
    assert "synthesized 5 utterances" in capsys.readouterr().out
    args.train = 2
    assert run_synth(args) == 0
    assert len(list((tmp_path / "wavs" / "train").iterdir())) == 2  # old WAVs are gone
    args.engines = "espeak,nope"
    assert run_synth(args) == 1
    assert "unknown TTS engine" in capsys.readouterr().err


def test_cli_defaults():
    args = add_synth_arguments(argparse.ArgumentParser()).parse_args(["--out", "x"])
    assert (args.train, args.val, args.test, args.jobs) == (1111, 99, 300, 2)


def test_trim_silence():
    rate = 16000
    tone = 0.5 * np.sin(np.arange(rate) / rate * 2 * np.pi * 220)
    padded = np.concatenate([np.zeros(rate), tone, np.zeros(2 * rate)])
    trimmed = trim_silence(padded, rate, keep_s=0.1)
    assert len(trimmed) == pytest.approx(1.2 * rate, abs=0.02 * rate)
    short = np.concatenate([np.zeros(800), tone, np.zeros(800)])  # 50 ms edges: kept
    assert len(trim_silence(short, rate)) == len(short)
