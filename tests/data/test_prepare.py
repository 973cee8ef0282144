"""`asrlab prepare`: every corpus layout round-trips a small fixture into a loadable manifest,
skipped items are listed with reasons, and read == written + skipped."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asrlab.data import prepare as prep
from asrlab.data.manifest import load_manifest
from asrlab.data.prepare import PrepareOptions, prepare
from tests.conftest import FSDD


def write_audio(path: Path, seconds: float, sr: int = 16000, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), sr, **kw)
    return path


def skipped_rows(result) -> list[dict]:
    return [json.loads(l) for l in result.skipped_path.read_text().splitlines()]


def check_counts(result) -> list:
    """The manifest loads cleanly, and read = written + skipped, also on disk."""
    utts = load_manifest(result.manifest)
    assert len(utts) == result.written
    assert result.read == result.written + len(result.skipped)
    assert len(skipped_rows(result)) == len(result.skipped)
    for row in skipped_rows(result):
        assert set(row) == {"id", "source", "reason"} and row["reason"]
    return utts


def by_id(utts) -> dict:
    return {u.id: u for u in utts}


# ---- librispeech ------------------------------------------------------------------------

def make_librispeech(root: Path) -> Path:
    chapter = root / "LibriSpeech" / "dev-clean" / "19" / "198"
    write_audio(chapter / "19-198-0000.flac", 1.25)
    write_audio(chapter / "19-198-0001.flac", 0.5)
    write_audio(chapter / "19-198-0003.flac", 0.4)  # no transcript line
    write_audio(chapter / "19-198-0004.flac", 0.4)  # empty transcript
    (chapter / "19-198.trans.txt").write_text(
        "19-198-0000 NORTHANGER ABBEY\n19-198-0001 THIS LITTLE WORK\n"
        "19-198-0002 MISSING AUDIO\n19-198-0004\n")
    return root / "LibriSpeech" / "dev-clean"


def test_librispeech(tmp_path):
    src = make_librispeech(tmp_path / "corpus")
    result = prepare("librispeech", src, tmp_path / "out" / "dev.jsonl")
    utts = by_id(check_counts(result))
    assert set(utts) == {"19-198-0000", "19-198-0001"}
    u = utts["19-198-0000"]
    assert u.text == "NORTHANGER ABBEY" and u.extra["speaker"] == "19"
    assert u.duration == pytest.approx(1.25, abs=1e-3)
    assert u.audio_filepath == (src / "19" / "198" / "19-198-0000.flac").resolve()
    reasons = {r["id"]: r["reason"] for r in skipped_rows(result)}
    assert "not found" in reasons["19-198-0002"]
    assert "no transcript line" in reasons["19-198-0003"]
    assert reasons["19-198-0004"] == "empty transcript"
    assert (result.read, result.written) == (5, 2)


def test_speakers_held_out_in_any_layout(tmp_path):
    """--speakers / --exclude-speakers split a corpus by voice (here LibriSpeech's folders):
    the held-out validation set of new speakers that SEEN_SPEAKERS asks for."""
    src = make_librispeech(tmp_path / "corpus")
    other = src / "26" / "495"
    write_audio(other / "26-495-0000.flac", 0.8)
    (other / "26-495.trans.txt").write_text("26-495-0000 ANOTHER VOICE\n")
    val = prepare("librispeech", src, tmp_path / "val.jsonl", PrepareOptions(speakers=("26",)))
    assert [u.id for u in check_counts(val)] == ["26-495-0000"] and val.not_selected == 4
    train = prepare("librispeech", src, tmp_path / "train.jsonl",
                    PrepareOptions(exclude_speakers=("26",)))
    assert {u.extra["speaker"] for u in check_counts(train)} == {"19"}
    with pytest.raises(ValueError, match=r"no utterance of \['77'\].*speakers present: \['19', '26'\]"):
        prepare("librispeech", src, tmp_path / "x.jsonl", PrepareOptions(speakers=("77",)))
    assert not (tmp_path / "x.jsonl").exists()  # refused before writing


def test_librispeech_without_transcripts_says_what_layout_it_expects(tmp_path):
    with pytest.raises(FileNotFoundError, match="trans.txt"):
        prepare("librispeech", tmp_path, tmp_path / "m.jsonl")


def test_paths_inside_the_manifest_folder_are_written_relative(tmp_path):
    src = make_librispeech(tmp_path)
    result = prepare("librispeech", src, tmp_path / "dev.jsonl")
    first = json.loads(result.manifest.read_text().splitlines()[0])
    assert first["audio_filepath"] == "LibriSpeech/dev-clean/19/198/19-198-0000.flac"
    assert load_manifest(result.manifest)[0].audio_filepath.is_file()


# ---- commonvoice ------------------------------------------------------------------------

def make_commonvoice(root: Path, mp3: bool) -> Path:
    clips = root / "clips"
    write_audio(clips / "common_voice_en_1.wav", 0.8)
    if mp3:
        write_audio(clips / "common_voice_en_2.mp3", 1.0, format="MP3")
    (root / "train.tsv").write_text(
        "client_id\tpath\tsentence\tup_votes\n"
        "abc\tcommon_voice_en_1.wav\tHe said \"hi\" to me.\t2\n"
        + ("def\tcommon_voice_en_2.mp3\tAn mp3 clip.\t1\n" if mp3 else "")
        + "ghi\tcommon_voice_en_9.mp3\tNo such clip.\t0\n"
        "jkl\tcommon_voice_en_1.wav\n")  # short row
    return root


@pytest.mark.skipif(not prep.mp3_supported(), reason="this libsndfile cannot write MP3")
def test_commonvoice_wav_and_mp3(tmp_path):
    src = make_commonvoice(tmp_path / "cv", mp3=True)
    result = prepare("commonvoice", src, tmp_path / "cv.jsonl")  # folder + default split
    utts = by_id(check_counts(result))
    assert utts["common_voice_en_1"].text == 'He said "hi" to me.'  # quotes kept verbatim
    assert utts["common_voice_en_1"].extra["speaker"] == "abc"
    assert utts["common_voice_en_2"].duration == pytest.approx(1.0, abs=0.06)
    reasons = [r["reason"] for r in skipped_rows(result)]
    assert any("not found" in r and "common_voice_en_9.mp3" in r for r in reasons)
    assert any("number of fields" in r for r in reasons)


def test_commonvoice_mp3_unsupported_is_said_per_file(tmp_path, monkeypatch):
    src = make_commonvoice(tmp_path / "cv", mp3=False)
    (src / "clips" / "common_voice_en_9.mp3").write_bytes(b"\xff\xfb" + b"\0" * 400)
    monkeypatch.setattr(prep, "mp3_supported", lambda: False)
    result = prepare("commonvoice", src / "train.tsv", tmp_path / "cv.jsonl")
    check_counts(result)
    mp3 = [r for r in skipped_rows(result) if r["id"] == "common_voice_en_9"]
    assert len(mp3) == 1 and "MP3" in mp3[0]["reason"] and "libsndfile" in mp3[0]["reason"]
    assert "common_voice_en_9.mp3" in mp3[0]["reason"]


def test_commonvoice_missing_columns(tmp_path):
    (tmp_path / "train.tsv").write_text("client_id\tfile\ttext\n")
    with pytest.raises(ValueError, match="sentence"):
        prepare("commonvoice", tmp_path / "train.tsv", tmp_path / "m.jsonl")


# ---- kaldi ------------------------------------------------------------------------------

def make_kaldi(root: Path, segments: bool) -> Path:
    data = root / "data" / "train"
    data.mkdir(parents=True)
    a = write_audio(root / "wav" / "rec_a.wav", 3.0)
    write_audio(root / "wav" / "rec_b.flac", 1.5)
    (data / "wav.scp").write_text(
        f"rec_a {a}\n"  # absolute
        "rec_b wav/rec_b.flac\n"  # relative to --root
        "rec_c sph2pipe -f wav /corpus/c.sph |\n")  # a pipe: rejected
    if segments:
        (data / "segments").write_text("seg1 rec_a 0.0 1.2\nseg2 rec_a 1.5 2.9\n"
                                       "seg3 rec_a 2.5 4.0\nseg4 rec_b one two\n"
                                       "seg5 rec_c 0 1\n")
        (data / "text").write_text("seg1 hello there\nseg2 general kenobi\nseg3 too long\n"
                                   "seg4 bad times\nseg5 piped\nseg6 no segment\n")
        (data / "utt2spk").write_text("seg1 obi\nseg2 grievous\n")
    else:
        (data / "text").write_text("rec_a hello there\nrec_b general kenobi\nrec_c piped\n"
                                   "rec_d no audio\n")
    return data


def test_kaldi_without_segments(tmp_path):
    data = make_kaldi(tmp_path, segments=False)
    result = prepare("kaldi", data, tmp_path / "k.jsonl", PrepareOptions(root=tmp_path))
    utts = by_id(check_counts(result))
    assert set(utts) == {"rec_a", "rec_b"}
    assert utts["rec_b"].audio_filepath == (tmp_path / "wav" / "rec_b.flac").resolve()
    assert utts["rec_b"].duration == pytest.approx(1.5, abs=1e-3)
    reasons = {r["id"]: r["reason"] for r in skipped_rows(result)}
    assert "pipe" in reasons["rec_c"] and "plain audio files" in reasons["rec_c"]
    assert "no wav.scp entry" in reasons["rec_d"]


def test_kaldi_segments_write_offset_and_duration(tmp_path):
    data = make_kaldi(tmp_path, segments=True)
    result = prepare("kaldi", data, tmp_path / "k.jsonl", PrepareOptions(root=tmp_path))
    utts = by_id(check_counts(result))
    assert set(utts) == {"seg1", "seg2"}  # ids are kept (the file stem is shared)
    assert utts["seg2"].extra["offset"] == pytest.approx(1.5)
    assert utts["seg2"].duration == pytest.approx(1.4)
    assert utts["seg1"].extra["speaker"] == "obi"
    reasons = {r["id"]: r["reason"] for r in skipped_rows(result)}
    assert "after the end" in reasons["seg3"]
    assert "START END" in reasons["seg4"]
    assert "pipe" in reasons["seg5"]
    assert "no segments line" in reasons["seg6"]


def test_kaldi_duplicate_keys_and_windows_line_ends(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    a = write_audio(tmp_path / "a.wav", 0.5)
    (data / "wav.scp").write_bytes(f"\ufeffrec_a {a}\r\nrec_a {a}\r\n".encode())
    (data / "text").write_bytes(b"rec_a hello\r\nrec_a hello again\r\n")
    result = prepare("kaldi", data, tmp_path / "k.jsonl")
    (u,) = check_counts(result)
    assert u.id == "rec_a" and u.text == "hello" and u.audio_filepath == a
    reasons = [r["reason"] for r in skipped_rows(result)]
    assert len(reasons) == 2 and all("duplicate key" in r for r in reasons)


# ---- csv --------------------------------------------------------------------------------

@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_csv_with_sniffed_delimiter(tmp_path, delimiter):
    write_audio(tmp_path / "audio" / "a.wav", 0.7)
    write_audio(tmp_path / "audio" / "b.flac", 0.9, sr=8000)
    d = delimiter
    (tmp_path / "meta.csv").write_text(
        f"file{d}transcript{d}extra\naudio/a.wav{d}first one{d}x\naudio/b.flac{d}second{d}y\n"
        f"{d}no file{d}z\naudio/gone.wav{d}missing{d}w\n")
    opts = PrepareOptions(audio_column="file", text_column="transcript")
    result = prepare("csv", tmp_path / "meta.csv", tmp_path / "m.jsonl", opts)
    utts = by_id(check_counts(result))
    assert utts["a"].text == "first one" and utts["b"].duration == pytest.approx(0.9, abs=1e-3)
    assert (result.written, len(result.skipped)) == (2, 2)
    assert any(r["source"].endswith("meta.csv:4") for r in skipped_rows(result))


def test_csv_duration_column_and_bad_values(tmp_path):
    write_audio(tmp_path / "a.wav", 0.7)
    write_audio(tmp_path / "b.wav", 0.7)
    (tmp_path / "m.csv").write_text("path,text,secs\na.wav,one,0.7\nb.wav,two,abc\n")
    opts = PrepareOptions(audio_column="path", text_column="text", duration_column="secs")
    result = prepare("csv", tmp_path / "m.csv", tmp_path / "m.jsonl", opts)
    check_counts(result)
    assert result.written == 1 and "not a number" in result.skipped[0].reason


def test_csv_needs_known_columns(tmp_path):
    (tmp_path / "m.csv").write_text("path,text\n")
    with pytest.raises(ValueError, match="sentence"):
        prepare("csv", tmp_path / "m.csv", tmp_path / "m.jsonl",
                PrepareOptions(audio_column="path", text_column="sentence"))
    with pytest.raises(ValueError, match="--audio-column"):
        prepare("csv", tmp_path / "m.csv", tmp_path / "m.jsonl", PrepareOptions())


# ---- fsdd -------------------------------------------------------------------------------

def make_fsdd(root: Path) -> Path:
    for name in ("3_alice_0", "3_alice_1", "7_bob_0", "0_carol_4"):
        write_audio(root / f"{name}.wav", 0.4, sr=8000)
    write_audio(root / "notes.wav", 0.4, sr=8000)  # not an FSDD name
    return root


def test_fsdd_speakers_and_digit_words(tmp_path):
    src = make_fsdd(tmp_path / "recordings")
    result = prepare("fsdd", src, tmp_path / "f.jsonl", PrepareOptions(speakers=("alice", "bob")))
    utts = by_id(check_counts(result))
    assert {u: x.text for u, x in utts.items()} == {"3_alice_0": "three", "3_alice_1": "three",
                                                    "7_bob_0": "seven"}
    assert result.not_selected == 1  # carol: filtered on purpose, not a skip
    assert [r["id"] for r in skipped_rows(result)] == ["notes"]
    with pytest.raises(ValueError, match="speakers present"):
        prepare("fsdd", src, tmp_path / "f.jsonl", PrepareOptions(speakers=("dave",)))


def test_cli_prints_counts_and_skips(tmp_path, capsys):
    from asrlab.cli import main

    src = make_fsdd(tmp_path / "recordings")
    rc = main(["prepare", "fsdd", str(src), "--out", str(tmp_path / "f.jsonl")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "read 5, written 4, skipped 1" in out and "notes" in out
    assert (tmp_path / "f.skipped.jsonl").is_file()


def test_cli_csv_tab_delimiter_flag(tmp_path, capsys):
    from asrlab.cli import main

    write_audio(tmp_path / "a.wav", 0.5)
    (tmp_path / "m.txt").write_text("f\tt\na.wav\thello\n")
    rc = main(["prepare", "csv", str(tmp_path / "m.txt"), "--out", str(tmp_path / "m.jsonl"),
               "--audio-column", "f", "--text-column", "t", "--delimiter", "\\t"])
    assert rc == 0 and load_manifest(tmp_path / "m.jsonl")[0].text == "hello"


# ---- a prepared manifest trains ---------------------------------------------------------

@pytest.mark.slow
def test_prepared_fsdd_manifest_trains_one_epoch(tmp_path):
    from asrlab.config import Config
    from asrlab.train import train

    src = tmp_path / "recordings"
    src.mkdir()
    if FSDD.is_dir():  # real speech: 8 kHz files, resampled on load
        for digit in range(10):
            for i in range(3):
                shutil.copy(FSDD / f"{digit}_jackson_{i}.wav", src)
    else:
        for digit in range(10):
            for i in range(3):
                write_audio(src / f"{digit}_x_{i}.wav", 0.5, sr=8000)
    result = prepare("fsdd", src, tmp_path / "all.jsonl")
    assert result.written == 30
    cfg = Config().merged({"model": {"hidden": 32, "layers": 1, "conv_channels": 8},
                           "train": {"epochs": 1, "threads": 1, "tensorboard": False}})
    run = train(tmp_path / "all.jsonl", tmp_path / "all.jsonl", tmp_path / "run", cfg,
                show_progress=False)
    assert run.epochs == 1 and (tmp_path / "run" / "best.pt").is_file()
    assert (tmp_path / "run" / "skipped.jsonl").read_text() == ""


def test_the_prepare_verb_offers_exactly_the_readers():
    """The formats are listed once, as asrlab.data.prepare.READERS: `asrlab prepare` takes
    every reader's name and nothing else."""
    import argparse

    from asrlab.commands.prepare import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    choices = next(a.choices for a in parser._actions if a.dest == "format")
    assert list(choices) == list(prep.READERS) and "fsdd" in choices
    with pytest.raises(SystemExit):
        parser.parse_args(["mp3dir", "x", "--out", "y.jsonl"])
