"""Long-form transcription: overlapping windows stitched equal the whole-file pass; times stay
absolute and ordered; limits and bad audio refused before or while decoding."""

from __future__ import annotations

import io
import json
import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from asrlab.audio import AudioError, AudioLimits, AudioReader, decode_audio_bytes, load_audio
from asrlab.longform import ArraySource, ChunkConfig, windows_log_probs


def _long_wave(digit_corpus, n: int = 6) -> tuple[np.ndarray, int]:
    rows = [json.loads(x) for x in digit_corpus["train"].read_text().splitlines()[:n]]
    parts = [sf.read(digit_corpus["train"].parent / r["audio_filepath"], dtype="float32")[0]
             for r in rows]
    return np.concatenate(parts), 8000


@pytest.fixture(scope="module")
def recognizer(tiny_run):
    from asrlab.inference import Recognizer

    return Recognizer.from_path(tiny_run)


def test_windows_equal_the_whole_pass(recognizer, digit_corpus, tmp_path):
    wave8k, sr = _long_wave(digit_corpus)
    path = tmp_path / "long.wav"
    sf.write(path, wave8k, sr)
    wave = load_audio(path, recognizer.sample_rate)
    whole = recognizer.log_probs([wave])[0]
    cfg = ChunkConfig(window_s=4.0, overlap_s=2.0)  # ~9 windows over 17 s
    fs = recognizer.frame_seconds
    for source in (ArraySource(wave), AudioReader(path, recognizer.sample_rate)):
        lp, n = windows_log_probs(recognizer.log_probs, source, recognizer.sample_rate, fs, cfg)
        assert n == len(wave)
        assert abs(len(lp) - len(whole)) <= 1
        m = min(len(lp), len(whole))
        agree = (lp[:m].argmax(1) == whole[:m].argmax(1)).mean()
        assert agree >= 0.97, agree
        assert np.abs(np.exp(lp[:m]) - np.exp(whole[:m])).mean() < 0.02


def test_chunked_transcript_equals_unchunked_with_absolute_ordered_times(tiny_run, digit_corpus,
                                                                         tmp_path):
    from asrlab.decode import GreedyDecoder
    from asrlab.inference import Recognizer
    from asrlab.transcribe import Transcriber

    wave8k, sr = _long_wave(digit_corpus)
    path = tmp_path / "long.flac"
    sf.write(path, wave8k, sr)
    rec = Recognizer.from_path(tiny_run)
    whole = Transcriber(rec, GreedyDecoder(rec.tokenizer), chunking=ChunkConfig(60.0, 4.0))
    chunked = Transcriber(rec, GreedyDecoder(rec.tokenizer), chunking=ChunkConfig(4.0, 2.0))
    a, b = whole.transcribe_file(path), chunked.transcribe_file(path)
    assert a["text"] and a["text"] == b["text"]
    assert a["duration"] == b["duration"] == pytest.approx(len(wave8k) / sr, abs=1e-3)
    starts = [w["start"] for w in b["words"]]
    assert starts == sorted(starts) and b["words"][-1]["end"] <= b["duration"]
    assert b["words"][-1]["start"] > 4.0  # absolute: beyond the first window
    for x, y in zip(a["words"], b["words"]):
        assert x["word"] == y["word"] and abs(x["start"] - y["start"]) <= 0.08
    # the in-memory path (the server's) chunks the same way
    assert chunked.transcribe_wave(load_audio(path, rec.sample_rate))["text"] == b["text"]


def test_cli_refuses_empty_and_nan_audio(tiny_run, tmp_path, capsys):
    from asrlab.cli import main

    empty, nan = tmp_path / "empty.wav", tmp_path / "nan.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000)
    sf.write(nan, np.full(16000, np.nan, np.float32), 16000, subtype="FLOAT")
    assert main(["transcribe", "--model", str(tiny_run), str(empty), str(nan)]) == 1
    err = capsys.readouterr().err
    assert f"{empty}: the audio file has no samples" in err
    assert f"{nan}: the audio has non-finite samples" in err


def test_cli_audio_limit_and_the_flag_that_raises_it(tiny_run, digit_corpus, tmp_path, capsys):
    from asrlab.cli import main

    wave8k, sr = _long_wave(digit_corpus, 3)
    path = tmp_path / "a.wav"
    sf.write(path, wave8k, sr)
    assert main(["transcribe", "--model", str(tiny_run), "--max-audio-seconds", "2",
                 str(path)]) == 1
    err = capsys.readouterr().err
    assert "limit is 2 s" in err and "--max-audio-seconds" in err
    assert main(["transcribe", "--model", str(tiny_run), "--max-audio-seconds", "60",
                 str(path)]) == 0


# ---- decompression bombs and untrusted headers ------------------------------------------------

def set_flac_total_samples(data: bytes, total: int) -> bytes:
    """Rewrite the total-samples field of a FLAC's STREAMINFO (36 bits; 0 = unknown length)."""
    d = bytearray(data)
    assert d[:4] == b"fLaC" and d[4] & 0x7F == 0  # STREAMINFO first
    d[21] = (d[21] & 0xF0) | ((total >> 32) & 0x0F)
    d[22:26] = (total & 0xFFFFFFFF).to_bytes(4, "big")
    return bytes(d)


def bomb(seconds: float = 119.0) -> bytes:
    """The issue's bomb, as the header tells it: 8 channels at 655,350 Hz, 119 s of silence (one
    real second encoded; the header claims 119 s, as a real 683 kB bomb's does)."""
    buf = io.BytesIO()
    sf.write(buf, np.zeros((655350, 8), np.int16), 655350, format="FLAC", subtype="PCM_16")
    return set_flac_total_samples(buf.getvalue(), int(seconds * 655350))


def test_bomb_is_refused_from_the_header_with_memory_flat():
    data = bomb()
    loose = AudioLimits(max_seconds=120, max_sample_rate=10 ** 6)  # only the decode budget
    tracemalloc.start()
    try:
        for limits in (AudioLimits(max_seconds=120), loose):
            with pytest.raises(AudioError) as e:
                decode_audio_bytes(data, 16000, limits)
            assert "655350 Hz" in str(e.value)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "8 channels x 655350 Hz x 119.0 s" in str(e.value)
    assert peak < 2 * 2 ** 20, peak  # nothing decoded (the file itself is not traced: bytes)


def test_unknown_length_stream_stops_at_the_limit_with_memory_flat():
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    sf.write(buf, (0.1 * rng.standard_normal((48000 * 20, 2))).astype(np.float32), 48000,
             format="FLAC")
    data = set_flac_total_samples(buf.getvalue(), 0)
    assert sf.info(io.BytesIO(data)).frames > 2 ** 62  # what libsndfile reports: no length
    tracemalloc.start()
    try:
        with pytest.raises(AudioError) as e:
            decode_audio_bytes(data, 16000, AudioLimits(max_seconds=2.0))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "header gives no length" in str(e.value) and "trillion" not in str(e.value)
    assert peak < 4 * 2 ** 20, peak  # ~2 s decoded of 20, one block at a time
    wave = decode_audio_bytes(data, 16000, AudioLimits(max_seconds=30.0))
    assert len(wave) == 16000 * 20


def test_unknown_length_file_is_transcribed_in_windows(recognizer, digit_corpus, tmp_path):
    wave8k, sr = _long_wave(digit_corpus, 4)
    buf = io.BytesIO()
    sf.write(buf, wave8k, sr, format="FLAC")
    path = tmp_path / "stream.flac"
    path.write_bytes(set_flac_total_samples(buf.getvalue(), 0))
    with AudioReader(path, recognizer.sample_rate) as r:
        assert r.num_samples is None
        lp, n = windows_log_probs(recognizer.log_probs, r, recognizer.sample_rate,
                                  recognizer.frame_seconds, ChunkConfig(4.0, 2.0))
    assert n == len(wave8k) * 2 and len(lp) > 0
    with AudioReader(path, recognizer.sample_rate, AudioLimits(max_seconds=3.0)) as r:
        with pytest.raises(AudioError, match="longer than the limit of 3 s"):
            windows_log_probs(recognizer.log_probs, r, recognizer.sample_rate,
                              recognizer.frame_seconds, ChunkConfig(4.0, 2.0))


def test_evaluate_with_missing_or_bad_audio_is_not_a_silent_success(tiny_run, digit_corpus,
                                                                    tmp_path, capsys):
    from asrlab.cli import main

    rows = [json.loads(x) for x in digit_corpus["val"].read_text().splitlines()]
    folder = digit_corpus["val"].parent
    for r in rows:
        r["audio_filepath"] = str(folder / r["audio_filepath"])
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.full(8000, np.inf, np.float32), 8000, subtype="FLOAT")
    rows[0]["audio_filepath"] = str(tmp_path / "gone.wav")
    rows[1]["audio_filepath"] = str(nan)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "report.json"
    args = ["evaluate", "--model", str(tiny_run), "--data", str(manifest), "--out", str(out)]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "2 of 6 utterance(s) skipped" in err and "gone.wav: file not found" in err
    assert "non-finite" in err and "--allow-missing" in err
    report = json.loads(out.read_text())
    assert report["n"] == 4 and report["skipped"] == 2
    assert main(args + ["--allow-missing"]) == 0
    assert "warning: 2 of 6" in capsys.readouterr().err


def test_unknown_length_flac_gets_its_real_duration_in_prepare(tmp_path):
    from asrlab.data.prepare import Candidate, probe

    buf = io.BytesIO()
    sf.write(buf, np.zeros(16000 * 3, np.float32), 16000, format="FLAC")
    path = tmp_path / "stream.flac"
    path.write_bytes(set_flac_total_samples(buf.getvalue(), 0))
    duration, problem = probe(Candidate("u", path, "text", "test"))
    assert problem is None and duration == pytest.approx(3.0)  # not 576 trillion seconds


def test_onnx_recognizer_is_chunked_the_same_way(tiny_onnx, digit_corpus, tmp_path):
    from asrlab.decode import GreedyDecoder
    from asrlab.onnx_infer import OnnxRecognizer
    from asrlab.transcribe import Transcriber

    wave8k, sr = _long_wave(digit_corpus)
    path = tmp_path / "long.wav"
    sf.write(path, wave8k, sr)
    rec = OnnxRecognizer(tiny_onnx, threads=1)
    whole = Transcriber(rec, GreedyDecoder(rec.tokenizer), chunking=ChunkConfig(60.0, 4.0))
    chunked = Transcriber(rec, GreedyDecoder(rec.tokenizer), chunking=ChunkConfig(4.0, 2.0))
    a, b = whole.transcribe_file(path), chunked.transcribe_file(path)
    assert a["text"] and a["text"] == b["text"] and a["duration"] == b["duration"]
