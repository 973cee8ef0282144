"""`asrlab evaluate` and `tune-lm` on the shared inference core: the same text as `transcribe`
for the same file and model (checkpoint and ONNX, short files and one longer than a window),
audio read with the limits every verb applies, memory flat with a file's length."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asrlab.longform import ChunkConfig
from tests.product.conftest import REPO

pytestmark = pytest.mark.slow


def joined(digit_corpus, seconds: float, out: Path) -> dict:
    """A manifest row for `out`: training utterances joined (repeated) to at least `seconds`."""
    rows = [json.loads(x) for x in digit_corpus["train"].read_text().splitlines()]
    parts, texts, total = [], [], 0.0
    while total < seconds:
        r = rows[len(parts) % len(rows)]
        wave, sr = sf.read(digit_corpus["train"].parent / r["audio_filepath"], dtype="float32")
        parts.append(wave)
        texts.append(r["text"])
        total += len(wave) / sr
    sf.write(out, np.concatenate(parts), sr)
    return {"audio_filepath": str(out), "duration": total, "text": " ".join(texts),
            "id": out.stem}


def absolute_rows(manifest: Path) -> list[dict]:
    rows = [json.loads(x) for x in manifest.read_text().splitlines()]
    for r in rows:
        r["audio_filepath"] = str(manifest.parent / r["audio_filepath"])
    return rows


def write_manifest(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("kind", ["checkpoint", "onnx"])
def test_evaluate_gives_the_text_transcribe_gives(kind, request, digit_corpus, tmp_path, capsys):
    from asrlab.cli import main

    model = request.getfixturevalue("tiny_run" if kind == "checkpoint" else "tiny_onnx")
    long = joined(digit_corpus, ChunkConfig().window_s + 8, tmp_path / "long.wav")
    rows = absolute_rows(digit_corpus["val"])
    rows.insert(2, long)  # between short files: the pending batch is flushed around it
    manifest = write_manifest(tmp_path / "m.jsonl", rows)
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--model", str(model), "--data", str(manifest), "--out",
                 str(out)]) == 0
    report = json.loads(out.read_text())
    hyps = {json.loads(x)["id"]: json.loads(x)["hyp"]
            for x in out.with_suffix(".utterances.jsonl").read_text().splitlines()}
    assert report["n"] == len(rows) and report["skipped_items"] == []
    assert report["audio_seconds"] == pytest.approx(sum(r["duration"] for r in rows), abs=0.01)
    capsys.readouterr()
    files = [r["audio_filepath"] for r in rows]
    assert main(["transcribe", "--model", str(model), "--json", *files]) == 0
    printed = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [p["file"] for p in printed] == files
    assert {r["id"]: p["text"] for r, p in zip(rows, printed)} == hyps
    assert printed[2]["duration"] > ChunkConfig().window_s and hyps["long"]  # windows, not empty
    # the long file alone: the same text again (nothing depends on its neighbours)
    assert main(["transcribe", "--model", str(model), "--json", long["audio_filepath"]]) == 0
    assert json.loads(capsys.readouterr().out)["text"] == hyps["long"]


def test_tune_lm_reads_audio_with_the_limits_and_takes_onnx(tiny_onnx, digit_corpus, digit_lm,
                                                            tmp_path, capsys):
    from asrlab.cli import main

    rows = absolute_rows(digit_corpus["val"])
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.full(8000, np.nan, np.float32), 8000, subtype="FLOAT")
    rows[0]["audio_filepath"] = str(nan)
    rows.append(joined(digit_corpus, 12.0, tmp_path / "twelve.wav"))
    manifest = write_manifest(tmp_path / "m.jsonl", rows)
    out = tmp_path / "tune.json"
    assert main(["tune-lm", "--model", str(tiny_onnx), "--data", str(manifest), "--lm",
                 str(digit_lm), "--alphas", "0", "1", "--betas", "0", "--beam", "4",
                 "--max-audio-seconds", "10", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    reasons = {s["id"]: s["reason"] for s in result["skipped"]}
    assert result["utterances"] == len(rows) - 2
    assert "non-finite samples" in reasons[rows[0]["id"]]
    assert "limit is 10 s" in reasons["twelve"] and "--max-audio-seconds" in reasons["twelve"]
    assert "asrlab tune-lm: skipped" in capsys.readouterr().err


def test_evaluate_lists_unreadable_audio_without_a_traceback(tiny_onnx, digit_corpus, tmp_path,
                                                             capsys):
    from asrlab.cli import main

    rows = absolute_rows(digit_corpus["val"])
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF not really a wave file")
    long = joined(digit_corpus, ChunkConfig().window_s + 2, tmp_path / "long.wav")
    rows[1]["audio_filepath"] = str(junk)
    rows.append(long)
    manifest = write_manifest(tmp_path / "m.jsonl", rows)
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--model", str(tiny_onnx), "--data", str(manifest), "--out",
                 str(out), "--max-audio-seconds", "20"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "2 of 7 utterance(s) skipped" in err
    items = json.loads(out.read_text())["skipped_items"]
    reasons = {s["id"]: s["reason"] for s in items}
    assert f"{junk}: cannot be read as audio" in reasons[rows[1]["id"]]
    assert "limit is 20 s" in reasons["long"]
    assert [s["source"] for s in items] == [f"{manifest}:2", f"{manifest}:7"]  # where each is


def peak_rss_mb(args: list[str]) -> float:
    """`asrlab ARGS` in a fresh process; its own peak RSS (bench/long_audio.py measures it)."""
    if not Path("/proc/self/status").is_file():
        pytest.skip("needs /proc/self/status (Linux)")
    if str(REPO / "bench") not in sys.path:
        sys.path.insert(0, str(REPO / "bench"))
    from long_audio import run_measured

    return run_measured(args)[0]


def test_evaluate_memory_does_not_grow_with_the_file(tiny_onnx, digit_corpus, tmp_path):
    """1 and 10 minutes of audio in one file each: read whole (evaluate before it used windows),
    the 10-minute file took 2.8x the 1-minute file's peak (tiny checkpoint, 366 -> 1017 MB); in
    windows a few percent more."""
    peaks = {}
    for minutes in (1, 10):
        row = joined(digit_corpus, minutes * 60, tmp_path / f"{minutes}min.wav")
        manifest = write_manifest(tmp_path / f"{minutes}min.jsonl", [row])
        peaks[minutes] = peak_rss_mb(["evaluate", "--model", str(tiny_onnx), "--data",
                                      str(manifest), "--out", str(tmp_path / f"{minutes}.json"),
                                      "--threads", "1"])
    assert peaks[10] < 1.25 * peaks[1], peaks
