"""The product verbs end to end on the tiny model: evaluate/transcribe with beam + LM, tune-lm,
export, transcribe --onnx."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow


def test_evaluate_and_transcribe_take_the_decoder_flags(tiny_run, digit_corpus, digit_lm,
                                                        tmp_path, capsys):
    from asrlab.cli import main

    vocab = set(digit_lm.with_name("digits.unigrams.txt").read_text().split())

    def evaluate(name: str, *flags: str) -> tuple[dict, int]:
        """The report and the number of hypothesis words outside the LM's vocabulary."""
        out = tmp_path / f"{name}.json"
        assert main(["evaluate", "--model", str(tiny_run), "--data", str(digit_corpus["val"]),
                     "--out", str(out), *flags]) == 0
        hyps = [json.loads(line)["hyp"] for line in out.with_suffix(".utterances.jsonl").open()]
        return json.loads(out.read_text()), sum(w not in vocab for h in hyps for w in h.split())

    report, oov = evaluate("lm", "--beam", "8", "--lm", str(digit_lm), "--lm-weight", "0.8",
                           "--word-score", "1")
    assert report["n"] == 6 and 0 <= report["wer"]
    assert report["decoder"] == {"kind": "beam", "beam": 8, "lm": str(digit_lm), "lm_weight": 0.8,
                                 "word_score": 1.0, "blank_penalty": 0.0}
    greedy, greedy_oov = evaluate("greedy")
    assert greedy["decoder"]["kind"] == "greedy"
    # pyctcdecode's unknown-word penalty pulls words into the LM's vocabulary (a soft penalty,
    # so this is "no more", not "none")
    assert oov <= greedy_oov
    capsys.readouterr()
    wav = digit_corpus["val"].parent / "val_000.wav"
    assert main(["transcribe", "--model", str(tiny_run), "--json", "--beam", "4", str(wav)]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"file", "text", "words", "duration"}


def test_tune_lm_searches_the_grid_and_writes_the_best(tiny_run, digit_corpus, digit_lm,
                                                       tmp_path, capsys):
    from asrlab.cli import main

    out = tmp_path / "tune.json"
    assert main(["tune-lm", "--model", str(tiny_run), "--data", str(digit_corpus["val"]),
                 "--lm", str(digit_lm), "--alphas", "0", "0.5", "1", "--betas", "0", "2",
                 "--beam", "8", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert len(result["grid"]) == 6 and result["utterances"] == 6
    best = min(g["wer"] for g in result["grid"])
    assert result["wer"] == best
    assert (result["lm_weight"], result["word_score"]) in {(g["lm_weight"], g["word_score"])
                                                           for g in result["grid"]
                                                           if g["wer"] == best}
    printed = capsys.readouterr().out
    assert "| lm_weight | word_score | WER | CER |" in printed and "best: --lm-weight" in printed


def test_export_cli_and_onnx_transcribe(tiny_run, digit_corpus, tmp_path, capsys):
    from asrlab.cli import main

    onnx = tmp_path / "m.onnx"
    assert main(["export", "--model", str(tiny_run), "--out", str(onnx), "--data",
                 str(digit_corpus["val"]), "--utterances", "4"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["parity"]["ok"] and summary["parity"]["max_abs_diff_batch"] <= 1e-4
    wav = digit_corpus["val"].parent / "val_001.wav"
    assert main(["transcribe", "--onnx", str(onnx), str(wav)]) == 0
    onnx_line = capsys.readouterr().out
    assert main(["transcribe", "--model", str(tiny_run), str(wav)]) == 0
    assert capsys.readouterr().out == onnx_line  # same transcript from both paths
    assert main(["transcribe", "--model", str(onnx), str(wav)]) == 0  # .onnx given as --model
    assert capsys.readouterr().out == onnx_line
