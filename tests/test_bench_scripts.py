"""The benchmark scripts' own parsing, tables and corpus helpers (their runs are measured, not
tested)."""

import json
import sys
from pathlib import Path

import pytest
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from bench_results import write_results  # noqa: E402
from held_out_voices import EngineResult, engines_markdown  # noqa: E402
from recipe_sweep import parse_variant  # noqa: E402


def test_variant_keeps_the_commas_of_list_values():
    name, sets = parse_variant("all=augment.gain_db=[-6,6],augment.vtlp=[0.9,1.1],"
                               "augment.clip_prob=0.1")
    assert name == "all"
    assert sets == ["augment.gain_db=[-6,6]", "augment.vtlp=[0.9,1.1]", "augment.clip_prob=0.1"]
    assert parse_variant("base=") == ("base", [])
    with pytest.raises(SystemExit, match="NAME=KEY=VALUE"):
        parse_variant("=train.lr=0.001")


def test_engine_table_takes_the_median_per_variant_and_engine():
    def result(variant, seed, cer, cer_lm=None):
        return EngineResult(seed, "flite", 97, cer, 1.0, cer_lm, cer_lm, 0.2, 0.6, 0.2, 30,
                            1800, 5.0, variant)

    table = engines_markdown([result("base", 0, 0.50), result("base", 1, 0.60),
                              result("reverb", 0, 0.40, 0.30), result("reverb", 1, 0.44, 0.34)])
    rows = [line for line in table.splitlines() if line.startswith("| base") or
            line.startswith("| reverb")]
    assert rows[0].startswith("| base | flite | 0,1 | 97 | 55.0% |")
    assert "| - | - |" in rows[0]  # greedy only: no LM columns
    assert rows[1].startswith("| reverb | flite | 0,1 | 97 | 42.0% |")
    assert "| 32.0% |" in rows[1]


def test_extra_voices_adds_the_espeak_sentences_by_another_engine(tmp_path):
    """bench/extra_voices.py: every N-th espeak-ng training sentence, said by piper, becomes a
    training row of engine "piper" beside the corpus's own; val and test are the corpus's."""
    from asrlab import synth

    if "piper" not in synth.available_engines():
        pytest.skip(f"piper is not installed ({synth.install_command(['piper'])})")
    import extra_voices

    corpus = tmp_path / "c"
    synth.synthesize_corpus(corpus, 6, 1, 1, seed=3, engines=("espeak",), jobs=1,
                            progress=False)
    assert extra_voices.main(["--corpus", str(corpus), "--engine", "piper", "--out",
                              str(tmp_path / "x"), "--every", "2"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "x" / "train.jsonl").read_text().splitlines()]
    added = [r for r in rows if r["engine"] == "piper"]
    espeak = [r for r in rows if r["engine"] == "espeak"]
    assert len(espeak) == 6 and [r["text"] for r in added] == [r["text"] for r in espeak[::2]]
    for row in added:
        assert sf.info(tmp_path / "x" / row["audio_filepath"]).samplerate == 16000
        assert row["speaker"].startswith("piper:")
    assert (tmp_path / "x" / "test.jsonl").read_text() == (corpus / "test.jsonl").read_text()


def test_the_results_writer_keeps_the_rows_and_the_table(tmp_path):
    """bench_results.write_results, the one writer of the bench scripts' tables: dataclass rows
    as JSON (what dataclasses.asdict gives), the markdown table beside them, the table back."""
    from dataclasses import asdict

    rows = [EngineResult(0, "flite", 97, 0.5, 1.0, None, None, 0.2, 0.6, 0.2, 30, 1800, 5.0,
                         "base")]
    table = engines_markdown(rows)
    assert write_results(tmp_path, {"engines": rows, "fsdd": {}}, table) == table
    assert json.loads((tmp_path / "results.json").read_text()) == {
        "engines": [asdict(r) for r in rows], "fsdd": {}}
    assert (tmp_path / "results.md").read_text() == table + "\n"
    write_results(tmp_path, rows, table, name="reference")
    assert json.loads((tmp_path / "reference.json").read_text())[0]["held_out"] == "flite"


def test_fsdd_tempo_stretches_the_recordings_and_keeps_their_labels(tmp_path):
    """bench/fsdd_tempo.py: each recording time-stretched (rate 0.5: twice as long, same
    pitch), written at FSDD's rate, its manifest row keeping the text with the new duration."""
    import numpy as np
    from fsdd_tempo import stretched

    rows = []
    for k, hz in enumerate((300.0, 500.0)):
        path = tmp_path / f"{k}.wav"
        sf.write(path, 0.5 * np.sin(2 * np.pi * hz * np.arange(4000) / 8000), 8000)
        rows.append({"audio_filepath": str(path), "text": f"word{k}", "duration": 0.5})
    manifest = stretched(rows, 0.5, tmp_path / "slow")
    out = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert [r["text"] for r in out] == ["word0", "word1"]
    for row, hz in zip(out, (300.0, 500.0)):
        wave, sr = sf.read(row["audio_filepath"])
        assert sr == 8000 and row["duration"] == pytest.approx(1.0, abs=0.01)
        assert len(wave) == pytest.approx(8000, abs=80)
        peak = np.fft.rfftfreq(len(wave), 1 / 8000)[np.argmax(np.abs(np.fft.rfft(wave)))]
        assert peak == pytest.approx(hz, abs=10)  # the pitch kept
